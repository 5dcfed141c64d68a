"""MobileNet v2's training step (batch 4, 224x224, float32) by op kind, through the netdsl tree given
as the first argument: each kind's forward + backward time per step, the fastest of 6 steps after a
warm-up, and the fastest whole step (the machine is shared: minima filter out the other sessions'
load better than medians). Run with NETDSL_TUNE=off so both trees choose the same conv paths.

    NETDSL_TUNE=off python mobilenet_ops_min.py /path/to/netdsl-tree
"""
import collections
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment)
import numpy as np  # noqa: E402
from netdsl.backend.kernels.dense import is_depthwise  # noqa: E402

net = netdsl.optimise(netdsl.load(Path(sys.argv[1]) / "nets" / "zoo" / "mobilenet_v2.net"), "training")
model = netdsl.Model(net, device="cpu", seed=0)
step: dict = collections.defaultdict(float)
for node in model.nodes:
    kind = "conv depthwise" if node.op == "conv" and is_depthwise(node) else node.op
    k = node.kernel

    def fwd(n, ins, _f=k.forward, _kind=kind):
        t = time.perf_counter()
        out = _f(n, ins)
        step[_kind] += time.perf_counter() - t
        return out

    def bwd(n, d, need, _f=k.backward, _kind=kind):
        t = time.perf_counter()
        out = _f(n, d, need)
        step[_kind] += time.perf_counter() - t
        return out
    node.kernel = dataclasses.replace(k, forward=fwd, backward=bwd)
rng = np.random.default_rng(0)
x = rng.standard_normal((4, *net.input_shape)).astype(np.float32)
y = rng.integers(0, 1000, 4)
opt = netdsl.SGD(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)
best: dict = {}
for k in range(7):
    step.clear()
    t = time.perf_counter()
    model.loss(x, y, training=True)
    model.backward()
    opt.step()
    step["whole step"] = time.perf_counter() - t
    if k:
        for kind, s in step.items():
            best[kind] = min(best.get(kind, float("inf")), s)
print("  ".join(f"{kind} {best[kind] * 1e3:.1f}" for kind in sorted(best, key=lambda k: -best[k])) + "  (ms)")
