/* The CPU's data-movement kernels as plain C loops, compiled on first use by netdsl/backend/native.py
 * with the machine's C compiler (-O3 -march=native) and called through ctypes, which lets go of
 * the GIL: the Python side splits the work over batch slices or channel blocks on the cores.
 * Each one does in one pass what numpy needs a pass per window tap or per short run for; the
 * numpy versions stay as the fallback where no compiler is found, and as the tests' reference.
 *
 * Layouts: NCHW inputs, `planes` = images x channels (each an H x W map); `T` is float or double
 * (one copy of each kernel per type, suffixed _f32 / _f64).
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    int h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} geometry;

/* The output columns ow in [lo, hi) whose input column ow*sw - pw + j lies inside the map. */
static void valid_columns(geometry g, int j, int* lo, int* hi) {
    *lo = 0;
    while (*lo < g.ow && *lo * g.sw - g.pw + j < 0) ++*lo;
    *hi = g.ow;
    while (*hi > *lo && (*hi - 1) * g.sw - g.pw + j >= g.w) --*hi;
}

#define DEFINE_KERNELS(T, SUFFIX)                                                                 \
/* Max pooling: the maximum of each window and the input position (in its map) it came from, the \
 * first maximum in tap order (PyTorch's rule), -1 for a window wholly in the padding. Tap by tap \
 * over a whole output row, so the inner loop has no branches. */                                \
void maxpool_forward_##SUFFIX(const T* restrict x, T* restrict out, int* restrict arg,           \
                              ptrdiff_t planes, geometry g) {                                     \
    for (ptrdiff_t p = 0; p < planes; ++p) {                                                      \
        const T* restrict xp = x + p * g.h * g.w;                                                 \
        for (int oh = 0; oh < g.oh; ++oh) {                                                       \
            T* restrict best = out + (p * g.oh + oh) * g.ow;                                      \
            int* restrict at = arg + (p * g.oh + oh) * g.ow;                                      \
            for (int ow = 0; ow < g.ow; ++ow) {                                                   \
                best[ow] = -INFINITY;                                                             \
                at[ow] = -1;                                                                      \
            }                                                                                     \
            for (int i = 0; i < g.kh; ++i) {                                                      \
                const int h = oh * g.sh - g.ph + i;                                               \
                if (h < 0 || h >= g.h) continue;                                                  \
                for (int j = 0; j < g.kw; ++j) {                                                  \
                    int lo, hi;                                                                   \
                    valid_columns(g, j, &lo, &hi);                                                \
                    const int base = h * g.w - g.pw + j; /* + ow * sw: the tap's position */     \
                    for (int ow = lo; ow < hi; ++ow) {                                            \
                        const T v = xp[base + ow * g.sw], b = best[ow];                           \
                        /* strictly greater: the first maximum stays; NaN wins, as in numpy */   \
                        const int take = (at[ow] < 0) | (v > b) | ((v != v) & (b == b));          \
                        best[ow] = take ? v : b;                                                  \
                        at[ow] = take ? base + ow * g.sw : at[ow];                                \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
}                                                                                                 \
                                                                                                  \
/* Its backward: each window's gradient onto the position its maximum came from. */             \
void maxpool_backward_##SUFFIX(const T* dout, const int* arg, T* dx, ptrdiff_t planes,           \
                               geometry g) {                                                      \
    const ptrdiff_t size = (ptrdiff_t)g.h * g.w, outs = (ptrdiff_t)g.oh * g.ow;                   \
    for (ptrdiff_t p = 0; p < planes; ++p) {                                                      \
        T* dp = dx + p * size;                                                                    \
        const T* gp = dout + p * outs;                                                            \
        const int* ap = arg + p * outs;                                                           \
        memset(dp, 0, sizeof(T) * size);                                                          \
        for (ptrdiff_t i = 0; i < outs; ++i)                                                      \
            if (ap[i] >= 0) dp[ap[i]] += gp[i];                                                   \
    }                                                                                             \
}                                                                                                 \
                                                                                                  \
/* Batch-major im2col: columns (C*kh*kw, n*OH*OW) for channels [c0, c1) of an (n, C, H, W)      \
 * input, zeros where a window reaches into the padding. */                                      \
void im2col_bm_##SUFFIX(const T* restrict x, T* restrict cols, int n, int c, int c0, int c1,      \
                        geometry g) {                                                             \
    const ptrdiff_t outs = (ptrdiff_t)g.oh * g.ow, row = (ptrdiff_t)n * outs;                     \
    for (int ch = c0; ch < c1; ++ch)                                                              \
        for (int i = 0; i < g.kh; ++i)                                                            \
            for (int j = 0; j < g.kw; ++j) {                                                      \
                T* restrict dst = cols + ((ptrdiff_t)(ch * g.kh + i) * g.kw + j) * row;           \
                int lo, hi;                                                                       \
                valid_columns(g, j, &lo, &hi);                                                    \
                for (int b = 0; b < n; ++b) {                                                     \
                    const T* restrict src = x + ((ptrdiff_t)b * c + ch) * g.h * g.w;              \
                    for (int oh = 0; oh < g.oh; ++oh) {                                           \
                        const int h = oh * g.sh - g.ph + i;                                       \
                        T* restrict dr = dst + (ptrdiff_t)b * outs + (ptrdiff_t)oh * g.ow;        \
                        if (h < 0 || h >= g.h) {                                                  \
                            memset(dr, 0, sizeof(T) * g.ow);                                      \
                            continue;                                                             \
                        }                                                                         \
                        const T* restrict sr = src + (ptrdiff_t)h * g.w - g.pw + j; /* + ow*sw */ \
                        for (int ow = 0; ow < lo; ++ow) dr[ow] = 0;                               \
                        if (g.sw == 1)                                                            \
                            memcpy(dr + lo, sr + lo, sizeof(T) * (hi - lo));                      \
                        else                                                                      \
                            for (int ow = lo; ow < hi; ++ow) dr[ow] = sr[(ptrdiff_t)ow * g.sw];   \
                        for (int ow = hi; ow < g.ow; ++ow) dr[ow] = 0;                            \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
}                                                                                                 \
                                                                                                  \
/* Its adjoint: the (n, C, H, W) input gradient, channels [c0, c1), from (C*kh*kw, n*OH*OW)     \
 * columns, summed in place (no atomics: each channel's sums are its own). */                   \
void col2im_bm_##SUFFIX(const T* restrict cols, T* restrict dx, int n, int c, int c0, int c1,     \
                        geometry g) {                                                             \
    const ptrdiff_t outs = (ptrdiff_t)g.oh * g.ow, row = (ptrdiff_t)n * outs;                     \
    for (int ch = c0; ch < c1; ++ch) {                                                            \
        for (int b = 0; b < n; ++b)                                                               \
            memset(dx + ((ptrdiff_t)b * c + ch) * g.h * g.w, 0, sizeof(T) * g.h * g.w);           \
        for (int i = 0; i < g.kh; ++i)                                                            \
            for (int j = 0; j < g.kw; ++j) {                                                      \
                const T* restrict src = cols + ((ptrdiff_t)(ch * g.kh + i) * g.kw + j) * row;     \
                int lo, hi;                                                                       \
                valid_columns(g, j, &lo, &hi);                                                    \
                for (int b = 0; b < n; ++b) {                                                     \
                    T* restrict dst = dx + ((ptrdiff_t)b * c + ch) * g.h * g.w;                   \
                    for (int oh = 0; oh < g.oh; ++oh) {                                           \
                        const int h = oh * g.sh - g.ph + i;                                       \
                        if (h < 0 || h >= g.h) continue;                                          \
                        T* restrict dr = dst + (ptrdiff_t)h * g.w - g.pw + j; /* + ow * sw */     \
                        const T* restrict sr = src + (ptrdiff_t)b * outs + (ptrdiff_t)oh * g.ow;  \
                        if (g.sw == 1)                                                            \
                            for (int ow = lo; ow < hi; ++ow) dr[ow] += sr[ow];                    \
                        else                                                                      \
                            for (int ow = lo; ow < hi; ++ow) dr[(ptrdiff_t)ow * g.sw] += sr[ow];  \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
    }                                                                                             \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
