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

/* Winograd F(2x2, 3x3)'s four transforms (backend/winograd.py has the maths): tiles of 4x4      \
 * inputs at stride 2, 16 arrays (a, b) laid out batch-major, (C, n, th*tw) each, so that one GEMM \
 * per array covers the whole batch; images [lo, hi). */                                          \
#define DEFINE_WINOGRAD(T, SUFFIX)                                                                \
/* V = B^T d B for every tile of the padded input (n, C, 2th+2, 2tw+2): the row combinations    \
 * along whole rows first (contiguous), then the column ones tile by tile. */                    \
void wino_input_##SUFFIX(const T* restrict xpad, T* restrict v, int n, int c, int th, int tw,     \
                         int lo, int hi) {                                                        \
    const int wp = 2 * tw + 2, tiles = th * tw;                                                   \
    const ptrdiff_t plane = (ptrdiff_t)(2 * th + 2) * wp, stride = (ptrdiff_t)n * c * tiles;      \
    T t[4][wp];                                                                                   \
    for (int b = lo; b < hi; ++b)                                                                 \
        for (int ch = 0; ch < c; ++ch) {                                                          \
            const T* restrict xp = xpad + ((ptrdiff_t)b * c + ch) * plane;                        \
            T* restrict vp = v + ((ptrdiff_t)ch * n + b) * tiles;                                 \
            for (int ty = 0; ty < th; ++ty) {                                                     \
                const T *r0 = xp + (ptrdiff_t)(2 * ty) * wp, *r1 = r0 + wp, *r2 = r1 + wp, *r3 = r2 + wp; \
                for (int k = 0; k < wp; ++k) {                                                    \
                    t[0][k] = r0[k] - r2[k];                                                      \
                    t[1][k] = r1[k] + r2[k];                                                      \
                    t[2][k] = r2[k] - r1[k];                                                      \
                    t[3][k] = r1[k] - r3[k];                                                      \
                }                                                                                 \
                for (int a = 0; a < 4; ++a) {                                                     \
                    T* restrict o0 = vp + (ptrdiff_t)(4 * a) * stride + ty * tw;                  \
                    T* restrict o1 = o0 + stride, * restrict o2 = o1 + stride, * restrict o3 = o2 + stride; \
                    const T* ta = t[a];                                                           \
                    for (int tx = 0; tx < tw; ++tx) {                                             \
                        const T d0 = ta[2 * tx], d1 = ta[2 * tx + 1], d2 = ta[2 * tx + 2], d3 = ta[2 * tx + 3]; \
                        o0[tx] = d0 - d2;                                                         \
                        o1[tx] = d1 + d2;                                                         \
                        o2[tx] = d2 - d1;                                                         \
                        o3[tx] = d1 - d3;                                                         \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
}                                                                                                 \
                                                                                                  \
/* Y = A^T M A, each tile's 2x2 outputs into (n, O, h, w), those past an odd edge dropped: a    \
 * row of tiles at a time, every step along contiguous rows of the 16 arrays. */                 \
void wino_output_##SUFFIX(const T* restrict m, T* restrict out, int n, int o, int th, int tw,      \
                          int h, int w, int lo, int hi) {                                         \
    const int tiles = th * tw, full = w / 2; /* tiles whose two columns are both inside */       \
    const ptrdiff_t stride = (ptrdiff_t)n * o * tiles;                                            \
    T s[2][4][tw];                                                                                \
    for (int b = lo; b < hi; ++b)                                                                 \
        for (int ch = 0; ch < o; ++ch) {                                                          \
            const T* restrict mp = m + ((ptrdiff_t)ch * n + b) * tiles;                           \
            T* restrict op = out + ((ptrdiff_t)b * o + ch) * h * w;                               \
            for (int ty = 0; ty < th; ++ty) {                                                     \
                const T* restrict mr = mp + (ptrdiff_t)ty * tw;                                   \
                for (int j = 0; j < 4; ++j) {                                                     \
                    const T *m0 = mr + j * stride, *m1 = mr + (4 + j) * stride;                   \
                    const T *m2 = mr + (8 + j) * stride, *m3 = mr + (12 + j) * stride;            \
                    for (int tx = 0; tx < tw; ++tx) {                                             \
                        s[0][j][tx] = m0[tx] + m1[tx] + m2[tx];                                   \
                        s[1][j][tx] = m1[tx] - m2[tx] - m3[tx];                                   \
                    }                                                                             \
                }                                                                                 \
                for (int i = 0; i < 2 && 2 * ty + i < h; ++i) {                                   \
                    T* restrict row = op + (ptrdiff_t)(2 * ty + i) * w;                           \
                    const T *s0 = s[i][0], *s1 = s[i][1], *s2 = s[i][2], *s3 = s[i][3];           \
                    for (int tx = 0; tx < full; ++tx) {                                           \
                        row[2 * tx] = s0[tx] + s1[tx] + s2[tx];                                   \
                        row[2 * tx + 1] = s1[tx] - s2[tx] - s3[tx];                               \
                    }                                                                             \
                    if (full < tw) row[2 * full] = s0[full] + s1[full] + s2[full];                \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
}                                                                                                 \
                                                                                                  \
/* dM = A dY A^T for every tile, from the (n, O, h, w) output gradient (zero past the edges):   \
 * a row of tiles at a time from two zero-padded copies of its output rows. */                   \
void wino_grad_tiles_##SUFFIX(const T* restrict dy, T* restrict dm, int n, int o, int th, int tw, \
                              int h, int w, int lo, int hi) {                                     \
    const int tiles = th * tw;                                                                    \
    const ptrdiff_t stride = (ptrdiff_t)n * o * tiles;                                            \
    T g[2][2 * tw], r[4][2][tw];                                                                  \
    for (int b = lo; b < hi; ++b)                                                                 \
        for (int ch = 0; ch < o; ++ch) {                                                          \
            const T* restrict gp = dy + ((ptrdiff_t)b * o + ch) * h * w;                          \
            T* restrict dp = dm + ((ptrdiff_t)ch * n + b) * tiles;                                \
            for (int ty = 0; ty < th; ++ty) {                                                     \
                for (int i = 0; i < 2; ++i)                                                       \
                    for (int k = 0; k < 2 * tw; ++k)                                              \
                        g[i][k] = (2 * ty + i < h && k < w) ? gp[(ptrdiff_t)(2 * ty + i) * w + k] : (T)0; \
                for (int tx = 0; tx < tw; ++tx)                                                   \
                    for (int j = 0; j < 2; ++j) { /* the rows of A dY: y0, y0 + y1, y0 - y1, -y1 */ \
                        const T y0 = g[0][2 * tx + j], y1 = g[1][2 * tx + j];                     \
                        r[0][j][tx] = y0;                                                         \
                        r[1][j][tx] = y0 + y1;                                                    \
                        r[2][j][tx] = y0 - y1;                                                    \
                        r[3][j][tx] = -y1;                                                        \
                    }                                                                             \
                for (int a = 0; a < 4; ++a) {                                                     \
                    T* restrict d0 = dp + (4 * a) * stride + (ptrdiff_t)ty * tw;                  \
                    T* restrict d1 = d0 + stride, * restrict d2 = d1 + stride, * restrict d3 = d2 + stride; \
                    const T *r0 = r[a][0], *r1 = r[a][1];                                         \
                    for (int tx = 0; tx < tw; ++tx) {                                             \
                        d0[tx] = r0[tx];                                                          \
                        d1[tx] = r0[tx] + r1[tx];                                                 \
                        d2[tx] = r0[tx] - r1[tx];                                                 \
                        d3[tx] = -r1[tx];                                                         \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
}                                                                                                 \
                                                                                                  \
/* dX += B dV B^T, each tile's 4x4 patch added onto the padded input gradient: a row of tiles at \
 * a time, each of the patch's 16 places as one pass over the row (tiles overlap by two columns \
 * and two rows, so the passes add in turn; a plane is one thread's). */                         \
void wino_input_adjoint_##SUFFIX(const T* restrict dv, T* restrict dxpad, int n, int c, int th,   \
                                 int tw, int lo, int hi) {                                        \
    const int wp = 2 * tw + 2, tiles = th * tw;                                                   \
    const ptrdiff_t plane = (ptrdiff_t)(2 * th + 2) * wp, stride = (ptrdiff_t)n * c * tiles;      \
    T q[4][4][tw];                                                                                \
    for (int b = lo; b < hi; ++b)                                                                 \
        for (int ch = 0; ch < c; ++ch) {                                                          \
            const T* restrict vp = dv + ((ptrdiff_t)ch * n + b) * tiles;                          \
            T* restrict xp = dxpad + ((ptrdiff_t)b * c + ch) * plane;                             \
            for (int ty = 0; ty < th; ++ty) {                                                     \
                const T* restrict vr = vp + (ptrdiff_t)ty * tw;                                   \
                for (int a = 0; a < 4; ++a) { /* along b: B's rows v0, v1-v2+v3, -v0+v1+v2, -v3 */ \
                    const T *v0 = vr + (4 * a) * stride, *v1 = v0 + stride, *v2 = v1 + stride, *v3 = v2 + stride; \
                    for (int tx = 0; tx < tw; ++tx) {                                             \
                        q[a][0][tx] = v0[tx];                                                     \
                        q[a][1][tx] = v1[tx] - v2[tx] + v3[tx];                                   \
                        q[a][2][tx] = -v0[tx] + v1[tx] + v2[tx];                                  \
                        q[a][3][tx] = -v3[tx];                                                    \
                    }                                                                             \
                }                                                                                 \
                for (int bp = 0; bp < 4; ++bp) { /* then along a, onto rows 2ty .. 2ty+3 */       \
                    const T *q0 = q[0][bp], *q1 = q[1][bp], *q2 = q[2][bp], *q3 = q[3][bp];       \
                    T* restrict x0 = xp + (ptrdiff_t)(2 * ty) * wp + bp;                          \
                    T* restrict x1 = x0 + wp, * restrict x2 = x1 + wp, * restrict x3 = x2 + wp;   \
                    for (int tx = 0; tx < tw; ++tx) {                                             \
                        x0[2 * tx] += q0[tx];                                                     \
                        x1[2 * tx] += q1[tx] - q2[tx] + q3[tx];                                   \
                        x2[2 * tx] += -q0[tx] + q1[tx] + q2[tx];                                  \
                        x3[2 * tx] += -q3[tx];                                                    \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
DEFINE_BATCH_NORM(float, f32)
DEFINE_BATCH_NORM(double, f64)
DEFINE_WINOGRAD(float, f32)
DEFINE_WINOGRAD(double, f64)
