"""float32 forward error of whole networks against a float64 run on the same weights (netdsl's
seeded initialisation, one 224x224 image), at each --precision and with plain float32 im2col
convolutions (the GEMMs PyTorch's CPU convolutions are): the figures behind the default budget.

    python benchmarks/network_error.py [nets/resnet50.net ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from timing import cpu_model  # noqa: E402

from netdsl.backend.accuracy import float32_error  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nets", nargs="*", default=[str(ROOT / f"nets/resnet{d}.net") for d in (50, 101, 152)])
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}; NETDSL_TUNE=off (the thresholds' choice under each budget)")
    print(f"{'network':10s} {'im2col f32':>11s} {'exact':>9s} {'default':>9s} {'fast':>9s}   (relative error; x im2col)")
    for path in args.nets:
        net = netdsl.load(path)
        error = float32_error(net, np.random.default_rng(0).standard_normal((1, *net.input_shape)))
        plain = error(winograd=False, precision="exact")
        cells = [f"{e:.2e} {e / plain:4.2f}x" for e in (error(precision=p) for p in ("exact", "default", "fast"))]
        print(f"{net.name:10s} {plain:11.2e} " + " ".join(f"{c:>9s}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
