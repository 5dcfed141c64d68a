"""The large conv layers alone: forward and backward GFLOP/s against the machine's own
single-precision matrix-multiply rate (numpy's GEMM on 2048x2048 matrices, measured here).

    python benchmarks/conv_layers.py [--batch 8]
    python benchmarks/conv_layers.py --device gpu --batch 64     # against cuBLAS's SGEMM (CuPy)

FLOPs are counted as a direct convolution does them (2 x MACs forward, 4 x MACs backward:
input and weight gradients), so Winograd layers can pass 100% of the GEMM rate.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment, backend/cpu/blas_threads.py)
import numpy as np  # noqa: E402
import netdsl.backend.device  # noqa: E402
from netdsl.backend import im2col, kernels  # noqa: E402
from netdsl.ops import window_geometry  # noqa: E402
from timing import median_ms  # noqa: E402

LAYERS = [  # (where from, input CxHxW, layer)
    ("alexnet conv2", "96x27x27", "conv 256 5x5 pad 2"),
    ("alexnet conv3", "256x13x13", "conv 384 3x3 pad 1"),
    ("vgg16 conv2_2", "128x112x112", "conv 128 3x3 pad 1"),
    ("vgg16 conv3_2", "256x56x56", "conv 256 3x3 pad 1"),
    ("vgg16 conv4_2", "512x28x28", "conv 512 3x3 pad 1"),
    ("vgg16 conv5_2", "512x14x14", "conv 512 3x3 pad 1"),
    ("resnet18 conv2_x", "64x56x56", "conv 64 3x3 pad 1 nobias"),
    ("resnet18 conv3_x", "128x28x28", "conv 128 3x3 pad 1 nobias"),
    ("resnet18 conv4_x", "256x14x14", "conv 256 3x3 pad 1 nobias"),
    ("resnet18 conv5_x", "512x7x7", "conv 512 3x3 pad 1 nobias"),
]


def gemm_peak(xp, sync, size: int) -> float:
    a = xp.asarray(np.random.rand(size, size).astype(np.float32))
    b = xp.asarray(np.random.rand(size, size).astype(np.float32))
    return 2 * size ** 3 / (median_ms(lambda: a @ b, sync=sync) / 1000) / 1e9


def kernel_geometry(net):
    """(kernel, stride, pad) of the conv layer of a one-layer test net."""
    layer = net.graph.nodes[net.layers[1].name]
    return window_geometry([net.input_shape], layer["attrs"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = p.parse_args()
    device = netdsl.backend.device.get_device(args.device)
    xp, sync = device.xp, device.synchronize
    size = 2048 if device.name == "cpu" else 8192
    peak = gemm_peak(xp, sync, size)
    print(f"# {device.description}: float32 GEMM ({size}^3) peak here {peak:.0f} GFLOP/s; batch {args.batch}")
    print(f"{'layer':18} {'shape':>12} {'fwd ms':>8} {'fwd GF/s':>9} {'%peak':>6} {'bwd ms':>8} {'bwd GF/s':>9} "
          f"{'%peak':>6} {'cols ms':>8} {'GEMM ms':>8} {'%peak':>6}")
    for name, shape, line in LAYERS:
        batch = args.batch if "vgg16" not in name else max(1, args.batch // 4)
        net = netdsl.compile_source(f"input {shape}\n{line}\nflatten")
        model = netdsl.Model(net, device=device)
        model.training = True
        node = model.nodes[1]
        x = xp.asarray(np.random.default_rng(0).standard_normal((batch, *net.input_shape)).astype(np.float32))
        out = kernels.conv_forward(node, [x])
        dout = xp.ones_like(out)
        fwd = median_ms(lambda: kernels.conv_forward(node, [x]), sync=sync)
        bwd = median_ms(lambda: kernels.conv_backward(node, dout, True), sync=sync)
        macs = net.layers[1].macs * batch
        f_rate, b_rate = 2 * macs / fwd / 1e6, 4 * macs / bwd / 1e6
        # the forward's two parts alone, as the batch-major path runs them: im2col, then the GEMM
        geo = im2col.Geometry.of(x.shape, *kernel_geometry(net))
        cols = im2col.im2col_batch_major(xp, x, geo)
        wmat = node.params["weight"].reshape(node.params["weight"].shape[0], -1)
        t_cols = median_ms(lambda: im2col.im2col_batch_major(xp, x, geo), sync=sync)
        t_gemm = median_ms(lambda: wmat @ cols, sync=sync)
        print(f"{name:18} {shape:>12} {fwd:8.1f} {f_rate:9.0f} {100 * f_rate / peak:5.0f}% {bwd:8.1f} "
              f"{b_rate:9.0f} {100 * b_rate / peak:5.0f}% {t_cols:8.2f} {t_gemm:8.2f} "
              f"{100 * 2 * macs / t_gemm / 1e6 / peak:5.0f}%", flush=True)


if __name__ == "__main__":
    main()
