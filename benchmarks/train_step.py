"""netdsl against PyTorch: one training step (forward + backward + SGD update), same network,
same batch, float32, side by side in one run. Medians of several timed steps after warm-up.

    python benchmarks/train_step.py --device cpu              # the CPU table (issue 5's targets)
    python benchmarks/train_step.py --device gpu [--tf32]     # the GPU table (scripts/gpu-check)

PyTorch is a benchmark-only dependency: pip install torch (the CPU build, for the CPU table).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

CPU_CASES = [("lenet5", 64), ("alexnet", 8), ("resnet18", 8), ("vgg16", 2)]
GPU_CASES = [("alexnet", 128), ("vgg16", 32), ("googlenet", 64), ("resnet50", 64)]


def time_steps(step, sync, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name: str, batch: int, device: str, repeat: int, tf32: bool) -> dict:
    import torch

    import netdsl
    from torch_model import TorchNet
    net = netdsl.load(ROOT / "nets" / f"{name}.net")
    model = netdsl.Model(net, device=device, seed=0)
    opt = netdsl.SGD(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    classes = net.layer(net.outputs[0][1]).shape[0]
    y = rng.integers(0, classes, batch)
    xd, yd = model.xp.asarray(x), model.xp.asarray(y)

    def ours():
        model.loss(xd, yd, training=True)
        model.backward()
        opt.step()

    ours_s = time_steps(ours, model.device.synchronize, repeat)

    tdev = "cuda" if device == "gpu" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    tnet = TorchNet(net).to(tdev)
    topt = torch.optim.SGD(tnet.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    tx, ty = torch.from_numpy(x).to(tdev), torch.from_numpy(y).to(tdev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def theirs():
        topt.zero_grad(set_to_none=True)
        outs = tnet(tx)
        loss = loss_fn(outs[0], ty) + sum(0.3 * loss_fn(o, ty) for o in outs[1:])
        loss.backward()
        topt.step()

    sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    torch_s = time_steps(theirs, sync, repeat)
    flops = 3 * 2 * net.totals().macs * batch
    return {"network": name, "batch": batch, "netdsl_ms": ours_s * 1000, "torch_ms": torch_s * 1000,
            "ratio": ours_s / torch_s, "netdsl_gflops": flops / ours_s / 1e9, "torch_gflops": flops / torch_s / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix multiplies on both sides (GPU)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", nargs="*", help="network names to run")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args()
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    import torch
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    cases = CPU_CASES if args.device == "cpu" else GPU_CASES
    if args.only:
        cases = [c for c in cases if c[0] in args.only]
    print(f"# {time.strftime('%Y-%m-%d')}, device {args.device}, torch {torch.__version__}, numpy {np.__version__}, "
          f"threads {torch.get_num_threads()}, tf32 {'on' if args.tf32 else 'off'}")
    print(f"{'network':10} {'batch':>5} {'netdsl ms':>10} {'torch ms':>10} {'ratio':>6} {'netdsl GF/s':>11} {'torch GF/s':>10}")
    rows = []
    for name, batch in cases:
        r = bench(name, batch, args.device, args.repeat, args.tf32)
        rows.append(r)
        print(f"{name:10} {batch:5} {r['netdsl_ms']:10.1f} {r['torch_ms']:10.1f} {r['ratio']:6.2f} "
              f"{r['netdsl_gflops']:11.1f} {r['torch_gflops']:10.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
