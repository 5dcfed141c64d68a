"""CUDA kernels for the CuPy back end: im2col / col2im as RawKernels (one thread per output
element, no atomics: col2im gathers) in two layouts, per image (n, C*kh*kw, OH*OW) and batch-major
(C*kh*kw, n*OH*OW), and elementwise chains as ElementwiseKernels generated per chain (a producer's
expression with its activation applied in the same pass), so no work runs as a host loop on the
GPU. Compiled on first use, cached by CuPy."""
from __future__ import annotations

from functools import lru_cache

# The geometry every kernel takes, and a grid-stride loop over `total` elements. Index
# arithmetic runs in I: int where every index fits (64-bit division is many instructions on a
# GPU; the H200 measured im2col at a tenth of its memory rate with it), long long beyond.
_COMMON = r"""
#define GEOMETRY long long total, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, \
                 int OH, int OW
#define GEOMETRY_ARGS total, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW
#define FOR_EACH_ELEMENT(i) \
    for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < (I)total; \
         i += (I)blockDim.x * (I)gridDim.x)
"""

# Two column layouts, chosen at compile time by BM: per image (n, c, kh, kw, oh, ow) and
# batch-major (c, kh, kw, n, oh, ow). N is the batch size.
_TEMPLATES = r"""
template <bool BM, typename I>
__device__ I column_index(I n, I N, int c, int kh, int kw, int oh, int ow,
                          int C, int KH, int KW, int OH, int OW) {
    return BM ? ((((c * KH + kh) * KW + kw) * N + n) * OH + oh) * OW + ow
              : ((((n * C + c) * KH + kh) * KW + kw) * OH + oh) * OW + ow;
}

template <typename T, typename I, bool BM>
__device__ void im2col_impl(const T* x, T* cols, GEOMETRY) {
    const I N = total / ((I)C * KH * KW * OH * OW);
    FOR_EACH_ELEMENT(i) {  // one thread per column entry: the inverse of column_index
        int ow = i % OW; I t = i / OW;
        int oh = t % OH; t /= OH;
        I n; int c, kh, kw;
        if (BM) { n = t % N; t /= N; kw = t % KW; t /= KW; kh = t % KH; c = t / KH; }
        else { kw = t % KW; t /= KW; kh = t % KH; t /= KH; c = t % C; n = t / C; }
        int h = oh * SH - PH + kh, w = ow * SW - PW + kw;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : (T)0;
    }
}

template <typename T, typename I, bool BM>
__device__ void col2im_impl(const T* cols, T* x, GEOMETRY) {
    const I N = total / ((I)C * H * W);
    FOR_EACH_ELEMENT(i) {  // one thread per input element (n, c, h, w): gathers, no atomics
        int w = i % W; I t = i / W;
        int h = t % H; t /= H;
        int c = t % C; I n = t / C;
        T acc = 0;
        for (int kh = 0; kh < KH; ++kh) {
            int y = h + PH - kh;
            if (y < 0 || y % SH) continue;
            int oh = y / SH;
            if (oh >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int z = w + PW - kw;
                if (z < 0 || z % SW) continue;
                int ow = z / SW;
                if (ow >= OW) continue;
                acc += cols[column_index<BM, I>(n, N, c, kh, kw, oh, ow, C, KH, KW, OH, OW)];
            }
        }
        x[i] = acc;
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
_MAX_BLOCKS = 65535 * 4
# 32-bit indices while every index, and the grid-stride loop's last step past the end, fit
_INT32_LIMIT = 2**31 - 1 - _MAX_BLOCKS * _THREADS


@lru_cache(maxsize=None)
def _module():
    import cupy
    return cupy.RawModule(code=_SOURCE)


def _launch(name: str, dtype, total: int, args, largest: int) -> None:
    """`largest`: the element count of the bigger of the two arrays, which bounds every index."""
    import numpy as np
    suffix = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]
    index = "i32" if largest <= _INT32_LIMIT else "i64"
    kernel = _module().get_function(f"{name}_{suffix}_{index}")
    blocks = min(_MAX_BLOCKS, (total + _THREADS - 1) // _THREADS)
    kernel((max(blocks, 1),), (_THREADS,), args)


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
    _launch("im2col_bm" if batch_major else "im2col", x.dtype, cols.size,
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
    _launch("col2im_bm" if batch_major else "col2im", cols.dtype, x.size,
            (cols, x, np.int64(x.size), *_geo_args(geo)), max(x.size, cols.size))
    return x


# Activations as CUDA expressions of `v`, and their gradients as expressions of the output `y`
# and the incoming gradient `dy`: the same rules as kernels.ACTIVATIONS, for generated kernels.
ACTIVATION_EXPR = {
    None: "v",
    "relu": "(v > (T)0 ? v : (T)0)",
    "tanh": "tanh(v)",
    "sigmoid": "((T)1 / ((T)1 + exp(-v)))",
}
GRADIENT_EXPR = {
    "relu": "(y > (T)0 ? dy : (T)0)",
    "tanh": "dy * ((T)1 - y * y)",
    "sigmoid": "dy * y * ((T)1 - y)",
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
