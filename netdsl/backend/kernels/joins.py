"""The structure ops: the input, flatten, and the joins of branches (concat, add, and
squeeze-and-excitation's gate)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cpu.threads import over_batch
from .variants import Variant, always, chain_out, gpu, kernel, through_epilogue


def identity_forward(node, inputs):
    return inputs[0], None


def identity_backward(node, saved, dout, need_dx):
    return [dout]


IDENTITY = kernel(Variant("reference", always, identity_forward, identity_backward))


@dataclass
class Shape:
    shape: tuple


def flatten_forward(node, inputs):
    (x,) = inputs
    return x.reshape(x.shape[0], -1), Shape(x.shape)


def flatten_backward(node, saved: Shape, dout, need_dx):
    return [dout.reshape(saved.shape)]


FLATTEN = kernel(Variant("reference", always, flatten_forward, flatten_backward))


@dataclass
class Sizes:
    sizes: list[int]  # each input's channels


def concat_forward(node, inputs):
    return node.xp.concatenate(inputs, axis=1), Sizes([x.shape[1] for x in inputs])


def concat_backward(node, saved: Sizes, dout, need_dx):
    grads, start = [], 0
    for size in saved.sizes:
        grads.append(dout[:, start:start + size])
        start += size
    return grads


CONCAT = kernel(Variant("reference", always, concat_forward, concat_backward))


@dataclass
class Count:
    n: int  # how many inputs were summed


def add_forward(node, inputs):
    xp = node.xp
    out = xp.empty_like(inputs[0])

    def work(lo, hi):
        xp.add(inputs[0][lo:hi], inputs[1][lo:hi], out=out[lo:hi])
        for x in inputs[2:]:
            out[lo:hi] += x[lo:hi]
    over_batch(xp, out.shape[0], out.size, work)
    return out, Count(len(inputs))


def add_forward_gpu(node, inputs):
    """The sum and the fused activation in one generated kernel."""
    names = [f"a{k}" for k in range(len(inputs))]
    return chain_out(node, " + ".join(names), dict(zip(names, inputs))), Count(len(inputs))


def add_backward(node, saved: Count, dout, need_dx):
    return [dout] * saved.n


def add_backward_gpu(node, saved: Count, dout, need_dx):
    return add_backward(node, saved, through_epilogue(node, dout), need_dx)


ADD = kernel(Variant("reference", always, add_forward, add_backward),
             Variant("gpu_chain", gpu, add_forward_gpu, add_backward_gpu, epilogue=True))


# the squeeze-and-excitation gate -----------------------------------------------------------------


@dataclass
class Gated:
    x: Any
    g4: Any  # the gate as (N, C, 1, 1)
    g_shape: tuple  # the gate as it came: (N, C) from an fc, (N, C, 1, 1) from a conv


def gate_forward(node, inputs):
    """y[n, c, h, w] = x[n, c, h, w] * g[n, c]: the gate is (N, C) or (N, C, 1, 1)."""
    x, g = inputs
    g4 = g.reshape(g.shape[0], g.shape[1], 1, 1)
    return x * g4, Gated(x, g4, g.shape)


def gate_backward(node, saved: Gated, dout, need_dx):
    dx = dout * saved.g4
    dg = (dout * saved.x).sum(axis=(2, 3)).reshape(saved.g_shape)
    return [dx, dg]


GATE = kernel(Variant("reference", always, gate_forward, gate_backward))
