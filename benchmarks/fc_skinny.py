"""The inference path's fc at small batch, side by side in one run: native.c's skinny kernel
(sk_fc, rows of the weight split over the cores) against np.matmul(W, x.T) (OpenBLAS's own
threads) and blas_threads.split_matmul (one single-threaded GEMM a core), on the fc shapes of
AlexNet (fc6 4096x9216, fc7 4096x4096, fc8 1000x4096) and VGG16 (fc6 4096x25088), float32.

    python benchmarks/fc_skinny.py [--batch 1 8] [--repeat 7]

Medians of --repeat calls, ms; GB/s is the skinny kernel's weight bytes over its time; rel.err
its largest error against float64 x @ W.T + b over the output's largest magnitude.
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

from netdsl.backend.cpu import native  # noqa: E402
from netdsl.backend.cpu.blas_threads import single_threaded, split_matmul  # noqa: E402
from netdsl.backend.cpu.threads import WORKERS, over_batch  # noqa: E402

SHAPES = {"alexnet fc6": (4096, 9216), "alexnet fc7": (4096, 4096), "alexnet fc8": (1000, 4096),
          "vgg16 fc6": (4096, 25088)}


def _median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if native.library() is None:
        sys.exit("fc_skinny.py: the compiled kernels are not available (no C compiler, or NETDSL_NATIVE=0)")
    rng = np.random.default_rng(0)
    print(f"# {cpu_model()}, {WORKERS} worker threads; medians of {args.repeat}, ms")
    for name, (o, k) in SHAPES.items():
        w = rng.standard_normal((o, k), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        for n in args.batch:
            x = rng.standard_normal((n, k), dtype=np.float32)
            out, product = np.empty((n, o), np.float32), np.empty((o, n), np.float32)
            rows, xt = native.skinny_fc_call(x, w, b, out), x.T
            with single_threaded():  # as the inference path runs
                skinny = _median_ms(lambda: over_batch(np, o, w.size, rows), args.repeat)
                split = _median_ms(lambda: split_matmul(np, w, xt, product), args.repeat)
            blas = _median_ms(lambda: np.matmul(w, xt, out=product), args.repeat)
            ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
            err = np.abs(out - ref).max() / np.abs(ref).max()
            print(f"{name:12s} {o}x{k:<5d} b{n:<3d} skinny {skinny:7.2f} ({w.nbytes / skinny / 1e6:4.1f} GB/s)  "
                  f"np.matmul {blas:7.2f}  split_matmul {split:7.2f}  rel.err {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
