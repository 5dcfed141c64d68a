"""`netdsl run`: time one batch forward and backward on a device, as a user's first look at
how fast a network is. Medians over timed repetitions after a warm-up."""
from __future__ import annotations

import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass, field

import numpy as np

from ..compiler import Network
from ..backend.device import Device
from ..backend.executor import Model
from ..backend.kernels.dense import DEPTHWISE
from .budget import plan_step

CPU_BATCH_BUDGET = 2 * 2**30  # bytes the planned step of a default batch may use


@dataclass
class RunReport:
    network: str
    device: str
    batch: int
    repeat: int
    forward_ms: float
    backward_ms: float
    images_per_s: float
    gflops: float
    peak_bytes: int
    params: int
    macs_per_image: int
    planned_peak_bytes: int  # inference, from passes/plan_memory: buffers shared across lifetimes
    optimised: bool
    # each conv layer's algorithm in the training step, and where the choice came from (backend/tuner.py)
    algorithms: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def default_batch(net: Network, available: int | None = None) -> int:
    """As many images as the step plan fits in a modest budget (and in what is free), 1 to 16."""
    budget = CPU_BATCH_BUDGET if available is None else min(CPU_BATCH_BUDGET, available)
    return int(max(1, min(16, plan_step(net, optimiser=False).largest_batch(budget))))


def run(net: Network, device: Device, batch: int | None = None, repeat: int = 3, seed: int = 0,
        optimise: bool = True, precision: str = "default") -> RunReport:
    from ..compiler import optimise as optimise_net
    batch = batch or default_batch(net)
    planned = optimise_net(net, "inference").graph.graph["planned_peak"] * 4 * batch
    if optimise:
        net = optimise_net(net, "training")
    model = Model(net, device=device, seed=seed, precision=precision)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    classes = net.layer(net.outputs[0][1]).shape[0]
    labels = rng.integers(0, classes, batch)
    x_dev = model.xp.asarray(x)

    def step():
        t0 = time.perf_counter()
        model.loss(x_dev, labels, training=True)
        device.synchronize()
        t1 = time.perf_counter()
        model.backward()
        device.synchronize()
        return t1 - t0, time.perf_counter() - t1

    if device.name == "cpu":
        tracemalloc.start()  # numpy reports its allocations to tracemalloc
        step()  # warm-up, and the peak memory of one step
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        pool = model.xp.get_default_memory_pool()
        step()
        peak = pool.total_bytes()
    algorithms = [_algorithm(node) for node in model.nodes if node.op == "conv" and node.saved is not None]
    times = [step() for _ in range(repeat)]
    fwd = statistics.median(t[0] for t in times)
    bwd = statistics.median(t[1] for t in times)
    macs = net.totals().macs
    # forward 2*MACs FLOPs per image; backward about twice that (input and weight gradients)
    flops = 3 * 2 * macs * batch
    return RunReport(net.name, device.description, batch, repeat, fwd * 1000, bwd * 1000, batch / (fwd + bwd),
                     flops / (fwd + bwd) / 1e9, int(peak), net.totals().params, macs, int(planned), optimise,
                     algorithms)


def _algorithm(node) -> dict:
    """What a conv layer ran in the step: conv.py's path and where its choice came from, or the
    variant of its own algorithm (the depthwise kernels), which no tuner chooses."""
    if node.variant.own_algorithm:
        return {"layer": node.name, "algorithm": DEPTHWISE, "source": "its own kernel"}
    conv = node.saved.conv
    return {"layer": node.name, "algorithm": conv.get("algorithm", conv["path"]), "source": conv.get("source", "device")}
