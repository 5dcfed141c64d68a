"""The blocked inference conv's register tiles (backend/cpu/blocked.py's TILES), timed layer by layer
on the layers of ResNet-18 and AlexNet, one image at a time on one thread -- as each image runs at
batch > 1, where the images go to the cores whole (Layer.bind_batch) -- or with --threads 2 one
image split over the cores (batch 1).

    python benchmarks/blocked_tiles.py [--rounds 7] [--threads 1] [--only 3x3/1]

Per layer: each tile's fastest ms of --rounds rounds (every round runs each tile once in turn,
interleaved: a load that comes and goes on a shared machine falls on all alike), its ratio to the
layer's fastest tile, and the tile choose_tile picks with its ratio. The CPU model is printed:
the figures are a measurement of this machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402,F401  (before numpy: it sets OpenBLAS's environment)
import numpy as np  # noqa: E402
from timing import cpu_model  # noqa: E402

from netdsl.backend.cpu import blocked  # noqa: E402
from netdsl.backend.im2col import Geometry  # noqa: E402

# (name, C, H, W, O, kernel, stride, pad): ResNet-18's conv layers (3x3 /1 and /2, 1x1 /2, the 7x7 /2
# stem) and AlexNet's (the 11x11 /4 stem, 5x5 /1, 3x3 /1 on 13x13)
LAYERS = [
    ("resnet18 conv1 7x7/2", 3, 224, 224, 64, 7, 2, 3),
    ("resnet18 3x3/1 64@56", 64, 56, 56, 64, 3, 1, 1),
    ("resnet18 3x3/2 64@56->128", 64, 56, 56, 128, 3, 2, 1),
    ("resnet18 1x1/2 64@56->128", 64, 56, 56, 128, 1, 2, 0),
    ("resnet18 3x3/1 128@28", 128, 28, 28, 128, 3, 1, 1),
    ("resnet18 3x3/2 128@28->256", 128, 28, 28, 256, 3, 2, 1),
    ("resnet18 1x1/2 128@28->256", 128, 28, 28, 256, 1, 2, 0),
    ("resnet18 3x3/1 256@14", 256, 14, 14, 256, 3, 1, 1),
    ("resnet18 3x3/2 256@14->512", 256, 14, 14, 512, 3, 2, 1),
    ("resnet18 1x1/2 256@14->512", 256, 14, 14, 512, 1, 2, 0),
    ("resnet18 3x3/1 512@7", 512, 7, 7, 512, 3, 1, 1),
    ("alexnet conv1 11x11/4", 3, 227, 227, 96, 11, 4, 0),
    ("alexnet conv2 5x5/1", 96, 27, 27, 256, 5, 1, 2),
    ("alexnet conv3 3x3/1 256->384@13", 256, 13, 13, 384, 3, 1, 1),
    ("alexnet conv4 3x3/1 384->384@13", 384, 13, 13, 384, 3, 1, 1),
    ("alexnet conv5 3x3/1 384->256@13", 384, 13, 13, 256, 3, 1, 1),
]


def time_tiles(c, h, w, o, k, s, p, threads: int, rounds: int) -> dict[tuple[int, int], float]:
    """{tile: fastest ms of one image} for one layer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    weight = rng.standard_normal((o, c, k, k)).astype(np.float32) * 0.05
    geo = Geometry.of((1, c, h, w), (k, k), (s, s), (p, p))
    out = np.empty((o, geo.oh, geo.ow), dtype=np.float32)
    runs = {}
    for tile in blocked.TILES:
        layer = blocked.Layer(weight, None, geo, tile=tile)
        layer.threads = threads
        layer.rows = max(1, min(geo.oh, -(-geo.oh * layer.groups // (blocked.UNITS_PER_THREAD * threads))))
        runs[tile] = layer.bind(x, out)
        runs[tile]()  # warm: its weights and planes touched once
    best = {tile: float("inf") for tile in runs}
    for _ in range(rounds):
        for tile, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[tile] = min(best[tile], (time.perf_counter() - t0) * 1e3)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="threads one image is split over (1: as at batch > 1)")
    p.add_argument("--only", default="", help="the layers whose name contains this")
    args = p.parse_args()
    print(f"# {cpu_model()}; one image on {args.threads} thread(s); fastest of {args.rounds} interleaved rounds, ms")
    print(f"# tiles (vectors of 16 output channels, positions of a row): {', '.join(map(str, blocked.TILES))}")
    for name, c, h, w, o, k, s, pad in LAYERS:
        if args.only not in name:
            continue
        best = time_tiles(c, h, w, o, k, s, pad, args.threads, args.rounds)
        fastest = min(best.values())
        geo = Geometry.of((1, c, h, w), (k, k), (s, s), (pad, pad))
        chosen = blocked.choose_tile(o, geo.ow, kw=k)
        cells = "  ".join(f"{b}x{tt} {ms:6.3f} ({ms / fastest:4.2f})" for (b, tt), ms in best.items())
        print(f"{name:34} {cells}  | chosen {chosen[0]}x{chosen[1]} {best[chosen] / fastest:4.2f}")


if __name__ == "__main__":
    main()
