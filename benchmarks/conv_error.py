"""float32 error of each convolution algorithm against a float64 convolution on the same layer, and
its growth over plain float32 im2col's (batch-major columns, one GEMM): the figures behind
backend/tuner.py's ERROR_GROWTH and --precision.

    python benchmarks/conv_error.py [--seeds 3]

Each layer (ResNet's and VGG's 3x3 shapes, AlexNet's 5x5 one, small batches) gets weights and
inputs drawn as a trained network's look (He-scaled normal weights, ReLU'd normal inputs), runs
in float32 through every algorithm that applies, and is compared with batch-major im2col in
float64; the error is ||y32 - y64|| / ||y64|| (relative, over the whole output).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdsl.backend import tuner  # noqa: E402
from netdsl.backend.conv import Conv  # noqa: E402
from netdsl.backend.im2col import Geometry  # noqa: E402
from timing import cpu_model  # noqa: E402

# (label, n, C, H, O, k, pad)
LAYERS = [("resnet 64x56x56 3x3", 2, 64, 56, 64, 3, 1), ("resnet 128x28x28 3x3", 2, 128, 28, 128, 3, 1),
          ("resnet 256x14x14 3x3", 4, 256, 14, 256, 3, 1), ("vgg 512x14x14 3x3", 2, 512, 14, 512, 3, 1),
          ("alexnet 96x27x27 5x5", 2, 96, 27, 256, 5, 2), ("thin 16x28x28 5x5", 2, 16, 28, 32, 5, 2)]
ALGORITHMS = ["batch_major", "direct", "blocked", "winograd_f2", "winograd_fused", "winograd_f4", "winograd_f2_5x5"]


class Workspace:
    def __init__(self):
        self.buffers = {}

    def get(self, key, make):
        return self.buffers.setdefault(key, make())


def conv_of() -> Conv:
    return Conv(np, Workspace(), 1 << 40, "c", precision="fast")


def errors(n, c, h, o, k, pad, seed) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    x64 = np.maximum(rng.standard_normal((n, c, h, h)), 0)
    w64 = rng.standard_normal((o, c, k, k)) * np.sqrt(2.0 / (c * k * k))
    geo = Geometry.of(x64.shape, (k, k), (1, 1), (pad, pad))
    ref, _ = conv_of().run("batch_major", x64, w64, None, geo, 1)
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    found = {}
    for name in ALGORITHMS:
        conv = conv_of()
        if not tuner.ALGORITHMS[name](conv, x32, geo, 1, o):
            continue
        y, _ = conv.run(name, x32, w32, None, geo, 1)
        found[name] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="draws per layer (the median is shown)")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")
    print(f"{'layer':24s} {'algorithm':16s} {'rel. error':>11s} {'x im2col':>9s}")
    for label, n, c, h, o, k, pad in LAYERS:
        runs = [errors(n, c, h, o, k, pad, seed) for seed in range(args.seeds)]
        for name in runs[0]:
            err = float(np.median([r[name] for r in runs]))
            growth = float(np.median([r[name] / r["batch_major"] for r in runs]))
            print(f"{label:24s} {name:16s} {err:11.2e} {growth:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
