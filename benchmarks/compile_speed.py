"""How long netdsl takes to parse, expand and analyse a network (median of many runs).

    python benchmarks/compile_speed.py [nets/resnet152.net ...]

For comparison, torch.fx symbolic tracing of torchvision's ResNet-152 is printed when torch
and torchvision are installed (they are not netdsl dependencies).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402
from netdsl.parser import _lark  # noqa: E402
from timing import median_ms  # noqa: E402


def main(argv: list[str]) -> None:
    import argparse
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
    parser.add_argument("files", nargs="*", help=".net files (default: five of the nets/ folder)")
    files = parser.parse_args(argv).files or [str(ROOT / "nets" / f"{n}.net") for n in ("alexnet", "vgg16", "googlenet", "resnet50", "resnet152")]
    t = time.perf_counter()
    _lark()
    print(f"grammar load (once per process): {(time.perf_counter() - t) * 1000:.1f} ms")
    for f in files:
        src = Path(f).read_text()
        ms = median_ms(lambda: netdsl.compile_source(src, f), repeat=30)
        n = netdsl.compile_source(src, f)
        print(f"{Path(f).name:16} {len(n.layers):5} nodes  parse+expand+analyse {ms:7.1f} ms (median)")
    try:
        import torch.fx
        import torchvision
        model = torchvision.models.resnet152()
        ms = median_ms(lambda: torch.fx.symbolic_trace(model), repeat=5)
        print(f"torch.fx symbolic_trace(torchvision resnet152): {ms:.1f} ms (median)")
    except ImportError:
        print("torch/torchvision not installed: no torch.fx comparison")


if __name__ == "__main__":
    main(sys.argv[1:])
