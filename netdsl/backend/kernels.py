"""Forward and backward kernels, one table entry per op name (the same names as netdsl.ops).

Every kernel is written against `xp` (numpy or CuPy), so one code path serves both devices.
A kernel's forward takes (node, inputs) and returns its output, stashing in `node.saved` what
its backward needs; its backward takes (node, grad_out, need_dx) and returns the gradients of
its inputs (None where not needed) and fills `node.grads` for its parameters.
Layout is NCHW; weights are (out, in/groups, kh, kw) as in PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ops import end_extension, pad_end, window_geometry
from . import im2col
from .cpu import native
from .conv import Conv
from .device import on_gpu
from .cpu.threads import over_batch


@dataclass(frozen=True)
class Kernel:
    forward: Callable
    backward: Callable
    # heads only: (node, x, labels) -> (loss, dx); the loss of the whole batch, averaged
    loss: Callable | None = None
    # backward takes the gradient of the fused activation's output and applies the activation's
    # gradient itself (on the GPU inside its own kernels), instead of the executor doing it first
    applies_epilogue_grad: bool = False


# conv ------------------------------------------------------------------------------------------

def _conv(node):
    m = node.model
    return Conv(node.xp, m.workspace, m.col_budget, node.name, node.keep_cols, m.winograd)


def conv_forward(node, inputs):
    (x,) = inputs
    kernel, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    node.saved["in_hw"] = x.shape[2:]
    x = _extended(node, x, 0)  # padend: zeros after the input
    geo = im2col.Geometry.of(x.shape, kernel, stride, pad)
    bias = node.params.get("bias")
    gpu = on_gpu(node.xp)  # the GPU adds the bias in the epilogue's kernel
    out, saved = _conv(node).forward(x, node.params["weight"], None if gpu else bias, geo, node.attrs["groups"])
    node.saved["conv"] = saved
    if gpu and (bias is not None or node.epilogue):
        if bias is None:
            return elementwise_out(node, "y", {"y": out}, None)
        return elementwise_out(node, "y + b", {"y": out, "b": bias.reshape(1, -1, 1, 1)}, None)
    return out  # on the GPU possibly a strided view (conv.py): every reader takes those


def conv_backward(node, dout, need_dx):
    conv, saved = _conv(node), node.saved["conv"]
    epilogue = None
    if node.epilogue:  # this kernel applies its activation's gradient (applies_epilogue_grad)
        grad, y = ACTIVATIONS[node.epilogue][1], node.saved["epilogue_out"]
        if conv.takes_epilogue(saved, node.epilogue):
            epilogue = (node.epilogue, lambda dy, out: grad(node.xp, dy, out), y)
        else:
            dout = grad(node.xp, dout, y)
    dx, dw, db = conv.backward(saved, dout, node.params["weight"], need_dx, epilogue)
    dx = _cropped(node, dx)
    node.grads["weight"] = dw
    if "bias" in node.params:
        node.grads["bias"] = db
    return [dx]


# fc --------------------------------------------------------------------------------------------


def fc_forward(node, inputs):
    (x,) = inputs
    x2 = x.reshape(x.shape[0], -1)
    node.saved.update(x2=x2, shape=x.shape)
    out = x2 @ node.params["weight"].T
    if "bias" not in node.params:
        return out

    def add_bias():
        return node.xp.add(out, node.params["bias"], out=out)
    return elementwise_out(node, "y + b", {"y": out, "b": node.params["bias"]}, add_bias)


def fc_backward(node, dout, need_dx):
    x2 = node.saved["x2"]
    node.grads["weight"] = dout.T @ x2
    if "bias" in node.params:
        node.grads["bias"] = dout.sum(axis=0)
    return [(dout @ node.params["weight"]).reshape(node.saved["shape"]) if need_dx else None]


# pooling -----------------------------------------------------------------------------------------


def _window_reduce(xp, xpad, geo, op):
    """Max or sum over every window, separably: along the width, then along the height
    (kh + kw - 2 passes instead of kh*kw - 1)."""
    rows = xpad[:, :, :, geo.cols(0)].copy()
    for j in range(1, geo.kernel[1]):
        op(rows, xpad[:, :, :, geo.cols(j)], out=rows)
    out = rows[:, :, geo.rows(0)].copy()
    for i in range(1, geo.kernel[0]):
        op(out, rows[:, :, geo.rows(i)], out=out)
    return out


def _extended(node, x, fill):
    """x with the rows and columns the windows read past its symmetric padding (bottom and right:
    padend, and a ceil-mode pool's overhang), filled with `fill`: the code for symmetric padding
    then makes exactly these windows. Where they sit relative to the padding does not matter:
    both are 0 for conv, -inf for max pooling, and 0 for average pooling, whose divisor comes
    from the true geometry (_avg_divisor)."""
    eh, ew = end_extension([x.shape[1:]], node.attrs)
    if not (eh or ew):
        return x
    xp = node.xp
    n, c, h, w = x.shape
    out = xp.full((n, c, h + eh, w + ew), fill, dtype=x.dtype)
    out[:, :, :h, :w] = x
    return out


def _cropped(node, dx):
    """The gradient of an extended input (_extended), cut back to the input's own rows."""
    if dx is None:
        return None
    h, w = node.saved["in_hw"]
    if dx.shape[2:] != (h, w):
        dx = node.xp.ascontiguousarray(dx[:, :, :h, :w])
    return dx


def _avg_divisor(xp, shape, node, geo, dtype):
    """Per output position, what an average pool divides its window's sum by (PyTorch's and
    ONNX's rule): the positions it covers of the input and the padding (count_pad), or of the
    input alone (exclude_pad); a ceil-mode window past the padding counts only what it covers.
    None where every window divides by kh*kw (the common case, kept on the fast paths)."""
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([shape], node.attrs)
    _, h, w = shape
    count_pad = node.attrs.get("count_pad", True)
    if end_extension([shape], node.attrs) == (0, 0) and (count_pad or (ph, pw) == (0, 0)):
        return None
    eh, ew = pad_end(node.attrs)

    def axis(out, n, k, s, p, e):
        start = np.arange(out) * s - p
        end = start + k
        if count_pad:  # the padding before, and after (pad + padend), counts; a ceil overhang does not
            return np.minimum(end, n + p + e) - start
        return np.minimum(end, n) - np.maximum(start, 0)
    d = axis(geo.oh, h, kh, sh, ph, eh)[:, None] * axis(geo.ow, w, kw, sw, pw, ew)[None, :]
    return xp.asarray(d.astype(dtype))


def pool_forward(node, inputs):
    xp, a = node.xp, node.attrs
    (x,) = inputs
    kernel, stride, pad = window_geometry([x.shape[1:]], a)
    node.saved.update(in_hw=x.shape[2:])
    if a["mode"] == "avg":
        divisor = None
        xe = _extended(node, x, 0)
        geo = im2col.Geometry.of(xe.shape, kernel, stride, pad)
        divisor = _avg_divisor(xp, x.shape[1:], node, geo, x.dtype)
        node.saved.update(geo=geo, divisor=divisor)
        if divisor is None and _tiles(geo) and native.available(xp, x.dtype):  # one pass (LeNet's s2: 0.16 -> 0.11 ms)
            return native.avgpool_tiled(xp, x, geo, forward=True)
        out = _window_reduce(xp, im2col.padded(xp, xe, geo, 0, node.workspace), geo, xp.add)
        if divisor is None:
            out *= 1.0 / (kernel[0] * kernel[1])  # PyTorch's count_include_pad=True
        else:
            out /= divisor
        return out
    x = _extended(node, x, -np.inf)
    geo = im2col.Geometry.of(x.shape, kernel, stride, pad)
    if _layer_kernel(xp):  # one kernel each way, the winning tap kept (gpu_layers.py)
        from .gpu.layers import maxpool_forward
        out, tap = maxpool_forward(x, geo)
        node.saved.update(geo=geo, tap=tap, shape=x.shape)
        return out
    if native.available(xp, x.dtype):  # one pass each way, the winning position kept (native.c)
        out, arg = native.maxpool_forward(xp, x, geo)
        node.saved.update(geo=geo, arg=arg, shape=x.shape)
        return out
    xpad = im2col.padded(xp, x, geo, -xp.inf, None)  # kept: backward finds the maxima again
    out = xp.empty((x.shape[0], x.shape[1], geo.oh, geo.ow), dtype=x.dtype)

    def work(lo, hi):
        for cs in _channel_blocks(x.shape[1], (hi - lo) * geo.oh * geo.ow):
            out[lo:hi, cs] = _window_reduce(xp, xpad[lo:hi, cs], geo, xp.maximum)
    over_batch(xp, x.shape[0], xpad.size, work)
    node.saved.update(geo=geo, xpad=xpad, out=out)
    return out


# Max pooling's passes run over blocks of channels about this many outputs big, so that the
# nine taps' compare/route passes find their block in cache: ResNet-18's pool1 backward (b8,
# 64x112x112, 3x3 /2) 37 -> 18 ms alone (benchmarks/NOTES.md, change 22).
POOL_BLOCK = 1 << 17


def _channel_blocks(channels: int, per_channel: int) -> list[slice]:
    step = max(1, POOL_BLOCK // max(per_channel, 1))
    return [slice(c, min(channels, c + step)) for c in range(0, channels, step)]


def _tiles(geo) -> bool:
    """Windows that tile the input exactly (LeNet's 2x2 /2 on 28x28): no overlap, no padding,
    nothing left over."""
    return (geo.kernel == geo.stride and geo.pad == (0, 0)
            and (geo.oh * geo.kernel[0], geo.ow * geo.kernel[1]) == (geo.h, geo.w))


def pool_backward(node, dout, need_dx):
    if not need_dx:
        return [None]
    (dx,) = _pool_backward(node, dout)
    return [_cropped(node, dx)]  # the extra rows and columns past the input: no input there


def _pool_backward(node, dout):
    xp, a = node.xp, node.attrs
    geo = node.saved["geo"]
    kh, kw = geo.kernel
    n, c = dout.shape[:2]
    if a["mode"] == "avg":
        divisor = node.saved["divisor"]
        if divisor is None and _tiles(geo) and native.available(xp, dout.dtype):  # s2: 0.15 -> 0.06 ms
            return [native.avgpool_tiled(xp, dout, geo, forward=False)]
        share = dout * (1.0 / (kh * kw)) if divisor is None else dout / divisor
        if divisor is None and _tiles(geo):  # every input value in exactly one window
            dx = xp.empty((n, c, geo.oh, kh, geo.ow, kw), dtype=dout.dtype)
            for i in range(kh):  # one copy a tap: 3x faster here than a broadcast over size-2 axes
                for j in range(kw):
                    dx[:, :, :, i, :, j] = share
            return [dx.reshape(n, c, geo.h, geo.w)]
        dx_pad = xp.zeros((n, c, geo.hp, geo.wp), dtype=dout.dtype)
        for i in range(kh):
            for j in range(kw):
                dx_pad[:, :, geo.rows(i), geo.cols(j)] += share
        return [im2col.unpad(dx_pad, geo)]
    if _layer_kernel(xp):
        from .gpu.layers import maxpool_backward
        return [maxpool_backward(dout, node.saved["tap"], geo, node.saved["shape"])]
    if "arg" in node.saved:
        return [native.maxpool_backward(xp, dout, node.saved["arg"], geo, node.saved["shape"])]
    # Each window's gradient goes to its first maximum in tap order (PyTorch's tie rule): the
    # taps in order take what is left of the window's gradient where they equal the maximum,
    # and leave zero behind (rem - rem*1 is exactly 0), so later equal taps get nothing.
    # Strided pools work on the input split by row and column phase (i mod s, j mod s): every
    # tap's view of its phase is contiguous along rows, where numpy's loops over a stride-2 view
    # ran 8-10x slower than over contiguous memory.
    xpad, out = node.saved["xpad"], node.saved["out"]
    dx_pad = xp.zeros((n, c, geo.hp, geo.wp), dtype=dout.dtype)
    sh, sw = geo.stride
    split = (sh, sw) != (1, 1)
    keys = [(a, b) for a in range(min(sh, kh)) for b in range(min(sw, kw))] if split else [(0, 0)]

    def route(x, d, left, o):  # one block of images and channels; left: its gradient, consumed
        phases = {k: xp.ascontiguousarray(x[:, :, k[0]::sh, k[1]::sw]) for k in keys} if split else {(0, 0): x}
        grads = {k: xp.zeros_like(v) for k, v in phases.items()} if split else {(0, 0): d}
        hit = xp.empty(left.shape, dtype=bool)
        routed = xp.empty_like(left)
        for i in range(kh):
            for j in range(kw):
                key, rows, cols = (i % sh, j % sw), slice(i // sh, i // sh + geo.oh), slice(j // sw, j // sw + geo.ow)
                xp.equal(phases[key][:, :, rows, cols], o, out=hit)
                xp.multiply(left, hit, out=routed)
                left -= routed
                grads[key][:, :, rows, cols] += routed
        if split:
            for (a, b), g in grads.items():
                d[:, :, a::sh, b::sw] = g

    def work(lo, hi):
        for cs in _channel_blocks(c, (hi - lo) * geo.oh * geo.ow):
            route(xpad[lo:hi, cs], dx_pad[lo:hi, cs], dout[lo:hi, cs].copy(), out[lo:hi, cs])
    over_batch(xp, n, dx_pad.size, work)
    return [im2col.unpad(dx_pad, geo)]


# elementwise -----------------------------------------------------------------------------------


# Activations, each as (forward on an array, in place on the CPU; gradient from the OUTPUT y).
# Written this way so that the same rule serves the standalone ops and the fused epilogues
# (passes/fuse.py). On the GPU both run as one generated kernel (gpu/cuda.py, ACTIVATION_EXPR).


def _layer_kernel(xp) -> bool:
    """Whether bn, LRN and max pooling run as the GPU's whole-layer kernels (gpu_layers.py)."""
    if not on_gpu(xp):
        return False
    from .gpu.layers import ENABLED
    return ENABLED


def _relu_inplace(xp, a):
    over_batch(xp, a.shape[0], a.size, lambda lo, hi: xp.maximum(a[lo:hi], 0, out=a[lo:hi]))
    return a


# The gradient rules write a C-ordered result in dy's logical shape even where dy and y are
# transposed views: a conv writes its activation's gradient straight into its GEMM's layout.
def _relu_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    over_batch(xp, dy.shape[0], dy.size, lambda lo, hi: xp.multiply(dy[lo:hi], y[lo:hi] > 0, out=dx[lo:hi]))
    return dx


def _tanh_inplace(xp, a):
    over_batch(xp, a.shape[0], a.size, lambda lo, hi: xp.tanh(a[lo:hi], out=a[lo:hi]))
    return a


def _tanh_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)

    def work(lo, hi):  # dy * (1 - y^2), in one buffer
        d = dx[lo:hi]
        xp.multiply(y[lo:hi], y[lo:hi], out=d)
        xp.subtract(1, d, out=d)
        xp.multiply(d, dy[lo:hi], out=d)
    over_batch(xp, dy.shape[0], dy.size, work)
    return dx


def _sigmoid_inplace(xp, a):
    # 1/(1+e^-a) without overflow: e^(-log(1 + e^-a))
    xp.negative(a, out=a)
    xp.logaddexp(0, a, out=a)
    xp.negative(a, out=a)
    return xp.exp(a, out=a)


def _sigmoid_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    xp.subtract(1, y, out=dx)
    dx *= y
    dx *= dy
    return dx


def _device_rule(name, cpu_apply, cpu_grad):
    """The CPU rule, or on the GPU the activation as one generated CUDA kernel each way."""
    def apply(xp, a):
        if on_gpu(xp):
            from .gpu.cuda import chain
            return chain(("x",), "x", name)(a)
        return cpu_apply(xp, a)

    def grad(xp, dy, y):
        if on_gpu(xp):
            from .gpu.cuda import activation_grad
            return activation_grad(name)(dy, y)
        return cpu_grad(xp, dy, y)
    return apply, grad


ACTIVATIONS = {"relu": _device_rule("relu", _relu_inplace, _relu_grad),
               "tanh": _device_rule("tanh", _tanh_inplace, _tanh_grad),
               "sigmoid": _device_rule("sigmoid", _sigmoid_inplace, _sigmoid_grad)}


def elementwise_out(node, expr: str, operands: dict, compute: Callable):
    """A producer's last elementwise step (bias, affine, sum). On the GPU it runs as one kernel
    generated for this chain, with the node's fused activation (its epilogue) applied in the same
    pass, and the node says so in `saved`; on the CPU `compute()` returns the value and the
    executor applies the epilogue in place."""
    if on_gpu(node.xp):
        from .gpu.cuda import chain
        node.saved["epilogue_applied"] = True
        return chain(tuple(operands), expr, node.epilogue)(*operands.values())
    return compute()


def _activation(name):
    apply, grad = ACTIVATIONS[name]

    def forward(node, inputs):
        x = inputs[0]  # the CPU rules work in place; the GPU's kernel writes a new array
        out = apply(node.xp, x if on_gpu(node.xp) else x.copy())
        node.saved["out"] = out
        return out

    def backward(node, dout, need_dx):
        return [grad(node.xp, dout, node.saved["out"])]
    return Kernel(forward, backward)


def leaky_forward(node, inputs):
    """x where x > 0, else slope * x. Not fused as an epilogue (passes/fuse.py fuses the
    parameterless activations only), so it runs as its own pass on both devices."""
    (x,) = inputs
    xp = node.xp
    out = xp.where(x > 0, x, x * x.dtype.type(node.attrs["slope"]))
    node.saved["out"] = out
    return out


def leaky_backward(node, dout, need_dx):
    # from the output: y > 0 exactly where x > 0 (the slope is 0 or more, under 1)
    y = node.saved["out"]
    return [node.xp.where(y > 0, dout, dout * dout.dtype.type(node.attrs["slope"]))]


def dropout_forward(node, inputs):
    (x,) = inputs
    p = node.attrs["p"]
    if not node.training or p == 0:
        node.saved["mask"] = None
        return x
    keep = node.rng_uniform(x.shape) >= p
    mask = keep.astype(x.dtype) / (1 - p)  # inverted dropout: evaluation needs no rescaling
    node.saved["mask"] = mask
    return x * mask


def dropout_backward(node, dout, need_dx):
    mask = node.saved["mask"]
    return [dout if mask is None else dout * mask]


# normalisation ---------------------------------------------------------------------------------


def _channel_window_sum(xp, a, before: int, after: int):
    """sum over channels c-before .. c+after of a (N, C, ...) array, zero beyond the edges."""
    c = a.shape[1]
    cs = xp.cumsum(a, axis=1)
    zero = xp.zeros_like(a[:, :1])
    cs = xp.concatenate([zero, cs], axis=1)  # cs[k] = sum of a[:k]
    hi = xp.minimum(xp.arange(c) + after + 1, c)
    lo = xp.maximum(xp.arange(c) - before, 0)
    return cs[:, hi] - cs[:, lo]


def lrn_forward(node, inputs):
    """PyTorch's / Caffe's LRN: b = a / (k + alpha/n * sum_window a^2)^beta, window of n channels
    centred on c (n//2 before, (n-1)//2 after)."""
    xp, a = node.xp, node.attrs
    (x,) = inputs
    n = a["size"]
    if _layer_kernel(xp):  # each thread sums its channel window directly (gpu_layers.py)
        from .gpu.layers import lrn_forward as lrn_gpu
        x = xp.ascontiguousarray(x)
        scale, out = lrn_gpu(x, n, a["alpha"], a["beta"], a["k"])
        node.saved.update(x=x, scale=scale, out=out)
        return out
    scale = a["k"] + (a["alpha"] / n) * _channel_window_sum(xp, x * x, n // 2, (n - 1) // 2)
    out = x * scale ** (-a["beta"])
    node.saved.update(x=x, scale=scale, out=out)
    return out


def lrn_backward(node, dout, need_dx):
    xp, a = node.xp, node.attrs
    x, scale, out = node.saved["x"], node.saved["scale"], node.saved["out"]
    n, beta = a["size"], a["beta"]
    if _layer_kernel(xp):
        from .gpu.layers import lrn_backward as lrn_gpu_backward
        return [lrn_gpu_backward(dout, x, scale, out, n, a["alpha"], beta)]
    # d b_c / d a_j over the windows that contain j: channels c with c - n//2 <= j <= c + (n-1)//2
    inner = dout * out / scale
    summed = _channel_window_sum(xp, inner, (n - 1) // 2, n // 2)
    return [dout * scale ** (-beta) - (2 * a["alpha"] * beta / n) * x * summed]


def _per_channel(a):
    """(N, C) or (N, C, ...) -> (N, C, M): reductions run along contiguous memory."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def update_running(node, mean, var, count: int) -> None:
    """Batch norm's running statistics, moved towards a batch's (momentum, PyTorch's rule)."""
    m = node.attrs["momentum"]
    rm, rv = node.buffers["running_mean"], node.buffers["running_var"]
    rm *= 1 - m
    rm += m * mean
    rv *= 1 - m
    rv += m * var * (count / max(count - 1, 1))  # running variance is unbiased (PyTorch)


def _sum_nm(a3):
    return a3.sum(axis=2).sum(axis=0)


def _bn_blocks(xp, x) -> list[slice]:
    """Channel blocks for batch norm's passes: on the CPU ~128K values each, so that a block's
    passes (sum, centre, square, scale, affine, ReLU) run while it is in cache; one block on the
    GPU."""
    per_channel = x.size // x.shape[1]
    return [slice(None)] if on_gpu(xp) else _channel_blocks(x.shape[1], per_channel)


def _over_blocks(xp, blocks: list[slice], size: int, block: Callable) -> None:
    """block(cs) for every channel block, the blocks shared out over the cores."""
    over_batch(xp, len(blocks), size, lambda lo, hi: [block(cs) for cs in blocks[lo:hi]])


def bn_forward(node, inputs):
    """Batch statistics in two passes (the mean, then the squared deviations from it), then the
    affine step and a fused ReLU, channel block by channel block (each block's statistics are its
    own); x-hat kept for the backward pass."""
    xp, a = node.xp, node.attrs
    (x,) = inputs
    count = x.size // x.shape[1]
    sync = node.model.bn_sync
    if sync is not None and node.training:
        return _bn_forward_synced(node, x, count, sync)
    if _layer_kernel(xp):
        return _bn_forward_gpu(node, x, count)
    if _bn_native(node, x.dtype):
        return _bn_forward_native(node, x, count)
    x3 = _per_channel(x)
    centred, out = xp.empty_like(x), xp.empty_like(x)
    c3, o3 = _per_channel(centred), _per_channel(out)
    if node.training:
        mean, var = xp.empty(x.shape[1], dtype=x.dtype), xp.empty(x.shape[1], dtype=x.dtype)
    else:
        mean, var = node.buffers["running_mean"], node.buffers["running_var"]
    inv_std = xp.empty(x.shape[1], dtype=x.dtype)
    gamma, beta = node.params["weight"], node.params["bias"]
    # on the CPU the fused activation runs on each block in place (its rule starts no threads
    # of its own there: threads.over_batch runs whole on a worker); the GPU's generic path
    # leaves it to the executor
    activation = ACTIVATIONS[node.epilogue][0] if node.epilogue and not on_gpu(xp) else None

    def block(cs):
        xb, c, o = x3[:, cs], c3[:, cs], o3[:, cs]
        if node.training:
            mean[cs] = _sum_nm(xb) / count
        xp.subtract(xb, mean[cs][:, None], out=c)
        if node.training:
            var[cs] = _sum_nm(c * c) / count
        inv_std[cs] = 1 / xp.sqrt(var[cs] + a["eps"])
        c *= inv_std[cs][:, None]  # x-hat, in place
        xp.multiply(c, gamma[cs][:, None], out=o)
        o += beta[cs][:, None]
        if activation is not None:
            activation(xp, o)
    _over_blocks(xp, _bn_blocks(xp, x), x.size, block)
    if node.training:
        update_running(node, mean, var, count)
    node.saved.update(xhat=centred, inv_std=inv_std, epilogue_applied=activation is not None)
    return out


def _bn_native(node, dtype) -> bool:
    """Whether batch norm runs as native.c's loops: where they are built, with no activation
    fused or a ReLU (the one they apply themselves)."""
    return node.epilogue in (None, "relu") and native.available(node.xp, dtype)


def _bn_forward_native(node, x, count):
    xp = node.xp
    c = x.shape[1]
    if node.training:
        mean, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    else:
        mean, var = node.buffers["running_mean"], node.buffers["running_var"]
    x = xp.ascontiguousarray(x)
    out, inv_std = native.bn_forward(xp, x, node.params["weight"], node.params["bias"], mean, var,
                                     node.training, node.attrs["eps"], node.epilogue == "relu")
    if node.training:
        update_running(node, mean, var, count)
    else:
        mean = mean.copy()  # the running mean x-hat was computed with, whatever updates it later
    # x and the mean, not x-hat: the backward recomputes it, and the forward writes one array less
    node.saved.update(x=x, mean=mean, inv_std=inv_std, epilogue_applied=node.epilogue is not None)
    return out


def _bn_forward_gpu(node, x, count):
    from .gpu import layers as gpu_layers
    x3 = gpu_layers.channel_view(x)
    a = node.attrs
    if node.training:
        mean, inv_std = gpu_layers.bn_statistics(x3, node.buffers["running_mean"], node.buffers["running_var"],
                                                 a["momentum"], a["eps"])
    else:
        mean, inv_std = node.buffers["running_mean"], 1 / node.xp.sqrt(node.buffers["running_var"] + a["eps"])
    xhat, out = gpu_layers.bn_apply(x3, mean, inv_std, node.params["weight"], node.params["bias"], node.epilogue)
    node.saved.update(xhat=xhat, inv_std=inv_std, epilogue_applied=True)
    return out.reshape(x.shape)


def bn_backward(node, dout, need_dx):
    """dx = (gamma/sigma) * (g - mean(g) - x-hat * mean(g * x-hat)), g the gradient reaching bn's
    output through its fused activation; channel block by channel block, the activation's
    gradient, the two sums and dx while the block is in cache."""
    xp = node.xp
    if node.saved.get("synced"):
        return _bn_backward_synced(node, dout, need_dx)
    if _layer_kernel(xp):
        return _bn_backward_gpu(node, dout, need_dx)
    if _bn_native(node, dout.dtype):
        dx, sum_g, sum_gx = native.bn_backward(xp, dout, node.saved.get("epilogue_out") if node.epilogue else None,
                                               node.saved["x"], node.saved["mean"], node.params["weight"],
                                               node.saved["inv_std"], node.training, need_dx)
        node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
        return [dx]
    xhat, inv_std = node.saved["xhat"], node.saved["inv_std"]
    y = node.saved.get("epilogue_out")
    grad = ACTIVATIONS[node.epilogue][1] if node.epilogue else None
    count = dout.size // dout.shape[1]
    g3, xhat3, y3 = _per_channel(dout), _per_channel(xhat), _per_channel(y) if grad else None
    sum_g, sum_gx = xp.empty_like(inv_std), xp.empty_like(inv_std)
    scale = node.params["weight"] * inv_std
    dx = xp.empty_like(dout) if need_dx else None
    d3 = _per_channel(dx) if need_dx else None

    def block(cs):
        g = g3[:, cs]
        if grad is not None:
            g = grad(xp, g, y3[:, cs])
        xb = xhat3[:, cs]
        sum_g[cs], sum_gx[cs] = _sum_nm(g), _sum_nm(g * xb)
        if not need_dx:
            return
        d, sc = d3[:, cs], scale[cs][:, None]
        if not node.training:
            xp.multiply(g, sc, out=d)
            return
        xp.multiply(xb, -(sum_gx[cs] / count)[:, None], out=d)
        d += g
        d -= (sum_g[cs] / count)[:, None]
        d *= sc
    _over_blocks(xp, _bn_blocks(xp, dout), dout.size, block)
    node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
    return [dx if need_dx else None]


def _bn_backward_gpu(node, dout, need_dx):
    from .gpu import layers as gpu_layers
    y = gpu_layers.channel_view(node.saved["epilogue_out"]) if node.epilogue else None
    dx, dgamma, dbeta = gpu_layers.bn_backward(gpu_layers.channel_view(dout), y, node.saved["xhat"],
                                               node.params["weight"], node.saved["inv_std"], node.training,
                                               node.epilogue)
    node.grads["weight"], node.grads["bias"] = dgamma, dbeta
    return [dx.reshape(dout.shape) if need_dx else None]


def _bn_forward_synced(node, x, count, sync):
    """--sync-bn: the statistics of the global batch. Each rank's mean and sum of squared
    deviations (two passes, as above) are combined over the ranks by `sync` (Chan's parallel
    formula, the same order on every rank); the running statistics follow the global batch."""
    xp, a = node.xp, node.attrs
    x3 = _per_channel(x)
    local_mean = _sum_nm(x3) / count
    centred = x3 - local_mean[:, None]
    mean, var, total = sync.combine(xp, local_mean, _sum_nm(centred * centred), count)
    inv_std = 1 / xp.sqrt(var + a["eps"])
    xhat = (x3 - mean[:, None]) * inv_std[:, None]
    out = xhat * node.params["weight"][:, None] + node.params["bias"][:, None]
    update_running(node, mean, var, total)
    # the fused activation is left to the executor, which keeps its output for the backward pass
    node.saved.update(xhat=xhat, inv_std=inv_std, total=total, synced=True, epilogue_applied=False)
    return out.reshape(x.shape)


def _bn_backward_synced(node, dout, need_dx):
    """dx over the global batch: the sums of g and g * x-hat come from every rank (PyTorch's
    SyncBatchNorm); gamma's and beta's gradients stay this rank's own, averaged with the rest."""
    xp = node.xp
    xhat, inv_std, total = node.saved["xhat"], node.saved["inv_std"], node.saved["total"]
    g = _per_channel(dout)
    if node.epilogue:
        g = ACTIVATIONS[node.epilogue][1](xp, g, _per_channel(node.saved["epilogue_out"]))
    sum_g, sum_gx = _sum_nm(g), _sum_nm(g * xhat)
    node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
    # the global batch's sums, in this rank's units (its loss is the mean over its own images)
    every_g, every_gx = node.model.bn_sync.sums(xp, sum_g, sum_gx)
    if not need_dx:
        return [None]
    dx = (g - (every_g / total)[:, None] - xhat * (every_gx / total)[:, None]) * \
        (node.params["weight"] * inv_std)[:, None]
    return [dx.reshape(dout.shape)]


# structure ---------------------------------------------------------------------------------------


def identity_forward(node, inputs):
    return inputs[0]


def identity_backward(node, dout, need_dx):
    return [dout]


def flatten_forward(node, inputs):
    (x,) = inputs
    node.saved["shape"] = x.shape
    return x.reshape(x.shape[0], -1)


def flatten_backward(node, dout, need_dx):
    return [dout.reshape(node.saved["shape"])]


def concat_forward(node, inputs):
    node.saved["sizes"] = [x.shape[1] for x in inputs]
    return node.xp.concatenate(inputs, axis=1)


def concat_backward(node, dout, need_dx):
    grads, start = [], 0
    for size in node.saved["sizes"]:
        grads.append(dout[:, start:start + size])
        start += size
    return grads


def add_forward(node, inputs):
    xp = node.xp
    node.saved["n"] = len(inputs)

    def summed():
        out = xp.empty_like(inputs[0])

        def work(lo, hi):
            xp.add(inputs[0][lo:hi], inputs[1][lo:hi], out=out[lo:hi])
            for x in inputs[2:]:
                out[lo:hi] += x[lo:hi]
        over_batch(xp, out.shape[0], out.size, work)
        return out
    names = [f"a{k}" for k in range(len(inputs))]
    return elementwise_out(node, " + ".join(names), dict(zip(names, inputs)), summed)


def add_backward(node, dout, need_dx):
    return [dout] * node.saved["n"]


# heads -------------------------------------------------------------------------------------------


def softmax_forward(node, inputs):
    xp = node.xp
    x = inputs[0]
    e = xp.exp(x - x.max(axis=1, keepdims=True))
    out = e / e.sum(axis=1, keepdims=True)
    node.saved["out"] = out
    return out


def softmax_backward(node, dout, need_dx):
    """Only where a softmax is not an output (its loss gives the gradient there): the Jacobian
    y * (dout - sum(dout * y))."""
    y = node.saved["out"]
    return [y * (dout - (dout * y).sum(axis=1, keepdims=True))]


def softmax_loss(node, x, labels):
    """Cross-entropy of softmax(x); gradient (p - onehot)/N."""
    xp = node.xp
    shifted = x - x.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    n = x.shape[0]
    rows = xp.arange(n)
    loss = -log_p[rows, labels].mean()
    dx = xp.exp(log_p)
    dx[rows, labels] -= 1
    return loss, dx / n


def svm_loss(node, x, labels):
    """Multiclass hinge: sum over j != y of max(0, s_j - s_y + margin), averaged over the batch."""
    xp = node.xp
    n = x.shape[0]
    rows = xp.arange(n)
    correct = x[rows, labels][:, None]
    margins = xp.maximum(0, x - correct + node.attrs["margin"])
    margins[rows, labels] = 0
    loss = margins.sum() / n
    dx = (margins > 0).astype(x.dtype)
    dx[rows, labels] = -dx.sum(axis=1)
    return loss, dx / n


KERNELS: dict[str, Kernel] = {
    "input": Kernel(identity_forward, identity_backward),
    "conv": Kernel(conv_forward, conv_backward, applies_epilogue_grad=True),
    "fc": Kernel(fc_forward, fc_backward),
    "pool": Kernel(pool_forward, pool_backward),
    "relu": _activation("relu"),
    "tanh": _activation("tanh"),
    "sigmoid": _activation("sigmoid"),
    "leaky": Kernel(leaky_forward, leaky_backward),
    "dropout": Kernel(dropout_forward, dropout_backward),
    "lrn": Kernel(lrn_forward, lrn_backward),
    "bn": Kernel(bn_forward, bn_backward, applies_epilogue_grad=True),
    "flatten": Kernel(flatten_forward, flatten_backward),
    "concat": Kernel(concat_forward, concat_backward),
    "add": Kernel(add_forward, add_backward),
    "softmax": Kernel(softmax_forward, softmax_backward, softmax_loss),
    "svm": Kernel(identity_forward, identity_backward, svm_loss),
}

# Ops that never reach a back end: passes/lower_shortcuts rewrites them before execution.
LOWERED_BEFORE_EXECUTION = frozenset({"shortcut"})

# The zoo's ops (issue 26) and the depthwise conv kernel, kept in their own module for now.
from .zoo_kernels import ZOO_KERNELS, with_depthwise  # noqa: E402
KERNELS.update({op: Kernel(*pair) for op, pair in ZOO_KERNELS.items()},
               conv=Kernel(*with_depthwise(conv_forward, conv_backward, ACTIVATIONS, elementwise_out),
                           applies_epilogue_grad=True))
