"""Whole-layer CUDA kernels for batch norm, LRN and max pooling on the GPU.

The array-module code in backend/kernels/ serves both devices, but on the GPU every array operation
is a kernel launch and a pass over memory: batch norm there took eight passes forward and as
many backward, LRN a cumulative sum, a concatenation and two gathers, max pooling four
operations per window tap. These kernels do each layer in two or three passes:

- bn forward: the per-channel sums of x and x*x in one pass (double precision), then x-hat and
  the output with the fused activation in one elementwise pass; bn backward: the two sums the
  gradient needs in one pass, then dx, with the activation's gradient applied inside (the
  executor hands bn the gradient of its activated output);
- LRN: the channel window summed directly by each thread, forward and backward;
- max pooling: the output and the winning tap (first maximum in tap order, as on the CPU) in one
  pass; the backward gathers per input element, like col2im, with no atomics.
"""
from __future__ import annotations

import os
from functools import lru_cache

from .cuda import ACTIVATION_EXPR, GRADIENT_EXPR

# NETDSL_GPU_LAYER_KERNELS=0 runs these layers through their reference variants (backend/kernels/):
# for telling a fault in these kernels from one elsewhere, and for measuring what they gain.
ENABLED = os.environ.get("NETDSL_GPU_LAYER_KERNELS", "1") != "0"

# batch norm ----------------------------------------------------------------------------------
# Per-channel sums in one pass over memory: a RawKernel over a (channel, slice of the batch) grid
# whose blocks each sum two quantities of their slice in double precision, then one small kernel
# that adds the slices up per channel. Forward it sums x and x*x (the variance as E[x^2] - mean^2,
# exact enough in double for float32 data), backward g and g * x-hat, g the gradient reaching bn's
# output through its activation. They replace two CuPy reductions each way, and the forward's
# centring pass: bn then reads x twice and writes x-hat and the output once, instead of reading
# it four times and writing three arrays.

_SUM_THREADS = 256
_TARGET_BLOCKS = 512  # blocks per launch: enough to fill an H100/H200 (132 SMs) several times

_CHANNEL_SUMS = r"""
// partial[c][s] = (sum of p, sum of q) over images [s*N/S, (s+1)*N/S) of channel c, for operands
// laid out (N, C, M) with strides (sn, sc, 1); `flat`: maps shorter than a block are walked as one
// run over (n, m), else map by map.
extern "C" __global__ void NAME(OPERANDS, double* partial, int N, int C, int M, long long sn, long long sc,
                                int S, int flat) {
    __shared__ double sa[THREADS], sb[THREADS];
    const int c = blockIdx.x, s = blockIdx.y, tid = threadIdx.x;
    const int n0 = (int)((long long)s * N / S), n1 = (int)((long long)(s + 1) * N / S);
    double a = 0, b = 0;
    if (flat) {
        for (int j = tid; j < (n1 - n0) * M; j += blockDim.x) {
            const int q_ = j / M;
            const long long i = (long long)(n0 + q_) * sn + (long long)c * sc + (j - q_ * M);
            TERM
        }
    } else {
        for (int n = n0; n < n1; ++n) {
            for (int m = tid; m < M; m += blockDim.x) {
                const long long i = (long long)n * sn + (long long)c * sc + m;
                TERM
            }
        }
    }
    sa[tid] = a; sb[tid] = b;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (tid < k) { sa[tid] += sa[tid + k]; sb[tid] += sb[tid + k]; }
        __syncthreads();
    }
    if (tid == 0) {
        partial[2 * ((long long)c * S + s)] = sa[0];
        partial[2 * ((long long)c * S + s) + 1] = sb[0];
    }
}
"""


def _grad_expr(activation: str | None) -> str:
    """The gradient reaching bn's output, from dy (after the activation) and y (its output)."""
    return f"({GRADIENT_EXPR[activation]})" if activation else "dy"


def channel_sums_sources(ctype: str, activation: str | None = None) -> dict[str, str]:
    """The two one-pass sum kernels as CUDA source, for element type `ctype`: built into RawKernels
    below, and run on the host by tests/test_cuda_source.py."""
    statistics_term = "{ const double v = (double)x[i]; a += v; b += v * v; }"
    gradient_term = (f"{{ const T dy = dy_[i], y = y_[i]; const double g = (double)({_grad_expr(activation)}); "
                     "a += g; b += g * (double)xhat[i]; }")
    kernels = {
        f"netdsl_bn_sums_{ctype}": ("const T* x", statistics_term),
        f"netdsl_bn_grad_sums_{activation or 'id'}_{ctype}": ("const T* dy_, const T* y_, const T* xhat", gradient_term),
    }
    return {name: f"typedef {ctype} T;\n" + _CHANNEL_SUMS.replace("NAME", name).replace("OPERANDS", operands)
            .replace("TERM", term).replace("THREADS", str(_SUM_THREADS)) for name, (operands, term) in kernels.items()}


@lru_cache(maxsize=None)
def _sums_kernel(kind: str, ctype: str, activation: str | None = None):
    import cupy
    name = f"netdsl_bn_sums_{ctype}" if kind == "statistics" else f"netdsl_bn_grad_sums_{activation or 'id'}_{ctype}"
    return cupy.RawKernel(channel_sums_sources(ctype, activation)[name], name)


def _channel_partials(kernel, operands, n: int, c: int, m: int, strides: tuple[int, int]):
    """(C, S, 2) float64 partial sums of `kernel` over (N, C, M) operands with the given element
    strides for n and c."""
    import cupy
    import numpy as np
    slices = min(n, max(1, _TARGET_BLOCKS // c))
    partial = cupy.empty((c, slices, 2), dtype=cupy.float64)
    kernel((c, slices), (_SUM_THREADS,), (*operands, partial, np.int32(n), np.int32(c), np.int32(m),
                                          np.int64(strides[0]), np.int64(strides[1]), np.int32(slices),
                                          np.int32(m < _SUM_THREADS)))
    return partial


def _ctype(dtype) -> str:
    import numpy as np
    return {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]


def elementwise_specs(activation: str | None = None) -> dict[str, tuple[str, str, str]]:
    """Every elementwise kernel here as (input params, output params, body), CuPy's notation:
    built into kernels below, and compiled on CPU-only machines by tests/test_cuda_source.py."""
    return {
        f"netdsl_bn_{activation or 'id'}": (
            "T x, T mean, T inv_std, T gamma, T beta", "T xhat, T out",
            f"xhat = (x - mean) * inv_std; T v = xhat * gamma + beta; out = {ACTIVATION_EXPR[activation]};"),
        f"netdsl_bn_grad_{activation or 'id'}": (
            "T dy, T y, T xhat, T sum_g, T sum_gx, T gamma, T inv_std, T inv_count", "T dx",
            f"T g = {_grad_expr(activation)}; "
            "dx = gamma * inv_std * (g - sum_g * inv_count - xhat * sum_gx * inv_count);"),
        # per channel, from the (C, S, 2) partials of x and x*x: the mean, 1/sigma, and the running
        # averages in place
        "netdsl_bn_statistics": (
            "raw float64 partial, int32 S, float64 inv_count, T momentum, T eps, T unbias",
            "T mean, T inv_std, T running_mean, T running_var",
            "double a = 0, b = 0; "
            "for (int s = 0; s < S; ++s) { a += partial[2 * (i * S + s)]; b += partial[2 * (i * S + s) + 1]; } "
            "const double mu = a * inv_count, var64 = b * inv_count - mu * mu; "
            "const T var = (T)(var64 > 0 ? var64 : 0); mean = (T)mu; inv_std = (T)1 / sqrt(var + eps); "
            "running_mean = running_mean * ((T)1 - momentum) + momentum * mean; "
            "running_var = running_var * ((T)1 - momentum) + momentum * var * unbias;"),
        # per channel, from the (C, S, 2) partials of g and g * x-hat: their sums
        "netdsl_bn_sum_partials": (
            "raw float64 partial, int32 S", "T sum_a, T sum_b",
            "double a = 0, b = 0; "
            "for (int s = 0; s < S; ++s) { a += partial[2 * (i * S + s)]; b += partial[2 * (i * S + s) + 1]; } "
            "sum_a = (T)a; sum_b = (T)b;"),
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


def channel_view(a):
    """(N, C) or (N, C, ...) as (N, C, M)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def bn_statistics(x3, running_mean, running_var, momentum: float, eps: float):
    """(mean, 1/sigma) per channel of an (N, C, M) array, read once; the running averages
    updated in place. x3 may be a strided view (a conv's transposed output) with unit-stride maps."""
    import cupy
    if x3.strides[2] != x3.itemsize:
        x3 = cupy.ascontiguousarray(x3)
    n, c, m = x3.shape
    partial = _channel_partials(_sums_kernel("statistics", _ctype(x3.dtype)), (x3,), n, c, m,
                                (x3.strides[0] // x3.itemsize, x3.strides[1] // x3.itemsize))
    count = n * m
    t = x3.dtype.type
    mean, inv_std = cupy.empty(c, dtype=x3.dtype), cupy.empty(c, dtype=x3.dtype)  # two more are updated in place
    _kernel("netdsl_bn_statistics")(partial, partial.shape[1], 1.0 / count, t(momentum), t(eps),
                                    t(count / max(count - 1, 1)), mean, inv_std, running_mean, running_var)
    return mean, inv_std


def bn_apply(x3, mean, inv_std, gamma, beta, activation):
    """x-hat and activation(x-hat * gamma + beta) of an (N, C, M) input, in one pass."""
    col = lambda v: v.reshape(1, -1, 1)  # noqa: E731
    return _kernel(f"netdsl_bn_{activation or 'id'}", activation)(x3, col(mean), col(inv_std), col(gamma), col(beta))


def bn_backward(dy3, y3, xhat3, gamma, inv_std, training: bool, activation):
    """(dx, d gamma, d beta) from the gradient of bn's (activated) output, all (N, C, M); in
    evaluation mode the statistics are constants and dx is the gradient scaled."""
    import cupy
    dy3 = cupy.ascontiguousarray(dy3)
    y3 = dy3 if y3 is None else cupy.ascontiguousarray(y3)  # unused by the expressions without an activation
    xhat3 = cupy.ascontiguousarray(xhat3)
    n, c, m = dy3.shape
    kernel = _sums_kernel("gradient", _ctype(dy3.dtype), activation)
    partial = _channel_partials(kernel, (dy3, y3, xhat3), n, c, m, (c * m, m))
    dbeta, dgamma = _kernel("netdsl_bn_sum_partials")(partial, partial.shape[1], cupy.empty(c, dy3.dtype),
                                                      cupy.empty(c, dy3.dtype))
    inv_count = 1 / (n * m) if training else 0.0
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
