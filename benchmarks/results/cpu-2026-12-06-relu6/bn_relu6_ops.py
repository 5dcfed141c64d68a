"""bn and relu6 of one training step at MobileNet v2's map sizes (batch 4, float32), through the
netdsl tree given as the first argument (before relu6 was fused, or after): each op's forward and
backward timed inside the executor, the fastest of 20 steps after a warm-up (the machine is shared:
the minimum filters out the other sessions' load). The head (fc 10) is there only to end the net.

    python bn_relu6_ops.py /path/to/netdsl-tree [relu]   # relu: the same for bn + relu (fused in both)
"""
import collections
import dataclasses
import sys
import time

sys.path.insert(0, sys.argv[1])
ACT = sys.argv[2] if len(sys.argv) > 2 else "relu6"
import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment)
import numpy as np  # noqa: E402

for shape in ("32x112x112", "96x112x112", "144x56x56", "384x14x14"):
    net = netdsl.optimise(netdsl.compile_source(f"input {shape}\nbn\n{ACT}\nfc 10\nsoftmax"), "training")
    model = netdsl.Model(net, device="cpu", seed=0)
    step: dict = collections.defaultdict(float)
    for node in model.nodes:
        k = node.kernel

        def fwd(n, ins, _f=k.forward, _op=node.op):
            t = time.perf_counter()
            out = _f(n, ins)
            step[_op] += time.perf_counter() - t
            return out

        def bwd(n, d, need, _f=k.backward, _op=node.op):
            t = time.perf_counter()
            out = _f(n, d, need)
            step[_op] += time.perf_counter() - t
            return out
        node.kernel = dataclasses.replace(k, forward=fwd, backward=bwd)
    x = np.random.default_rng(0).standard_normal((4, *net.input_shape)).astype(np.float32) * 4
    best: dict = {}
    for k in range(21):
        step.clear()
        model.loss(x, [0, 1, 2, 3])
        model.backward(input_grad=True)
        if k:
            for op in ("bn", ACT):
                best[op] = min(best.get(op, float("inf")), step.get(op, 0.0))
    fused = dict(net.graph.nodes(data=True))["bn1"].get("epilogue") == ACT
    print(f"{shape:11} {f'bn+{ACT} fused' if fused else f'bn, {ACT} apart'}:  bn {best['bn'] * 1e3:6.2f} ms  "
          f"{ACT} {best[ACT] * 1e3:6.2f} ms  together {(best['bn'] + best[ACT]) * 1e3:6.2f} ms", flush=True)
