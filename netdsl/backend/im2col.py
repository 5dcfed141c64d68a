"""Windows over a padded NCHW input, and the im2col / col2im pair built on them.

numpy and CuPy both support strided views, so one implementation serves both; the GPU module
(netdsl.backend.gpu.cuda) replaces im2col/col2im with CUDA kernels when CuPy is in use, and
on the CPU the batch-major pair runs as compiled loops where a C compiler is at hand (native.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from .cpu import native
from .device import on_gpu
from .cpu.threads import contiguous, over_batch


@dataclass(frozen=True)
class Geometry:
    n: int
    c: int
    h: int
    w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    oh: int
    ow: int

    @classmethod
    def of(cls, shape, kernel, stride, pad) -> "Geometry":
        n, c, h, w = shape
        oh = (h + 2 * pad[0] - kernel[0]) // stride[0] + 1
        ow = (w + 2 * pad[1] - kernel[1]) // stride[1] + 1
        return cls(n, c, h, w, tuple(kernel), tuple(stride), tuple(pad), oh, ow)

    @property
    def hp(self) -> int:
        return self.h + 2 * self.pad[0]

    @property
    def wp(self) -> int:
        return self.w + 2 * self.pad[1]

    @property
    def whole_window(self) -> bool:
        """One window covering the whole unpadded input (LeNet's c5: 5x5 on 5x5): the columns
        are then the input itself, (C*H*W) per image."""
        return (self.oh, self.ow) == (1, 1) and self.pad == (0, 0) and self.kernel == (self.h, self.w)

    @property
    def pointwise(self) -> bool:
        """A 1x1 stride-1 unpadded conv: its per-image columns are its input as it lies."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.pad == (0, 0)

    @property
    def col_elems_per_image(self) -> int:
        return self.c * self.kernel[0] * self.kernel[1] * self.oh * self.ow

    def rows(self, i: int) -> slice:
        """Padded-input rows that kernel row i touches, one per output row."""
        return slice(i, i + self.stride[0] * (self.oh - 1) + 1, self.stride[0])

    def cols(self, j: int) -> slice:
        return slice(j, j + self.stride[1] * (self.ow - 1) + 1, self.stride[1])


def padded(xp, x, geo: Geometry, fill=0, workspace=None):
    ph, pw = geo.pad
    if ph == 0 and pw == 0:
        return x
    shape = (x.shape[0], x.shape[1], geo.hp, geo.wp)
    buf = workspace.get(("pad", shape, x.dtype.str, fill), lambda: xp.full(shape, fill, dtype=x.dtype)) \
        if workspace is not None else xp.full(shape, fill, dtype=x.dtype)
    buf[:, :, ph:ph + geo.h, pw:pw + geo.w] = x  # the border keeps its fill across reuses
    return buf


def unpad(x, geo: Geometry):
    ph, pw = geo.pad
    return x[:, :, ph:ph + geo.h, pw:pw + geo.w] if (ph or pw) else x


def windows(xp, xpad, geo: Geometry):
    """A (N, C, kh, kw, OH, OW) view: element [n, c, i, j, y, x] = xpad[n, c, y*sh + i, x*sw + j]."""
    sn, sc, sh_, sw_ = xpad.strides
    kh, kw = geo.kernel
    sh, sw = geo.stride
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(xpad.shape[0], xpad.shape[1], kh, kw, geo.oh, geo.ow),
        strides=(sn, sc, sh_, sw_, sh_ * sh, sw_ * sw))


def im2col(xp, x, geo: Geometry, workspace=None, key=None):
    """(n, C*kh*kw, OH*OW) columns: one GEMM per image then computes the convolution. With a
    workspace and a key, the columns live in a buffer allocated once per shape and reused by
    every later step (the key says whose: columns are kept for the backward pass)."""
    n = x.shape[0]
    if geo.pointwise:
        return x.reshape(n, geo.c, geo.oh * geo.ow)  # a 1x1 conv is already a GEMM: no copy
    if on_gpu(xp):
        from .gpu.cuda import im2col as im2col_gpu
        return im2col_gpu(x, geo)
    xpad = padded(xp, x, geo, 0, workspace)
    shape = (n, geo.c * geo.kernel[0] * geo.kernel[1], geo.oh * geo.ow)
    make = lambda: xp.empty(shape, dtype=x.dtype)  # noqa: E731
    cols = workspace.get(("cols", key, shape, x.dtype.str), make) if workspace is not None and key else make()
    six = cols.reshape(n, geo.c, geo.kernel[0], geo.kernel[1], geo.oh, geo.ow)

    def work(lo, hi):  # copyto from the strided view: 3x faster than ascontiguousarray here
        xp.copyto(six[lo:hi], windows(xp, xpad[lo:hi], geo))
    over_batch(xp, n, cols.size, work)
    return cols


def col2im(xp, cols, geo: Geometry):
    """The adjoint of im2col: scatter-add columns back onto the (unpadded) input."""
    n = cols.shape[0]
    kh, kw = geo.kernel
    if geo.pointwise:
        return cols.reshape(n, geo.c, geo.h, geo.w)
    if on_gpu(xp):
        from .gpu.cuda import col2im as col2im_gpu
        return col2im_gpu(cols, geo)
    c6 = cols.reshape(n, geo.c, kh, kw, geo.oh, geo.ow)
    dx = xp.zeros((n, geo.c, geo.hp, geo.wp), dtype=cols.dtype)

    def work(lo, hi):
        for i in range(kh):
            for j in range(kw):
                dx[lo:hi, :, geo.rows(i), geo.cols(j)] += c6[lo:hi, :, i, j]
    over_batch(xp, n, cols.size, work)  # split by what is read: kh*kw times what is written
    return unpad(dx, geo)


def im2col_batch_major(xp, x, geo: Geometry, workspace=None, key=None):
    """(C*kh*kw, n*OH*OW) columns: the whole batch as one GEMM's right-hand side. Split over
    channel blocks on the CPU's cores (every block's rows are its own)."""
    n = x.shape[0]
    if geo.whole_window:
        return x.reshape(n, -1).T  # a view: BLAS reads it transposed, no copy
    if on_gpu(xp):
        from .gpu.cuda import im2col as im2col_gpu
        return im2col_gpu(x, geo, batch_major=True)
    shape = (geo.c * geo.kernel[0] * geo.kernel[1], n * geo.oh * geo.ow)
    make = lambda: xp.empty(shape, dtype=x.dtype)  # noqa: E731
    cols = workspace.get(("colsT", key, shape, x.dtype.str), make) if workspace is not None and key else make()
    if native.available(xp, x.dtype):
        return native.im2col_batch_major(xp, x, geo, cols)
    six = cols.reshape(geo.c, geo.kernel[0], geo.kernel[1], n, geo.oh, geo.ow)
    win = windows(xp, padded(xp, x, geo, 0, workspace), geo).transpose(1, 2, 3, 0, 4, 5)

    def work(lo, hi):
        xp.copyto(six[lo:hi], win[lo:hi])
    over_batch(xp, geo.c, cols.size, work)
    return cols


def col2im_batch_major(xp, cols, geo: Geometry, n: int):
    """The adjoint of im2col_batch_major. The sums build up in the columns' own (C, n, H, W)
    order, where every tap's rows are contiguous on both sides (over channel blocks on the
    cores), and one copy turns them to (n, C, H, W) at the end."""
    if geo.whole_window:
        return cols.T.reshape(n, geo.c, geo.h, geo.w)
    if on_gpu(xp):
        from .gpu.cuda import col2im as col2im_gpu
        return col2im_gpu(cols, geo, n)
    if native.available(xp, cols.dtype):
        return native.col2im_batch_major(xp, cols, geo, n)
    kh, kw = geo.kernel
    c6 = cols.reshape(geo.c, kh, kw, n, geo.oh, geo.ow)
    dxt = xp.zeros((geo.c, n, geo.hp, geo.wp), dtype=cols.dtype)

    def work(lo, hi):
        for i in range(kh):
            for j in range(kw):
                dxt[lo:hi, :, geo.rows(i), geo.cols(j)] += c6[lo:hi, i, j]
    over_batch(xp, geo.c, cols.size, work)
    ph, pw = geo.pad
    return contiguous(xp, dxt[:, :, ph:ph + geo.h, pw:pw + geo.w].transpose(1, 0, 2, 3))


# Stride-1 input gradients on a wide grid -------------------------------------------------------
# With the output gradient laid out on an OH x Wp grid (the padded width, zeros past OW), tap
# (i, j)'s column row lands on the padded input, flattened, as one contiguous run starting at
# i*Wp + j: col2im becomes kh*kw slice additions of OH*Wp values instead of strided additions of
# OW-long runs. The zero columns cost a wider GEMM, (Wp - OW)/OW more: it pays where that is small
# (maps of 56 and more) or the runs are so short that numpy's per-run cost rules (LeNet's 10x10)
# (benchmarks/NOTES.md, change 18).
WIDE_MAX_EXTRA = 0.05
WIDE_SHORT_RUN = 10


def wide_col2im_applies(geo: Geometry) -> bool:
    if geo.stride != (1, 1) or geo.kernel == (1, 1) or geo.whole_window:
        return False
    return geo.ow <= WIDE_SHORT_RUN or geo.wp - geo.ow <= WIDE_MAX_EXTRA * geo.ow


def widen(xp, dout_t, geo: Geometry, n: int):
    """(O, n*OH*OW) -> (O, n*OH*Wp), zeros in the columns past OW."""
    o = dout_t.shape[0]
    wide = xp.zeros((o, n, geo.oh, geo.wp), dtype=dout_t.dtype)
    src = dout_t.reshape(o, n, geo.oh, geo.ow)

    def work(lo, hi):
        wide[lo:hi, :, :, :geo.ow] = src[lo:hi]
    over_batch(xp, o, wide.size, work)
    return wide.reshape(o, -1)


def col2im_wide(xp, dcols, geo: Geometry, n: int):
    """The input gradient from (C*kh*kw, n*OH*Wp) columns of a widened output gradient."""
    kh, kw = geo.kernel
    span, plane = geo.oh * geo.wp, geo.hp * geo.wp
    d5 = dcols.reshape(geo.c, kh, kw, n, span)
    dxt = xp.zeros((geo.c, n, plane + kw - 1), dtype=dcols.dtype)  # the last runs overhang by kw-1

    def work(lo, hi):
        for i in range(kh):
            for j in range(kw):
                start = i * geo.wp + j
                dxt[lo:hi, :, start:start + span] += d5[lo:hi, i, j]
    over_batch(xp, geo.c, dcols.size, work)
    ph, pw = geo.pad
    grid = dxt[:, :, :plane].reshape(geo.c, n, geo.hp, geo.wp)
    return contiguous(xp, grid[:, :, ph:ph + geo.h, pw:pw + geo.w].transpose(1, 0, 2, 3))
