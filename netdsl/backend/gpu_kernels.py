"""CUDA kernels for the CuPy back end: im2col / col2im as RawKernels (one thread per output
element, no atomics: col2im gathers), and the elementwise backward chains as ElementwiseKernels,
so no work runs as a host loop on the GPU. Compiled on first use, cached by CuPy."""
from __future__ import annotations

from functools import lru_cache

# The geometry every kernel takes, and a grid-stride loop over `total` elements.
_COMMON = r"""
#define GEOMETRY long long total, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, \
                 int OH, int OW
#define GEOMETRY_ARGS total, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW
#define FOR_EACH_ELEMENT(i) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; \
         i += (long long)blockDim.x * gridDim.x)
"""

_TEMPLATES = r"""
template <typename T>
__device__ void im2col_impl(const T* x, T* cols, GEOMETRY) {
    FOR_EACH_ELEMENT(i) {  // one thread per column entry (n, c, kh, kw, oh, ow)
        int ow = i % OW; long long t = i / OW;
        int oh = t % OH; t /= OH;
        int kw = t % KW; t /= KW;
        int kh = t % KH; t /= KH;
        int c = t % C; long long n = t / C;
        int h = oh * SH - PH + kh, w = ow * SW - PW + kw;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : (T)0;
    }
}

template <typename T>
__device__ void col2im_impl(const T* cols, T* x, GEOMETRY) {
    FOR_EACH_ELEMENT(i) {  // one thread per input element (n, c, h, w): gathers, no atomics
        int w = i % W; long long t = i / W;
        int h = t % H; t /= H;
        int c = t % C; long long n = t / C;
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
                acc += cols[((((n * C + c) * KH + kh) * KW + kw) * OH + oh) * OW + ow];
            }
        }
        x[i] = acc;
    }
}
"""

# One extern "C" entry point per kernel and dtype, e.g. im2col_f32(const float* src, float* dst, ...)
_ENTRY = 'extern "C" __global__ void {name}_{tag}(const {t}* src, {t}* dst, GEOMETRY) {{ {name}_impl<{t}>(src, dst, GEOMETRY_ARGS); }}'
_SOURCE = _COMMON + _TEMPLATES + "\n".join(
    _ENTRY.format(name=name, tag=tag, t=ctype)
    for name in ("im2col", "col2im") for tag, ctype in (("f32", "float"), ("f64", "double")))

_THREADS = 256


@lru_cache(maxsize=None)
def _module():
    import cupy
    return cupy.RawModule(code=_SOURCE)


def _launch(name: str, dtype, total: int, args) -> None:
    import numpy as np
    suffix = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]
    kernel = _module().get_function(f"{name}_{suffix}")
    blocks = min(65535 * 4, (total + _THREADS - 1) // _THREADS)
    kernel((max(blocks, 1),), (_THREADS,), args)


def _geo_args(geo):
    import numpy as np
    return tuple(np.int32(v) for v in (geo.c, geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow))


def im2col(x, geo):
    import cupy
    import numpy as np
    x = cupy.ascontiguousarray(x)
    n = x.shape[0]
    cols = cupy.empty((n, geo.c * geo.kernel[0] * geo.kernel[1], geo.oh * geo.ow), dtype=x.dtype)
    total = cols.size
    _launch("im2col", x.dtype, total, (x, cols, np.int64(total), *_geo_args(geo)))
    return cols


def col2im(cols, geo):
    import cupy
    import numpy as np
    cols = cupy.ascontiguousarray(cols)
    n = cols.shape[0]
    x = cupy.empty((n, geo.c, geo.h, geo.w), dtype=cols.dtype)
    total = x.size
    _launch("col2im", cols.dtype, total, (cols, x, np.int64(total), *_geo_args(geo)))
    return x


@lru_cache(maxsize=None)
def elementwise():
    """The backward chains of the activations as single fused kernels."""
    import cupy
    return {
        "relu_grad": cupy.ElementwiseKernel("T dy, T y", "T dx", "dx = y > (T)0 ? dy : (T)0", "netdsl_relu_grad"),
        "tanh_grad": cupy.ElementwiseKernel("T dy, T y", "T dx", "dx = dy * ((T)1 - y * y)", "netdsl_tanh_grad"),
        "sigmoid_grad": cupy.ElementwiseKernel("T dy, T y", "T dx", "dx = dy * y * ((T)1 - y)",
                                               "netdsl_sigmoid_grad"),
        "relu": cupy.ElementwiseKernel("T x", "T y", "y = x > (T)0 ? x : (T)0", "netdsl_relu"),
    }
