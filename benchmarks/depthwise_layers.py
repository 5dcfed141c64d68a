"""MobileNet v2's depthwise layers alone (3x3, one filter per channel), forward and backward, netdsl
against PyTorch's F.conv2d(groups=C) on the same shapes, side by side in one process.

    python benchmarks/depthwise_layers.py                 # batch 4, medians of 5 after warm-up
    python benchmarks/depthwise_layers.py --numpy         # also netdsl's numpy variant (the fallback)
    python benchmarks/depthwise_layers.py --torch-threads 1

netdsl's columns run dense.py's depthwise variants on a one-layer net's node: `depthwise_native`
(native.c) and, with --numpy, `depthwise` (numpy, what NETDSL_NATIVE=0 and the GPU run). Backward
is the input and weight gradients both, as a training step needs them; PyTorch's is autograd's
backward of one forward. The totals weight each shape by how often MobileNet v2 has it (17 layers).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment, backend/cpu/blas_threads.py)
import numpy as np  # noqa: E402
from netdsl.backend.executor import Model  # noqa: E402
from netdsl.backend.kernels import dense  # noqa: E402
from timing import cpu_model, median_ms  # noqa: E402

# (channels, input size, stride, how many of MobileNet v2's 17 depthwise layers have this shape)
LAYERS = [(32, 112, 1, 1), (96, 112, 2, 1), (144, 56, 1, 1), (144, 56, 2, 1), (192, 28, 1, 2), (192, 28, 2, 1),
          (384, 14, 1, 4), (576, 14, 1, 2), (576, 14, 2, 1), (960, 7, 1, 3)]


def netdsl_node(c: int, size: int, stride: int):
    net = netdsl.compile_source(f"input {c}x{size}x{size}\nconv {c} 3x3 /{stride} pad 1 groups {c} nobias")
    model = Model(net, device="cpu", seed=0)
    model.training = True
    return next(node for node in model.nodes if node.op == "conv")


def netdsl_times(node, x, dout, forward, backward, repeat: int) -> tuple[float, float]:
    out, saved = forward(node, [x])
    assert out.shape == dout.shape
    fwd = median_ms(lambda: forward(node, [x]), repeat)
    bwd = median_ms(lambda: backward(node, saved, dout, True), repeat)
    return fwd, bwd


def torch_times(torch, x, w, dout, stride: int, repeat: int) -> tuple[float, float]:
    import torch.nn.functional as F
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    gt = torch.from_numpy(dout)
    fwd = median_ms(lambda: F.conv2d(xt, wt, None, stride, 1, 1, x.shape[1]), repeat)
    y = F.conv2d(xt, wt, None, stride, 1, 1, x.shape[1])
    bwd = median_ms(lambda: y.backward(gt, retain_graph=True), repeat)
    return fwd, bwd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--numpy", action="store_true", help="also time the numpy variant (slow)")
    p.add_argument("--torch-threads", type=int, help="PyTorch's threads (default: its own choice); on a loaded "
                   "machine one thread is steadier: two stall whenever another process holds a core")
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:
        sys.exit(f"depthwise_layers.py needs PyTorch to compare against, which is not importable here ({e}); "
                 "pip install torch (the CPU build)")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; float32, batch {args.batch}, "
          f"medians of {args.repeat} after warm-up; ms per layer")
    cols = ["netdsl fwd", "torch fwd", "netdsl bwd", "torch bwd"] + (["numpy fwd", "numpy bwd"] if args.numpy else [])
    print(f"{'layer (CxHxW /s) x count':26}" + "".join(f"{c:>11}" for c in cols))
    rng = np.random.default_rng(0)
    totals = np.zeros(len(cols))
    variants = {v.name: v for v in dense.CONV.variants}
    for c, size, stride, count in LAYERS:
        node = netdsl_node(c, size, stride)
        x = rng.standard_normal((args.batch, c, size, size)).astype(np.float32)
        w = node.params["weight"]
        osz = (size + 2 - 3) // stride + 1
        dout = rng.standard_normal((args.batch, c, osz, osz)).astype(np.float32)
        nat = variants["depthwise_native"]
        row = [*netdsl_times(node, x, dout, nat.forward, nat.backward, args.repeat)]
        tf, tb = torch_times(torch, x, w, dout, stride, args.repeat)
        row = [row[0], tf, row[1], tb]
        if args.numpy:
            ref = variants["depthwise"]
            row += [*netdsl_times(node, x, dout, ref.forward, ref.backward, max(1, args.repeat // 2))]
        totals += count * np.array(row)
        print(f"{f'{c}x{size}x{size} /{stride} x{count}':26}" + "".join(f"{v:11.2f}" for v in row), flush=True)
    print(f"{'all 17 (weighted)':26}" + "".join(f"{v:11.2f}" for v in totals))
    nd, th = totals[0] + totals[2], totals[1] + totals[3]
    print(f"# forward + backward, all 17 layers: netdsl {nd:.1f} ms, torch {th:.1f} ms, ratio {nd / th:.2f}"
          + (f"; numpy variant {totals[4] + totals[5]:.1f} ms" if args.numpy else ""))


if __name__ == "__main__":
    main()
