"""Draw every network in nets/ and the gallery views the README shows.

    python scripts/gallery.py [OUTDIR]      (default docs/gallery)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.views.diff import compare, side_by_side  # noqa: E402
from netdsl.render import DrawOptions, diagram, write  # noqa: E402

VIEWS = [  # (file name, net, options)
    ("googlenet-inception3a.svg", "googlenet", DrawOptions(focus="inception3a", shapes=True)),
    ("resnet50-bottleneck.svg", "resnet50", DrawOptions(focus="conv3_x/bottleneck1")),
    ("resnet50-stages.svg", "resnet50", DrawOptions(depth=1)),
    ("resnet152-collapsed.svg", "resnet152", DrawOptions(depth=0)),
]


def main(out: Path) -> list[Path]:
    written = []
    for path in sorted((ROOT / "nets").glob("*.net")):
        net = netdsl.load(path)
        written.append(write(diagram(net), out / f"{path.stem}.svg"))
    for name, net_name, opts in VIEWS:
        written.append(write(diagram(netdsl.load(ROOT / "nets" / f"{net_name}.net"), opts), out / name))
    a, b = netdsl.load(ROOT / "nets" / "alexnet.net"), netdsl.load(ROOT / "nets" / "zfnet.net")
    written.append(write(side_by_side(a, b, compare(a, b)), out / "alexnet-vs-zfnet.svg"))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "gallery"
    for p in main(target):
        print(f"wrote {p}")
