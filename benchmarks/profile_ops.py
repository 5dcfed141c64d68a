"""Where a training step's time goes, per op kind (forward and backward), for one network.

    python benchmarks/profile_ops.py nets/resnet18.net --batch 8
    python benchmarks/profile_ops.py nets/resnet50.net --batch 64 --device gpu

On the GPU each kernel is timed to a synchronisation, so the step total here is a little above
an unprofiled step's (benchmarks/train_step.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment, backend/cpu/blas_threads.py)
import numpy as np  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--top", type=int, default=12, help="how many of the slowest layers to list")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = p.parse_args()
    net = netdsl.optimise(netdsl.load(args.file), "training")  # the graph netdsl run executes
    model = netdsl.Model(net, device=args.device)
    sync = model.device.synchronize
    timings = collections.defaultdict(float)
    for node in model.nodes:  # wrap each kernel with a timer
        k = node.kernel
        def fwd(n, ins, _f=k.forward, _key=(node.op, "fwd"), _name=node.name):
            sync()
            t = time.perf_counter()
            out = _f(n, ins)
            sync()
            timings[_key] += time.perf_counter() - t
            timings[(_name, "fwd")] += time.perf_counter() - t
            return out
        def bwd(n, d, need, _f=k.backward, _key=(node.op, "bwd"), _name=node.name):
            sync()
            t = time.perf_counter()
            out = _f(n, d, need)
            sync()
            timings[_key] += time.perf_counter() - t
            timings[(_name, "bwd")] += time.perf_counter() - t
            return out
        node.kernel = dataclasses.replace(k, forward=fwd, backward=bwd)
    x = model.xp.asarray(np.random.default_rng(0).standard_normal((args.batch, *net.input_shape)).astype(np.float32))
    y = model.xp.zeros(args.batch, dtype=np.int64)
    opt = netdsl.SGD(model)
    model.loss(x, y); model.backward(); opt.step()
    timings.clear()
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        model.loss(x, y)
        model.backward()
        sync()
        t = time.perf_counter()
        opt.step()
        sync()
        timings[("sgd", "step")] += time.perf_counter() - t
    total = (time.perf_counter() - t0) / args.repeat
    ops = {k: v / args.repeat for k, v in timings.items() if k[0] in netdsl.ops.OPS or k[0] == "sgd"}
    print(f"{net.name} batch {args.batch}: {total * 1000:.1f} ms per step")
    for (op, phase), t in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f"  {op:8} {phase}  {t * 1000:8.1f} ms  {100 * t / total:5.1f}%")
    layers = {k: v / args.repeat for k, v in timings.items() if k[0] not in netdsl.ops.OPS and k[0] != "sgd"}
    print("slowest layers:")
    for (name, phase), t in sorted(layers.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {name:32} {phase}  {t * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
