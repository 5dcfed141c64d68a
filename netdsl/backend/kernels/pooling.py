"""Max and average pooling: per mode, the reference over a padded copy of the input, then the
faster variants (native.c's loops on the CPU, the whole-layer kernels on the GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ops import end_extension, pad_end, window_geometry
from .. import im2col
from ..cpu import native
from ..cpu.threads import over_batch
from .variants import Variant, always, gpu_layers, kernel_by
from .windows import channel_blocks, cropped, extended


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


def _tiles(geo) -> bool:
    """Windows that tile the input exactly (LeNet's 2x2 /2 on 28x28): no overlap, no padding,
    nothing left over."""
    return (geo.kernel == geo.stride and geo.pad == (0, 0)
            and (geo.oh * geo.kernel[0], geo.ow * geo.kernel[1]) == (geo.h, geo.w))


def _native(node, inputs) -> bool:
    return native.available(node.xp, inputs[0].dtype)


# average ---------------------------------------------------------------------------------------


@dataclass
class AvgSaved:
    in_hw: tuple[int, int]
    geo: Any
    divisor: Any  # per output position, or None: every window divides by kh*kw


def _uniform(node, x) -> bool:
    """Whether every window divides by kh*kw: nothing past the symmetric padding, and the
    padding counted (or there is none)."""
    shape = x.shape[1:]
    return end_extension([shape], node.attrs) == (0, 0) and (
        node.attrs.get("count_pad", True) or window_geometry([shape], node.attrs)[2] == (0, 0))


def avg_divisor(xp, shape, node, geo, dtype):
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


def _tiled(node, inputs) -> bool:
    """Uniform windows that tile the input (no extension then: the input's own geometry)."""
    x = inputs[0]
    if not _uniform(node, x):
        return False
    kernel_, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    return _tiles(im2col.Geometry.of(x.shape, kernel_, stride, pad))


def avg_forward(node, inputs):
    xp = node.xp
    (x,) = inputs
    kernel_, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    xe = extended(node, x, 0)
    geo = im2col.Geometry.of(xe.shape, kernel_, stride, pad)
    divisor = avg_divisor(xp, x.shape[1:], node, geo, x.dtype)
    out = _window_reduce(xp, im2col.padded(xp, xe, geo, 0, node.workspace), geo, xp.add)
    if divisor is None:
        out *= 1.0 / (kernel_[0] * kernel_[1])  # PyTorch's count_include_pad=True
    else:
        out /= divisor
    return out, AvgSaved(x.shape[2:], geo, divisor)


def avg_backward(node, saved: AvgSaved, dout, need_dx):
    """Each window's share of its gradient back onto every position it covers."""
    if not need_dx:
        return [None]
    xp, geo = node.xp, saved.geo
    kh, kw = geo.kernel
    n, c = dout.shape[:2]
    share = dout * (1.0 / (kh * kw)) if saved.divisor is None else dout / saved.divisor
    dx_pad = xp.zeros((n, c, geo.hp, geo.wp), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, geo.rows(i), geo.cols(j)] += share
    return [cropped(node, saved.in_hw, im2col.unpad(dx_pad, geo))]


def avg_backward_tiled(node, saved: AvgSaved, dout, need_dx):
    """Every input value in exactly one window: its share copied a tap at a time (3x faster here
    than a broadcast over size-2 axes)."""
    if not need_dx:
        return [None]
    xp, geo = node.xp, saved.geo
    kh, kw = geo.kernel
    n, c = dout.shape[:2]
    share = dout * (1.0 / (kh * kw))
    dx = xp.empty((n, c, geo.oh, kh, geo.ow, kw), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, :, i, :, j] = share
    return [dx.reshape(n, c, geo.h, geo.w)]


def avg_forward_native(node, inputs):
    """native.c's one pass each way over windows that tile the input (LeNet's s2; benchmarks/NOTES.md,
    change 38)."""
    (x,) = inputs
    kernel_, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    geo = im2col.Geometry.of(x.shape, kernel_, stride, pad)
    return native.avgpool_tiled(node.xp, x, geo, forward=True), AvgSaved(x.shape[2:], geo, None)


def avg_backward_native(node, saved: AvgSaved, dout, need_dx):
    return [native.avgpool_tiled(node.xp, dout, saved.geo, forward=False) if need_dx else None]


AVG = (Variant("reference", always, avg_forward, avg_backward),
       Variant("native_tiled", lambda node, inputs: _native(node, inputs) and _tiled(node, inputs),
               avg_forward_native, avg_backward_native),
       Variant("tiled", _tiled, avg_forward, avg_backward_tiled))


# max -----------------------------------------------------------------------------------------------


@dataclass
class MaxSaved:
    in_hw: tuple[int, int]
    geo: Any
    xpad: Any  # the padded input: backward finds the maxima again
    out: Any


@dataclass
class MaxTapSaved:
    in_hw: tuple[int, int]
    geo: Any
    tap: Any  # per output, where its maximum was: the window's tap (GPU) or the input's offset (native)
    shape: tuple  # the extended input's shape


def _max_geometry(node, x):
    kernel_, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    xe = extended(node, x, -np.inf)
    return xe, im2col.Geometry.of(xe.shape, kernel_, stride, pad)


def max_forward(node, inputs):
    xp = node.xp
    (x,) = inputs
    xe, geo = _max_geometry(node, x)
    xpad = im2col.padded(xp, xe, geo, -xp.inf, None)  # its own copy: backward reads it
    out = xp.empty((x.shape[0], x.shape[1], geo.oh, geo.ow), dtype=x.dtype)

    def work(lo, hi):
        for cs in channel_blocks(x.shape[1], (hi - lo) * geo.oh * geo.ow):
            out[lo:hi, cs] = _window_reduce(xp, xpad[lo:hi, cs], geo, xp.maximum)
    over_batch(xp, x.shape[0], xpad.size, work)
    return out, MaxSaved(x.shape[2:], geo, xpad, out)


def max_backward(node, saved: MaxSaved, dout, need_dx):
    """Each window's gradient goes to its first maximum in tap order (PyTorch's tie rule): the
    taps in order take what is left of the window's gradient where they equal the maximum, and
    leave zero behind (rem - rem*1 is exactly 0), so later equal taps get nothing. Strided pools
    work on the input split by row and column phase (i mod s, j mod s): every tap's view of its
    phase is contiguous along rows, where numpy's loops over a stride-2 view ran 8-10x slower
    than over contiguous memory."""
    if not need_dx:
        return [None]
    xp, geo = node.xp, saved.geo
    kh, kw = geo.kernel
    n, c = dout.shape[:2]
    xpad, out = saved.xpad, saved.out
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
        for cs in channel_blocks(c, (hi - lo) * geo.oh * geo.ow):
            route(xpad[lo:hi, cs], dx_pad[lo:hi, cs], dout[lo:hi, cs].copy(), out[lo:hi, cs])
    over_batch(xp, n, dx_pad.size, work)
    return [cropped(node, saved.in_hw, im2col.unpad(dx_pad, geo))]


def max_forward_native(node, inputs):
    """native.c: one pass each way, the winning position kept."""
    (x,) = inputs
    xe, geo = _max_geometry(node, x)
    out, arg = native.maxpool_forward(node.xp, xe, geo)
    return out, MaxTapSaved(x.shape[2:], geo, arg, xe.shape)


def max_backward_native(node, saved: MaxTapSaved, dout, need_dx):
    if not need_dx:
        return [None]
    return [cropped(node, saved.in_hw, native.maxpool_backward(node.xp, dout, saved.tap, saved.geo, saved.shape))]


def max_forward_gpu(node, inputs):
    """One kernel each way, the winning tap kept (gpu/layers.py)."""
    from ..gpu.layers import maxpool_forward
    (x,) = inputs
    xe, geo = _max_geometry(node, x)
    out, tap = maxpool_forward(xe, geo)
    return out, MaxTapSaved(x.shape[2:], geo, tap, xe.shape)


def max_backward_gpu(node, saved: MaxTapSaved, dout, need_dx):
    if not need_dx:
        return [None]
    from ..gpu.layers import maxpool_backward
    return [cropped(node, saved.in_hw, maxpool_backward(dout, saved.tap, saved.geo, saved.shape))]


MAX = (Variant("reference", always, max_forward, max_backward),
       Variant("gpu_layer", gpu_layers, max_forward_gpu, max_backward_gpu),
       Variant("native", _native, max_forward_native, max_backward_native))

POOL = kernel_by("mode", {"max": MAX, "avg": AVG})
