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
                        if (g.sw == 1) /* a loop, not memcpy: the runs are short (10-56) */      \
                            for (int ow = lo; ow < hi; ++ow) dr[ow] = sr[ow];                     \
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

/* Sums in double over 8 lanes, so that the loops vectorise (one running sum would be a chain   \
 * of dependent additions, 4x slower here, and reordering it is what -ffast-math would allow). */ \
#define LANES 8
#define LANE_SUM(acc, m, term)                                                                    \
    do {                                                                                          \
        double lane_[LANES] = {0};                                                                \
        ptrdiff_t k = 0;                                                                          \
        for (; k + LANES <= (m); k += LANES)                                                      \
            for (int l = 0; l < LANES; ++l) { const ptrdiff_t i = k + l; lane_[l] += (term); }    \
        for (; k < (m); ++k) { const ptrdiff_t i = k; lane_[0] += (term); }                       \
        for (int l = 0; l < LANES; ++l) (acc) += lane_[l];                                        \
    } while (0)

#define DEFINE_BATCH_NORM(T, SUFFIX)                                                              \
/* Batch norm forward for channels [c0, c1) of (n, C, m) data, a channel at a time while it is   \
 * in cache: in training the mean and then the squared deviations from it (two passes, sums in   \
 * double), else the given statistics; then x-hat and gamma * x-hat + beta, ReLU'd if `relu`. */ \
void bn_forward_##SUFFIX(const T* restrict x, T* restrict xhat, T* restrict out, T* restrict mean, \
                         T* restrict var, T* restrict inv_std, const T* restrict gamma,          \
                         const T* restrict beta, int n, int c, ptrdiff_t m, int c0, int c1,       \
                         int training, double eps, int relu) {                                    \
    const double count = (double)n * m;                                                           \
    for (int ch = c0; ch < c1; ++ch) {                                                            \
        if (training) {                                                                           \
            double s = 0, q = 0;                                                                  \
            for (int b = 0; b < n; ++b) {                                                         \
                const T* restrict xr = x + ((ptrdiff_t)b * c + ch) * m;                           \
                LANE_SUM(s, m, (double)xr[i]);                                                    \
            }                                                                                     \
            const double mu = s / count;                                                          \
            for (int b = 0; b < n; ++b) {                                                         \
                const T* restrict xr = x + ((ptrdiff_t)b * c + ch) * m;                           \
                LANE_SUM(q, m, ((double)xr[i] - mu) * ((double)xr[i] - mu));                      \
            }                                                                                     \
            mean[ch] = (T)mu;                                                                     \
            var[ch] = (T)(q / count);                                                             \
        }                                                                                         \
        const T mu = mean[ch], inv = (T)(1.0 / sqrt((double)var[ch] + eps));                      \
        const T ga = gamma[ch], be = beta[ch];                                                    \
        inv_std[ch] = inv;                                                                        \
        for (int b = 0; b < n; ++b) {                                                             \
            const ptrdiff_t at = ((ptrdiff_t)b * c + ch) * m;                                     \
            const T* restrict xr = x + at;                                                        \
            T* restrict hr = xhat + at;                                                           \
            T* restrict orow = out + at;                                                          \
            for (ptrdiff_t k = 0; k < m; ++k) {                                                   \
                const T h = (xr[k] - mu) * inv, o = h * ga + be;                                  \
                hr[k] = h;                                                                        \
                orow[k] = relu && o < 0 ? (T)0 : o;                                               \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
}                                                                                                 \
                                                                                                  \
/* Its backward: g = dout, through the ReLU's gradient if `relu` (y: the ReLU's output); the     \
 * sums of g and g * x-hat per channel (the bias and weight gradients), and, if dx is given,      \
 * dx = gamma/sigma * (g - mean(g) - x-hat * mean(g * x-hat)), or gamma/sigma * g out of training. */ \
void bn_backward_##SUFFIX(const T* restrict dout, const T* restrict y, const T* restrict xhat,     \
                          T* restrict dx, T* restrict sum_g, T* restrict sum_gx,                  \
                          const T* restrict gamma, const T* restrict inv_std, int n, int c,       \
                          ptrdiff_t m, int c0, int c1, int training, int relu) {                  \
    const double count = (double)n * m;                                                           \
    for (int ch = c0; ch < c1; ++ch) {                                                            \
        double sg = 0, sgx = 0;                                                                   \
        for (int b = 0; b < n; ++b) {                                                             \
            const ptrdiff_t at = ((ptrdiff_t)b * c + ch) * m;                                     \
            const T* restrict dr = dout + at;                                                     \
            const T* restrict hr = xhat + at;                                                     \
            if (relu) {                                                                           \
                const T* restrict yr = y + at;                                                    \
                /* the ReLU's gradient as dy * (y > 0), without branches (as numpy's multiply) */ \
                LANE_SUM(sg, m, (double)(dr[i] * (T)(yr[i] > 0)));                                \
                LANE_SUM(sgx, m, (double)(dr[i] * (T)(yr[i] > 0)) * hr[i]);                       \
            } else {                                                                              \
                LANE_SUM(sg, m, (double)dr[i]);                                                   \
                LANE_SUM(sgx, m, (double)dr[i] * hr[i]);                                          \
            }                                                                                     \
        }                                                                                         \
        sum_g[ch] = (T)sg;                                                                        \
        sum_gx[ch] = (T)sgx;                                                                      \
        if (!dx) continue;                                                                        \
        const T scale = gamma[ch] * inv_std[ch];                                                  \
        const T mg = training ? (T)(sg / count) : 0, mgx = training ? (T)(sgx / count) : 0;       \
        for (int b = 0; b < n; ++b) {                                                             \
            const ptrdiff_t at = ((ptrdiff_t)b * c + ch) * m;                                     \
            const T* restrict dr = dout + at;                                                     \
            const T* restrict hr = xhat + at;                                                     \
            T* restrict out = dx + at;                                                            \
            if (relu) { /* two loops, not a test inside one: y is only there with the ReLU */    \
                const T* restrict yr = y + at;                                                    \
                for (ptrdiff_t k = 0; k < m; ++k)                                                 \
                    out[k] = scale * (dr[k] * (T)(yr[k] > 0) - mg - hr[k] * mgx);                 \
            } else {                                                                              \
                for (ptrdiff_t k = 0; k < m; ++k) out[k] = scale * (dr[k] - mg - hr[k] * mgx);    \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
DEFINE_BATCH_NORM(float, f32)
DEFINE_BATCH_NORM(double, f64)
