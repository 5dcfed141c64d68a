"""CUDA kernels for the CuPy back end: im2col / col2im as RawKernels (a block per plane of
columns or input, no atomics: col2im gathers) in two layouts, per image (n, C*kh*kw, OH*OW) and batch-major
(C*kh*kw, n*OH*OW), and elementwise chains as ElementwiseKernels generated per chain (a producer's
expression with its activation applied in the same pass), so no work runs as a host loop on the
GPU. Compiled on first use, cached by CuPy."""
from __future__ import annotations

from functools import lru_cache

# The geometry every kernel takes. Index arithmetic runs in I: int where every index fits
# (64-bit division is many instructions on a GPU; the H200 measured im2col at a tenth of its
# memory rate with it), long long beyond.
_COMMON = r"""
#define GEOMETRY long long total, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, \
                 int OH, int OW
#define GEOMETRY_ARGS total, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW
// Work in planes: each (blockIdx.x, threadIdx.y) takes one plane (one OH*OW row of the columns,
// one H*W map of the input) at a time, and its threads the positions in it. The plane's own
// indices are worked out once per plane rather than once per element: integer division by a
// value known only at run time is the dearest thing these kernels do.
#define FOR_EACH_PLANE(r, planes) \
    for (I r = (I)blockIdx.x * blockDim.y + threadIdx.y; r < (planes); r += (I)gridDim.x * blockDim.y)
#define FOR_EACH_POSITION(p, size) for (int p = threadIdx.x; p < (size); p += blockDim.x)
"""

# Two column layouts, chosen at compile time by BM: per image (n, c, kh, kw, oh, ow) and
# batch-major (c, kh, kw, n, oh, ow). N is the batch size. Either way column row r, i.e.
# (n, c, kh, kw) or (c, kh, kw, n), is one contiguous OH*OW plane.
_TEMPLATES = r"""
template <bool BM, typename I>
__device__ I column_row(I n, I N, int c, int kh, int kw, int C, int KH, int KW) {
    return BM ? (((I)c * KH + kh) * KW + kw) * N + n : (((n * C + c) * KH + kh) * KW + kw);
}

template <typename T, typename I, bool BM>
__device__ void im2col_impl(const T* x, T* cols, GEOMETRY) {
    const int plane = OH * OW;
    const I rows = total / plane, N = rows / ((I)C * KH * KW);
    FOR_EACH_PLANE(r, rows) {  // the inverse of column_row, once per row
        I t = r, n; int c, kh, kw;
        if (BM) { n = t % N; t /= N; kw = t % KW; t /= KW; kh = t % KH; c = t / KH; }
        else { kw = t % KW; t /= KW; kh = t % KH; t /= KH; c = t % C; n = t / C; }
        const T* src = x + (n * C + c) * (I)H * W;
        T* dst = cols + r * plane;
        FOR_EACH_POSITION(p, plane) {
            int oh = p / OW, ow = p - oh * OW;
            int h = oh * SH - PH + kh, w = ow * SW - PW + kw;
            dst[p] = (h >= 0 && h < H && w >= 0 && w < W) ? src[h * W + w] : (T)0;
        }
    }
}

template <typename T, typename I, bool BM>
__device__ void col2im_impl(const T* cols, T* x, GEOMETRY) {
    const int size = H * W, plane = OH * OW;
    const I maps = total / size, N = maps / C;
    FOR_EACH_PLANE(m, maps) {  // one input map (n, c): gathers its sums, no atomics
        const I n = m / C; const int c = m - n * C;
        FOR_EACH_POSITION(p, size) {
            int h = p / W, w = p - h * W;
            // the outputs whose window covers (h, w): oh*SH + kh = h + PH with 0 <= kh < KH
            int y = h + PH, z = w + PW;
            int oh0 = y >= KH ? (y - KH) / SH + 1 : 0, oh1 = y / SH < OH ? y / SH : OH - 1;
            int ow0 = z >= KW ? (z - KW) / SW + 1 : 0, ow1 = z / SW < OW ? z / SW : OW - 1;
            T acc = 0;
            for (int oh = oh0; oh <= oh1; ++oh) {
                int kh = y - oh * SH;
                for (int ow = ow0; ow <= ow1; ++ow) {
                    int kw = z - ow * SW;
                    acc += cols[column_row<BM, I>(n, N, c, kh, kw, C, KH, KW) * plane + oh * OW + ow];
                }
            }
            x[m * size + p] = acc;
        }
    }
}
"""

# One extern "C" entry point per kernel, layout, dtype and index type, e.g.
# im2col_bm_f32_i32(const float* src, float* dst, ...)
_KERNELS = {"im2col": ("im2col", "false"), "im2col_bm": ("im2col", "true"),
            "col2im": ("col2im", "false"), "col2im_bm": ("col2im", "true")}
_ENTRY = ('extern "C" __global__ void {name}_{tag}_{itag}(const {t}* src, {t}* dst, GEOMETRY) '
          '{{ {impl}_impl<{t}, {i}, {bm}>(src, dst, GEOMETRY_ARGS); }}')
_INDEX_TYPES = (("i32", "int"), ("i64", "long long"))


def entry_points(dtypes=(("f32", "float"), ("f64", "double")), qualifier: str = "__global__ ") -> str:
    """The extern "C" wrappers around the templates (the tests build host versions, qualifier "")."""
    return "\n".join(_ENTRY.replace("__global__ ", qualifier).format(
        name=name, impl=impl, bm=bm, tag=tag, t=ctype, itag=itag, i=itype)
        for name, (impl, bm) in _KERNELS.items() for tag, ctype in dtypes for itag, itype in _INDEX_TYPES)


_SOURCE = _COMMON + _TEMPLATES + entry_points()

_THREADS = 256
_MAX_BLOCKS = 1 << 20
# 32-bit indices wherever every index fits
_INT32_LIMIT = 2**31 - 1


@lru_cache(maxsize=None)
def _module():
    import cupy
    return cupy.RawModule(code=_SOURCE)


def _launch(name: str, dtype, planes: int, plane: int, args, largest: int) -> None:
    """`planes` planes of `plane` positions each; `largest`: the element count of the bigger of
    the two arrays, which bounds every index. A block's threads share one plane where it is long
    (coalesced runs), or take several short planes side by side (7x7 maps: 64 threads each)."""
    import numpy as np
    suffix = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]
    index = "i32" if largest + _THREADS * _MAX_BLOCKS <= _INT32_LIMIT else "i64"
    kernel = _module().get_function(f"{name}_{suffix}_{index}")
    across = min(_THREADS, -(-plane // 32) * 32)
    per_block = _THREADS // across
    blocks = min(_MAX_BLOCKS, -(-planes // per_block))
    kernel((max(blocks, 1),), (across, per_block), args)


def _geo_args(geo):
    import numpy as np
    return tuple(np.int32(v) for v in (geo.c, geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow))


def im2col(x, geo, batch_major: bool = False):
    """Columns (n, C*kh*kw, OH*OW), or with batch_major (C*kh*kw, n*OH*OW)."""
    import cupy
    import numpy as np
    x = cupy.ascontiguousarray(x)
    n, rows = x.shape[0], geo.c * geo.kernel[0] * geo.kernel[1]
    shape = (rows, n * geo.oh * geo.ow) if batch_major else (n, rows, geo.oh * geo.ow)
    cols = cupy.empty(shape, dtype=x.dtype)
    _launch("im2col_bm" if batch_major else "im2col", x.dtype, cols.size // (geo.oh * geo.ow), geo.oh * geo.ow,
            (x, cols, np.int64(cols.size), *_geo_args(geo)), max(x.size, cols.size))
    return cols


def col2im(cols, geo, n: int | None = None):
    """The adjoint of im2col; n (the batch) is given for batch-major columns."""
    import cupy
    import numpy as np
    cols = cupy.ascontiguousarray(cols)
    batch_major = n is not None
    n = n if batch_major else cols.shape[0]
    x = cupy.empty((n, geo.c, geo.h, geo.w), dtype=cols.dtype)
    _launch("col2im_bm" if batch_major else "col2im", cols.dtype, n * geo.c, geo.h * geo.w,
            (cols, x, np.int64(x.size), *_geo_args(geo)), max(x.size, cols.size))
    return x


# The epilogue activations (netdsl.ops.EPILOGUES) as CUDA expressions of `v`, and their
# gradients as expressions of the output `y` and the incoming gradient `dy`: the same rules as
# backend/kernels/activation_rules.py, for generated kernels (tests/test_epilogue_table.py).
ACTIVATION_EXPR = {
    None: "v",
    "relu": "(v > (T)0 ? v : (T)0)",
    "tanh": "tanh(v)",
    "sigmoid": "((T)1 / ((T)1 + exp(-v)))",
    "relu6": "(v > (T)0 ? (v < (T)6 ? v : (T)6) : (T)0)",
    # relu6(v + 3)/6 = clip(v/6 + 1/2, 0, 1); ternaries, not fmin/fmax, whose float overloads
    # the generated kernels need not have
    "hsigmoid": "(v > (T)-3 ? (v < (T)3 ? v * ((T)1 / (T)6) + (T)0.5 : (T)1) : (T)0)",
}
GRADIENT_EXPR = {
    "relu": "(y > (T)0 ? dy : (T)0)",
    "tanh": "dy * ((T)1 - y * y)",
    "sigmoid": "dy * y * ((T)1 - y)",
    "relu6": "(y > (T)0 && y < (T)6 ? dy : (T)0)",
    "hsigmoid": "(y > (T)0 && y < (T)1 ? dy * ((T)1 / (T)6) : (T)0)",
}


@lru_cache(maxsize=None)
def chain(operands: tuple[str, ...], expr: str, activation: str | None):
    """One ElementwiseKernel computing activation(expr) over the named operands, e.g.
    chain(("x", "g", "b"), "x * g + b", "relu") for batch norm's affine step and its ReLU: the
    producer and its epilogue in one pass over memory."""
    import cupy
    body = f"T v = {expr}; out = {ACTIVATION_EXPR[activation]};"
    name = "netdsl_" + "_".join([*operands, activation or "id"])
    return cupy.ElementwiseKernel(", ".join(f"T {o}" for o in operands), "T out", body, name)


@lru_cache(maxsize=None)
def activation_grad(activation: str):
    """dy -> dx through an activation, from its output y, as one kernel."""
    import cupy
    return cupy.ElementwiseKernel("T dy, T y", "T dx", f"dx = {GRADIENT_EXPR[activation]};",
                                  f"netdsl_{activation}_grad")


@lru_cache(maxsize=None)
def sgd_update():
    """PyTorch's SGD step for one tensor, in place and in one pass: v = m*v + g + decay*w; w -= lr*v."""
    import cupy
    return cupy.ElementwiseKernel("T g, T momentum, T decay, T lr", "T w, T v",
                                  "v = momentum * v + g + decay * w; w -= lr * v;", "netdsl_sgd_update")
