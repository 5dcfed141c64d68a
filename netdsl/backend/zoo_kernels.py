"""Kernels of the zoo's ops (issue 26): the MobileNet/EfficientNet activations, the
squeeze-and-excitation gate, option A's zeropad, ShuffleNet's split and shuffle, and a
depthwise convolution kernel.

Written against `xp` (numpy or CuPy) like the rest of the kernel table, with the same calling
convention: forward(node, inputs) -> output, stashing in node.saved what backward needs;
backward(node, dout, need_dx) -> the inputs' gradients. `ZOO_KERNELS` holds (forward, backward)
keyed by op name; kernels.py makes them Kernel records with one update. `with_depthwise` wraps the
general conv kernel: layers with one filter per channel (groups = channels = filters) take the kernel
here, the rest the general one.
"""
from __future__ import annotations

from typing import Callable

from ..ops import end_extension, window_geometry
from .cpu.threads import over_batch
from .device import on_gpu


def _record(forward: Callable, backward: Callable) -> tuple[Callable, Callable]:
    """(forward, backward): kernels.py makes its Kernel records of these (this module imports
    nothing of it, so the import runs one way)."""
    return forward, backward


# activations -------------------------------------------------------------------------------------
# Each as (forward: x -> y, gradient: (dy, x, y) -> dx). relu6 and hsigmoid are piecewise linear
# and differentiate from their output; hswish and silu need their input.


def _relu6(xp, x):
    return xp.clip(x, 0, 6)


def _relu6_grad(xp, dy, x, y):
    return dy * ((y > 0) & (y < 6))


def _hsigmoid(xp, x):
    return xp.clip(x * (1 / 6) + 0.5, 0, 1)


def _hsigmoid_grad(xp, dy, x, y):
    return dy * (((y > 0) & (y < 1)) * (1 / 6)).astype(dy.dtype)


def _hswish(xp, x):
    return x * xp.clip(x * (1 / 6) + 0.5, 0, 1)


def _hswish_grad(xp, dy, x, y):
    # 0 below -3, 1 above 3, (2x + 3)/6 between (PyTorch's hardswish_backward)
    slope = xp.where(x < -3, 0, xp.where(x > 3, 1, x * (1 / 3) + 0.5)).astype(dy.dtype)
    return dy * slope


def _sigmoid(xp, x):
    return xp.exp(-xp.logaddexp(0, -x))  # 1/(1 + e^-x) without overflow


def _silu(xp, x):
    return x * _sigmoid(xp, x)


def _silu_grad(xp, dy, x, y):
    s = _sigmoid(xp, x)
    return dy * (s * (1 + x * (1 - s)))


def _activation(apply: Callable, grad: Callable):
    def forward(node, inputs):
        (x,) = inputs
        y = apply(node.xp, x)
        node.saved.update(x=x, y=y)
        return y

    def backward(node, dout, need_dx):
        return [grad(node.xp, dout, node.saved["x"], node.saved["y"])]
    return _record(forward, backward)


# the squeeze-and-excitation gate -----------------------------------------------------------------


def gate_forward(node, inputs):
    """y[n, c, h, w] = x[n, c, h, w] * g[n, c]: the gate is (N, C) or (N, C, 1, 1)."""
    x, g = inputs
    g4 = g.reshape(g.shape[0], g.shape[1], 1, 1)
    node.saved.update(x=x, g4=g4, g_shape=g.shape)
    return x * g4


def gate_backward(node, dout, need_dx):
    x, g4 = node.saved["x"], node.saved["g4"]
    dx = dout * g4
    dg = (dout * x).sum(axis=(2, 3)).reshape(node.saved["g_shape"])
    return [dx, dg]


# option A's identity: subsampled, zero channels added -----------------------------------------------


def zeropad_forward(node, inputs):
    (x,) = inputs
    sh, sw = node.attrs["stride"]
    picked = x[:, :, ::sh, ::sw]
    out = node.xp.zeros((x.shape[0], node.attrs["out"], *picked.shape[2:]), dtype=x.dtype)
    out[:, : x.shape[1]] = picked
    node.saved["shape"] = x.shape
    return out


def zeropad_backward(node, dout, need_dx):
    sh, sw = node.attrs["stride"]
    shape = node.saved["shape"]
    dx = node.xp.zeros(shape, dtype=dout.dtype)
    dx[:, :, ::sh, ::sw] = dout[:, : shape[1]]
    return [dx]


# ShuffleNet v2's split and shuffle -----------------------------------------------------------------


def _part(node, channels: int) -> slice:
    size = channels // node.attrs["parts"]
    k = node.attrs["take"] - 1
    return slice(k * size, (k + 1) * size)


def split_forward(node, inputs):
    (x,) = inputs
    node.saved["shape"] = x.shape
    return node.xp.ascontiguousarray(x[:, _part(node, x.shape[1])])


def split_backward(node, dout, need_dx):
    shape = node.saved["shape"]
    dx = node.xp.zeros(shape, dtype=dout.dtype)
    dx[:, _part(node, shape[1])] = dout
    return [dx]


def _shuffled(xp, x, groups: int):
    """Channel j*(C/g) + i goes to i*g + j: the (g, C/g) channel grid transposed."""
    n, c, h, w = x.shape
    return xp.ascontiguousarray(x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)).reshape(n, c, h, w)


def shuffle_forward(node, inputs):
    (x,) = inputs
    return _shuffled(node.xp, x, node.attrs["groups"])


def shuffle_backward(node, dout, need_dx):
    # the inverse permutation: the transposed grid transposed back
    return [_shuffled(node.xp, dout, dout.shape[1] // node.attrs["groups"])]


# depthwise convolution ------------------------------------------------------------------------------
# One kxk filter per channel: im2col would build C*k*k columns per position to multiply each by one
# weight through C tiny GEMMs. Here each of the k*k taps is one multiply-add over the whole
# (strided) map: k*k passes over memory, each vectorised across batch, channels and positions.


CACHE_BLOCK = 1 << 15  # input values a block of the forward pass works on (128 KiB of float32)


def is_depthwise(node) -> bool:
    """One filter per channel, each seeing its own channel: groups = channels = filters."""
    w = node.params["weight"]
    return node.attrs["groups"] == w.shape[0] and w.shape[1] == 1 and w.shape[0] > 1


def _tap(xpad, i: int, j: int, oh: int, ow: int, sh: int, sw: int):
    return xpad[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]


def depthwise_forward(node, inputs, elementwise_out):
    xp = node.xp
    (x,) = inputs
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([x.shape[1:]], node.attrs)
    eh, ew = end_extension([x.shape[1:]], node.attrs)
    n, c, h, w = x.shape
    xpad = xp.zeros((n, c, h + 2 * ph + eh, w + 2 * pw + ew), dtype=x.dtype)
    xpad[:, :, ph: ph + h, pw: pw + w] = x
    oh, ow = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    weight = node.params["weight"].reshape(c, kh, kw)
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)

    # on the CPU one image and a block of channels at a time, so that its k*k passes run in cache
    step = c if on_gpu(xp) else max(1, CACHE_BLOCK // max(1, xpad.shape[2] * xpad.shape[3]))

    def work(lo, hi):
        for cs in [slice(a, min(c, a + step)) for a in range(0, c, step)]:
            for im in ([slice(lo, hi)] if on_gpu(xp) else [slice(k, k + 1) for k in range(lo, hi)]):
                o, xs = out[im, cs], xpad[im, cs]
                tmp = xp.empty(o.shape, dtype=x.dtype)
                for i in range(kh):
                    for j in range(kw):
                        wij = weight[cs, i, j].reshape(1, -1, 1, 1)
                        if i == 0 and j == 0:
                            xp.multiply(_tap(xs, i, j, oh, ow, sh, sw), wij, out=o)
                        else:
                            xp.multiply(_tap(xs, i, j, oh, ow, sh, sw), wij, out=tmp)
                            o += tmp
    over_batch(xp, n, out.size * kh * kw, work)
    node.saved.update(xpad=xpad, geo=(kh, kw, sh, sw, ph, pw, h, w))
    bias = node.params.get("bias")
    if on_gpu(xp):  # bias and a fused activation in the epilogue's one kernel, as the general conv does
        if bias is not None or node.epilogue:
            operands = {"y": out} if bias is None else {"y": out, "b": bias.reshape(1, -1, 1, 1)}
            return elementwise_out(node, "y" if bias is None else "y + b", operands, None)
    elif bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def depthwise_backward(node, dout, need_dx, activations):
    xp = node.xp
    if node.epilogue:  # the conv record applies its fused activation's gradient itself
        dout = activations[node.epilogue][1](xp, dout, node.saved["epilogue_out"])
    xpad = node.saved["xpad"]
    kh, kw, sh, sw, ph, pw, h, w = node.saved["geo"]
    n, c, oh, ow = dout.shape
    weight = node.params["weight"].reshape(c, kh, kw)
    dw = xp.zeros((c, kh, kw), dtype=dout.dtype)
    dxpad = xp.zeros_like(xpad) if need_dx else None
    for i in range(kh):
        for j in range(kw):
            # the weight's gradient: sum over batch and positions of dout times the tap's input
            dw[:, i, j] = xp.einsum("nchw,nchw->c", dout, _tap(xpad, i, j, oh, ow, sh, sw))
            if need_dx:
                _tap(dxpad, i, j, oh, ow, sh, sw)[...] += dout * weight[:, i, j].reshape(1, c, 1, 1)
    node.grads["weight"] = dw.reshape(node.params["weight"].shape)
    if "bias" in node.params:
        node.grads["bias"] = dout.sum(axis=(0, 2, 3))
    dx = xp.ascontiguousarray(dxpad[:, :, ph: ph + h, pw: pw + w]) if need_dx else None
    return [dx]


def with_depthwise(general_forward: Callable, general_backward: Callable, activations, elementwise_out):
    """The conv kernel's (forward, backward): depthwise layers by the kernel above, the rest by the
    general ones. `activations` and `elementwise_out` are kernels.py's (its epilogue rules)."""
    def forward(node, inputs):
        if is_depthwise(node):
            return depthwise_forward(node, inputs, elementwise_out)
        return general_forward(node, inputs)

    def backward(node, dout, need_dx):
        if is_depthwise(node):
            return depthwise_backward(node, dout, need_dx, activations)
        return general_backward(node, dout, need_dx)
    return forward, backward


ZOO_KERNELS = {
    "relu6": _activation(_relu6, _relu6_grad),
    "hsigmoid": _activation(_hsigmoid, _hsigmoid_grad),
    "hswish": _activation(_hswish, _hswish_grad),
    "silu": _activation(_silu, _silu_grad),
    "gate": _record(gate_forward, gate_backward),
    "zeropad": _record(zeropad_forward, zeropad_backward),
    "split": _record(split_forward, split_backward),
    "shuffle": _record(shuffle_forward, shuffle_backward),
}
