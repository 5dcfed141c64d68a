"""Whole-layer CUDA kernels for batch norm, LRN and max pooling on the GPU.

The array-module code in kernels.py serves both devices, but on the GPU every array operation
is a kernel launch and a pass over memory: batch norm there took eight passes forward and as
many backward, LRN a cumulative sum, a concatenation and two gathers, max pooling four
operations per window tap. These kernels do each layer in two or three passes:

- bn forward: sum, then squared deviations from the mean (two-pass variance, as on the CPU),
  then x-hat and the output with the fused activation in one elementwise pass;
  bn backward: the two sums the gradient needs, then dx, with the activation's gradient
  applied inside (the executor hands bn the gradient of its activated output);
- LRN: the channel window summed directly by each thread, forward and backward;
- max pooling: the output and the winning tap (first maximum in tap order, as on the CPU) in one
  pass; the backward gathers per input element, like col2im, with no atomics.
"""
from __future__ import annotations

import os
from functools import lru_cache

from .gpu_kernels import ACTIVATION_EXPR, GRADIENT_EXPR

# NETDSL_GPU_LAYER_KERNELS=0 runs these layers through the generic array code instead (kernels.py):
# for telling a fault in these kernels from one elsewhere, and for measuring what they gain.
ENABLED = os.environ.get("NETDSL_GPU_LAYER_KERNELS", "1") != "0"

# batch norm ----------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _sum(map_expr: str, operands: tuple[str, ...]):
    import cupy
    return cupy.ReductionKernel(", ".join(f"T {o}" for o in operands), "T total", map_expr, "a + b",
                                "total = a", "0", "netdsl_channel_sum")


def _grad_expr(activation: str | None) -> str:
    """The gradient reaching bn's output, from dy (after the activation) and y (its output)."""
    return f"({GRADIENT_EXPR[activation]})" if activation else "dy"


def elementwise_specs(activation: str | None = None) -> dict[str, tuple[str, str, str]]:
    """Every elementwise kernel here as (input params, output params, body), CuPy's notation:
    built into kernels below, and compiled on CPU-only machines by tests/test_cuda_source.py."""
    return {
        "netdsl_bn_centre": ("T x, T mean", "T centred", "centred = x - mean;"),
        f"netdsl_bn_{activation or 'id'}": (
            "T centred, T inv_std, T gamma, T beta", "T xhat, T out",
            f"xhat = centred * inv_std; T v = xhat * gamma + beta; out = {ACTIVATION_EXPR[activation]};"),
        f"netdsl_bn_grad_{activation or 'id'}": (
            "T dy, T y, T xhat, T sum_g, T sum_gx, T gamma, T inv_std, T inv_count", "T dx",
            f"T g = {_grad_expr(activation)}; "
            "dx = gamma * inv_std * (g - sum_g * inv_count - xhat * sum_gx * inv_count);"),
        # per channel, after the two reductions: 1/sigma, and the running averages in place
        "netdsl_bn_statistics": (
            "T mean, T spread, T inv_count, T momentum, T eps, T unbias", "T inv_std, T running_mean, T running_var",
            "T var = spread * inv_count; inv_std = (T)1 / sqrt(var + eps); "
            "running_mean = running_mean * ((T)1 - momentum) + momentum * mean; "
            "running_var = running_var * ((T)1 - momentum) + momentum * var * unbias;"),
        "netdsl_lrn_forward": (
            "raw T x, int32 C, int32 M, int32 before, int32 after, T k, T alpha_n, T beta", "T scale, T out",
            _LRN_FORWARD),
        "netdsl_lrn_backward": (
            "raw T dy, raw T out, raw T scale, raw T x, int32 C, int32 M, int32 before, int32 after, T beta, "
            "T two_alpha_beta_n", "T dx", _LRN_BACKWARD),
        "netdsl_maxpool_forward": (f"raw T x, {_POOL_GEOMETRY}", "T out, int32 tap", _POOL_FORWARD),
        "netdsl_maxpool_backward": (f"raw T dy, raw int32 tap, {_POOL_GEOMETRY}", "T dx", _POOL_BACKWARD),
    }


@lru_cache(maxsize=None)
def _kernel(name: str, activation: str | None = None):
    import cupy
    return cupy.ElementwiseKernel(*elementwise_specs(activation)[name], name)


def _empty_like(a):
    import cupy
    return cupy.empty_like(a)


def channel_view(a):
    """(N, C) or (N, C, ...) as (N, C, M): the per-channel reductions run over axes 0 and 2."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def centre(x3, mean):
    """x minus its channel's mean, (N, C, M)."""
    return _kernel("netdsl_bn_centre")(x3, mean.reshape(1, -1, 1))


# Per-channel sums of (N, C, M) arrays: along the contiguous last axis, then over the batch,
# where the maps are large (an H200 measured one reduction over axes 0 and 2 at once 4-5x
# slower on 56x56 and 112x112 maps, its time growing with the map size); on smaller maps over
# both axes at once, which measured 1.8x faster on 28x28 and 7x7 maps (benchmarks/NOTES.md).
LAST_AXIS_MIN_MAP = 56 * 56


def channel_sums(reduction, *arrays):
    """reduction(*arrays) summed per channel: (C,) from (N, C, M) operands."""
    if arrays[0].shape[2] >= LAST_AXIS_MIN_MAP:
        return reduction(*arrays, axis=2).sum(axis=0)
    return reduction(*arrays, axis=(0, 2))


def bn_statistics(x3, running_mean, running_var, momentum: float, eps: float):
    """(x - mean, 1/sigma) per channel of an (N, C, M) array, in two passes over x as on the CPU
    (the mean, then the squared deviations from it); the running averages updated in place."""
    count = x3.shape[0] * x3.shape[2]
    t = x3.dtype.type
    mean = channel_sums(_sum("x", ("x",)), x3) / count
    centred = centre(x3, mean)
    spread = channel_sums(_sum("x * x", ("x",)), centred)
    inv_std = _empty_like(mean)  # every output is passed: two are updated in place
    _kernel("netdsl_bn_statistics")(mean, spread, t(1 / count), t(momentum), t(eps), t(count / max(count - 1, 1)),
                                    inv_std, running_mean, running_var)
    return centred, inv_std


def bn_apply(centred, inv_std, gamma, beta, activation):
    """x-hat and activation(x-hat * gamma + beta) from the centred (N, C, M) input."""
    col = lambda v: v.reshape(1, -1, 1)  # noqa: E731
    return _kernel(f"netdsl_bn_{activation or 'id'}", activation)(centred, col(inv_std), col(gamma), col(beta))


def bn_backward(dy3, y3, xhat3, gamma, inv_std, training: bool, activation):
    """(dx, d gamma, d beta) from the gradient of bn's (activated) output, all (N, C, M); in
    evaluation mode the statistics are constants and dx is the gradient scaled."""
    y3 = dy3 if y3 is None else y3  # unused by the expressions without an activation
    g = _grad_expr(activation)
    dbeta = channel_sums(_sum(g, ("dy", "y")), dy3, y3)
    dgamma = channel_sums(_sum(f"{g} * xhat", ("dy", "y", "xhat")), dy3, y3, xhat3)
    inv_count = 1 / (dy3.shape[0] * dy3.shape[2]) if training else 0.0
    col = lambda v: v.reshape(1, -1, 1)  # noqa: E731
    dx = _kernel(f"netdsl_bn_grad_{activation or 'id'}", activation)(
        dy3, y3, xhat3, col(dbeta), col(dgamma), col(gamma), col(inv_std), dy3.dtype.type(inv_count))
    return dx, dgamma, dbeta


# LRN -------------------------------------------------------------------------------------------

_LRN_FORWARD = """
const int c = (i / M) % C;
T s = 0;
for (int d = -before; d <= after; ++d) {
    if (c + d < 0 || c + d >= C) continue;
    const T v = x[i + (ptrdiff_t)d * M];
    s += v * v;
}
scale = k + alpha_n * s;
out = x[i] * pow(scale, -beta);
"""

# d out_c / d x_j over the windows that hold j: channels c with c - before <= j <= c + after
_LRN_BACKWARD = """
const int c = (i / M) % C;
T s = 0;
for (int d = -after; d <= before; ++d) {
    if (c + d < 0 || c + d >= C) continue;
    const ptrdiff_t j = i + (ptrdiff_t)d * M;
    s += dy[j] * out[j] / scale[j];
}
dx = dy[i] * pow(scale[i], -beta) - two_alpha_beta_n * x[i] * s;
"""


def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """(scale, out): PyTorch's LRN, window of `size` channels (size//2 before, (size-1)//2 after)."""
    import cupy
    import numpy as np
    x = cupy.ascontiguousarray(x)
    t = x.dtype.type
    m = x.size // (x.shape[0] * x.shape[1])
    scale, out = cupy.empty_like(x), cupy.empty_like(x)
    _kernel("netdsl_lrn_forward")(x, np.int32(x.shape[1]), np.int32(m), np.int32(size // 2), np.int32((size - 1) // 2),
                      t(k), t(alpha / size), t(beta), scale, out)
    return scale, out


def lrn_backward(dy, x, scale, out, size: int, alpha: float, beta: float):
    import cupy
    import numpy as np
    dy = cupy.ascontiguousarray(dy)
    t = x.dtype.type
    m = x.size // (x.shape[0] * x.shape[1])
    dx = cupy.empty_like(x)
    _kernel("netdsl_lrn_backward")(dy, out, scale, x, np.int32(x.shape[1]), np.int32(m), np.int32(size // 2),
                      np.int32((size - 1) // 2), t(beta), t(2 * alpha * beta / size), dx)
    return dx


# max pooling -----------------------------------------------------------------------------------

_POOL_FORWARD = """
const int ow = i % OW, oh = (i / OW) % OH;
const ptrdiff_t plane = (i / ((ptrdiff_t)OW * OH)) * H * W;
T best = 0;
int arg = -1;
for (int kh = 0; kh < KH; ++kh) {
    const int h = oh * SH - PH + kh;
    if (h < 0 || h >= H) continue;
    for (int kw = 0; kw < KW; ++kw) {
        const int w = ow * SW - PW + kw;
        if (w < 0 || w >= W) continue;
        const T v = x[plane + h * W + w];
        if (arg < 0 || v > best) { best = v; arg = kh * KW + kw; }
    }
}
out = best;
tap = arg;
"""

_POOL_BACKWARD = """
const int w = i % W, h = (i / W) % H;
const ptrdiff_t plane = (i / ((ptrdiff_t)W * H)) * OH * OW;
T acc = 0;
for (int kh = 0; kh < KH; ++kh) {
    const int y = h + PH - kh;
    if (y < 0 || y % SH) continue;
    const int oh = y / SH;
    if (oh >= OH) continue;
    for (int kw = 0; kw < KW; ++kw) {
        const int z = w + PW - kw;
        if (z < 0 || z % SW) continue;
        const int ow = z / SW;
        if (ow >= OW) continue;
        const ptrdiff_t o = plane + oh * OW + ow;
        if (tap[o] == kh * KW + kw) acc += dy[o];
    }
}
dx = acc;
"""

_POOL_GEOMETRY = "int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, int32 PH, int32 PW, int32 OH, int32 OW"


def _pool_args(geo):
    import numpy as np
    return tuple(np.int32(v) for v in (geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow))


def maxpool_forward(x, geo):
    """(out, tap): each window's maximum and the index kh*KW + kw of its first maximum."""
    import cupy
    x = cupy.ascontiguousarray(x)
    out = cupy.empty((x.shape[0], x.shape[1], geo.oh, geo.ow), dtype=x.dtype)
    tap = cupy.empty(out.shape, dtype=cupy.int32)
    _kernel("netdsl_maxpool_forward")(x, *_pool_args(geo), out, tap)
    return out, tap


def maxpool_backward(dy, tap, geo, shape):
    import cupy
    dy = cupy.ascontiguousarray(dy)
    dx = cupy.empty(shape, dtype=dy.dtype)
    _kernel("netdsl_maxpool_backward")(dy, tap, *_pool_args(geo), dx)
    return dx
