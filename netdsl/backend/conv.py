"""2-D convolution, forward and backward, by whichever path suits the layer:

- winograd:   3x3 stride-1 pad-1 layers with work enough, and 5x5 pad-2 ones with native.c's
              transforms (backend/winograd.py);
- direct:     thin stride-1 layers (LeNet's, the folded stems) on the CPU (backend/cpu/direct.py);
- s2d:        strided first layers (AlexNet's 11x11 /4, ResNet's 7x7 /2 on 3 channels): the input
              is folded space-to-depth, making a stride-1 conv on s*s*C channels whose im2col
              copies whole rows instead of gathering every s-th value;
- batch-major: the whole batch as one GEMM each way, wherever its columns fit the budget; on
              the CPU, stride-1 input gradients summed on a wide grid (im2col.col2im_wide);
- per-image:  im2col columns and one GEMM per image, the batch split when the columns would
              exceed the memory budget; grouped convs;
- blocked:    inference only (no backward), float32 on the CPU: a direct convolution over blocks
              of output channels in registers (backend/cpu/blocked.py), as onnxruntime's MLAS;
- winograd_fused: inference only, float32 on the CPU: F(2x2, 3x3) with its transforms and GEMMs
              in one pass over cache-sized units of tiles (backend/cpu/winograd_fused.py).

On the GPU (CuPy) only the last two run, with CUDA im2col/col2im kernels (gpu/cuda.py):
batch-major wherever the columns fit its budget, per-image (batched GEMMs) otherwise.

Every path returns (out, saved) forward and (dx, dw, db) backward; `Conv` carries what they
share (the array module, the workspace, the budget).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import im2col, tuner, winograd
from .cpu import blocked, direct, native, winograd_fused
from .device import on_gpu
from .im2col import Geometry
from .cpu.threads import contiguous

# The weight gradient runs image by image (no transposed copy of the columns) only where each
# image's GEMM is big and its inner dimension, the output map, is long; else one GEMM.
BIG_GEMM = 1 << 22  # multiply-adds per image
LONG_MAP = 512  # output positions per image
S2D_MAX_CHANNELS = 64  # s*s*C after folding: first layers only
# On the GPU memory is plentiful and launches are dear: columns up to this size run the whole
# batch as one GEMM (batch-major), larger ones in per-image batched GEMMs over chunks this size.
GPU_COL_BUDGET = 2 << 30
# 1x1 stride-1 convs over maps at least this large run on the GPU as per-image batched GEMMs
# over the input as it lies (no transposed copies); on smaller maps the copy costs less than
# the batched GEMMs lose (benchmarks/NOTES.md, GPU change 25)
GPU_POINTWISE_MIN_MAP = 56 * 56
# weight gradients up to SMALL_RESULT values are computed transposed, and up to TINY_RESULT over an
# inner axis longer than 2 * PIECE, summed over pieces of that axis (see weight_grad)
SMALL_RESULT = 1 << 16
TINY_RESULT = 1024
PIECE = 4096
# The paths whose backward applies a fused activation's gradient in a copy of dout it makes
# anyway: batch-major in its transposed copy, direct on its wide grid.
EPILOGUE_PATHS = frozenset({"batch_major", "direct"})
# the Winograd variants by name, and their output tiles
WINOGRAD_TILES = {"winograd_f2": 2, "winograd_f4": 4, "winograd_f2_5x5": 2}
WINOGRAD_NAMES = {(2, 3): "winograd_f2", (4, 3): "winograd_f4", (2, 5): "winograd_f2_5x5"}
# Keep or recompute (issue 28, memory). What a forward expands from its input for the backward
# pass -- im2col's columns (kh*kw times the input), Winograd's transformed input (4x for F(2x2,
# 3x3)) and filters, the direct kernels' padded planes -- is either kept for the whole step or dropped and made again in backward.
# Making it again is one memory pass, about COPY_MACS multiply-adds' time an element, against the
# 3*O multiply-adds an element that the layer's three GEMMs (forward, input and weight gradients)
# do over it; keeping it costs its bytes until backward reaches the layer. A layer recomputes
# where that pass is at most RECOMPUTE_MAX_SHARE of its GEMMs' work (O >= 27: every layer but
# LeNet's and a few thin stems); what is under KEEP_BYTES is kept (it moves no peak).
COPY_MACS = 4
RECOMPUTE_MAX_SHARE = 0.05
KEEP_BYTES = 1 << 20


@dataclass
class Conv:
    xp: Any
    workspace: Any
    col_budget: int
    key: str  # the node's name: its column buffers are its own
    keep_cols: bool = True
    use_winograd: bool = True
    precision: str = "default"  # the error budget the algorithm must keep (tuner.PRECISIONS)
    training: bool = False  # a backward pass follows: the tuner times both ways
    need_dx: bool = True  # that backward wants the input's gradient (not a first layer's)
    # weight transforms kept between calls, where the caller's weights stay as they are (the
    # inference path's); None: made each call
    prepared: dict | None = None

    @property
    def cpu(self) -> bool:
        return not on_gpu(self.xp)

    @property
    def budget(self) -> int:
        return self.col_budget if self.cpu else max(self.col_budget, GPU_COL_BUDGET)

    def keeps(self, expanded_bytes: int, out_channels: int) -> bool:
        """Whether the backward pass gets the forward's expanded input kept (True) or made again
        (False): see COPY_MACS. Only a CPU training step recomputes; inference keeps nothing anyway."""
        if not (self.cpu and self.training) or expanded_bytes < KEEP_BYTES:
            return True
        return COPY_MACS / (3 * out_channels) > RECOMPUTE_MAX_SHARE

    def chunks(self, n: int, bytes_per_image: int) -> list[tuple[int, int]]:
        per = max(1, self.budget // max(bytes_per_image, 1))
        return [(lo, min(n, lo + per)) for lo in range(0, n, per)]

    # dispatch --------------------------------------------------------------------------------
    def forward(self, x, w, b, geo: Geometry, groups: int):
        """On the CPU, the algorithm backend/tuner.py chooses (measured, cached, or today's
        thresholds under NETDSL_TUNE=off), recorded in what the path saves: `algorithm` (s2d's
        with its inner one: "s2d+direct") and `source` (measured | cache | thresholds)."""
        if not self.cpu:
            return self._gpu_forward(x, w, b, geo, groups)
        choice = tuner.choose(self, x, w, b, geo, groups)
        out, saved = self.run(choice.algorithm, x, w, b, geo, groups)
        inner = saved.get("inner", {}).get("algorithm")
        saved["algorithm"] = choice.algorithm + (f"+{inner}" if inner else "")
        saved["source"] = choice.source
        return out, saved

    def run(self, algorithm: str, x, w, b, geo: Geometry, groups: int):
        """One named algorithm's forward (tuner.ALGORITHMS says where each applies)."""
        if algorithm in WINOGRAD_TILES:
            out, saved = winograd.forward(self.xp, x, w, b, WINOGRAD_TILES[algorithm])
            if not self.keeps(saved["v"].nbytes + saved["u"].nbytes, w.shape[0]):
                saved = {**saved, "v": None, "u": None, "x": x}  # made again in backward
            return out, {"path": "winograd", **saved}
        if algorithm == "direct":
            out, saved = direct.forward(self.xp, x, w, b, geo, self.prepare(algorithm, w, b, geo))
            if not self.keeps(saved["flat"].nbytes, w.shape[0]):  # its padded copy of x: made again
                saved = {**saved, "flat": None, "x": x}
            return out, {"path": "direct", **saved}
        if algorithm == "s2d":
            return self._s2d_forward(x, w, b, geo)
        if algorithm == "batch_major":
            return self._batch_major_forward(x, w, b, geo)
        if algorithm == "blocked":  # inference only (tuner's rule): nothing saved for a backward
            return blocked.forward(x, w, b, geo, self.prepare(algorithm, w, b, geo)), {"path": "blocked"}
        if algorithm == "winograd_fused":  # inference only, as blocked
            return winograd_fused.forward(x, self.prepare(algorithm, w, b, geo)), {"path": "winograd_fused"}
        return self._per_image_forward(x, w, b, geo, groups)

    def prepare(self, algorithm: str, w, b, geo: Geometry):
        """What `algorithm` computes from the weights alone, made once into `prepared` where the
        caller keeps one (the tuner calls this before timing a candidate: the inference path pays
        it once, not per call); None for the algorithms that prepare nothing here."""
        make = PREPARES.get(algorithm)
        if make is None or (algorithm == "direct" and self.prepared is None):  # direct makes its own
            return None
        if self.prepared is None:
            return make(self.xp, w, b, geo)
        key = (algorithm, w.ctypes.data, w.shape, w.dtype.str, geo.h, geo.w, geo.stride, geo.pad)
        if key not in self.prepared:
            self.prepared[key] = make(self.xp, w, b, geo)
        return self.prepared[key]

    def columns_fit(self, x, geo: Geometry, groups: int) -> bool:
        """Whether the whole batch's columns fit the budget (batch-major applies), else per-image."""
        return groups == 1 and geo.col_elems_per_image * x.shape[0] * x.dtype.itemsize <= self.col_budget

    def threshold_choice(self, x, geo: Geometry, groups: int, o: int, allowed=None) -> str:
        """The algorithm the fixed thresholds pick (measured on one machine: benchmarks/NOTES.md),
        as before the tuner; `allowed`: those the error budget admits (F(4x4) then gives way to
        F(2x2), a Winograd layer outside the budget to the next rule)."""
        compiled = native.available(self.xp, x.dtype)
        ok = (lambda name: True) if allowed is None else (lambda name: name in allowed)
        if self.use_winograd and winograd.applies(geo, groups, o, compiled):
            tile = winograd.tile_for(geo, compiled)
            name = WINOGRAD_NAMES[tile, geo.kernel[0]]
            for option in (name, "winograd_f2") if name == "winograd_f4" else (name,):
                if ok(option):
                    return option
        if direct.applies(geo, groups, o, compiled) and ok("direct"):
            return "direct"
        if _s2d_applies(geo, groups) and ok("s2d"):
            return "s2d"
        # the whole batch as one GEMM wherever its columns fit: measured faster than per-image
        # GEMMs on every layer shape tried, large maps too (benchmarks/NOTES.md, change 14)
        return "batch_major" if self.columns_fit(x, geo, groups) else "per_image"

    def _gpu_forward(self, x, w, b, geo, groups):
        """Batch-major where the columns fit: one big GEMM each way, 1x1 convs on small maps too
        (their "columns" are the input transposed to (C, n*OH*OW), a cheap copy that turns 64
        thin GEMMs over a 7x7 map into one). 1x1 convs on large maps, grouped convs and huge
        columns per image, as batched GEMMs: the former over the input as it lies, no copies."""
        col_bytes = geo.col_elems_per_image * x.shape[0] * x.dtype.itemsize
        if groups == 1 and col_bytes <= self.budget and not (
                geo.pointwise and geo.oh * geo.ow >= GPU_POINTWISE_MIN_MAP):
            return self._batch_major_forward(x, w, b, geo)
        return self._per_image_forward(x, w, b, geo, groups)

    def backward(self, saved, dout, w, need_dx, epilogue=None):
        """epilogue: (activation name, gradient rule (dy, y) -> dx, activation output) of a fused
        activation, whose gradient the paths in EPILOGUE_PATHS apply in the copy of dout they make
        anyway; the others apply it first."""
        path = saved["path"]
        if epilogue and path not in EPILOGUE_PATHS:
            _, grad, y = epilogue
            dout, epilogue = grad(dout, y), None
        if path == "direct":
            if saved["flat"] is None:  # dropped by forward (keeps)
                saved = {**saved, "flat": direct.flat_planes(self.xp, saved["x"], saved["geo"].pad, saved["geo"].kernel)[0]}
            return direct.backward(self.xp, saved, dout, w, need_dx, epilogue and (epilogue[0], epilogue[2]))
        if epilogue:
            return self._batch_major_backward(saved, dout, w, need_dx, epilogue)
        if path == "winograd":
            if saved["v"] is None:  # dropped by forward (keeps)
                saved = winograd.transforms(self.xp, saved["x"], w, saved)
            dx, dw = winograd.backward(self.xp, saved, dout, need_dx)
            return dx, dw, _bias_grad(dout)
        return {"s2d": self._s2d_backward, "batch_major": self._batch_major_backward,
                "per_image": self._per_image_backward}[path](saved, dout, w, need_dx)

    # per-image im2col ------------------------------------------------------------------------
    def _per_image_forward(self, x, w, b, geo, groups):
        xp = self.xp
        n, o = x.shape[0], w.shape[0]
        wmat = w.reshape(groups, o // groups, -1)
        chunks = self.chunks(n, geo.col_elems_per_image * x.dtype.itemsize)
        # one chunk and one group: the batched GEMM's own result is the output, no copy into one
        out = None if len(chunks) == 1 and groups == 1 else xp.empty((n, o, geo.oh * geo.ow), dtype=x.dtype)
        kept = []
        keep = self.keep_cols and self.keeps(geo.col_elems_per_image * n * x.dtype.itemsize, o // groups)
        for chunk, (lo, hi) in enumerate(chunks):
            # (n', C*kh*kw, OH*OW), in this node's own buffer for this chunk, reused across steps
            key = (self.key, chunk) if keep else None
            cols = im2col.im2col(xp, x[lo:hi], geo, self.workspace, key=key)
            if out is None:
                out = xp.matmul(wmat[0], cols)
            else:
                cols_g = cols.reshape(hi - lo, groups, -1, geo.oh * geo.ow)
                for g in range(groups):
                    out[lo:hi, g * (o // groups):(g + 1) * (o // groups)] = xp.matmul(wmat[g], cols_g[:, g])
            if keep:
                kept.append(cols)
        if b is not None:
            out += b.reshape(1, o, 1)
        return out.reshape(n, o, geo.oh, geo.ow), {"path": "per_image", "x": x, "geo": geo, "cols": kept,
                                                   "groups": groups}

    def _per_image_backward(self, saved, dout, w, need_dx):
        xp = self.xp
        x, geo, kept, groups = saved["x"], saved["geo"], saved["cols"], saved["groups"]
        n, o = dout.shape[:2]
        og = o // groups
        dout = dout.reshape(n, o, -1)
        wmat = w.reshape(groups, og, -1)
        dw = xp.zeros_like(wmat)
        step = xp.empty_like(wmat[0])
        chunks = self.chunks(n, geo.col_elems_per_image * x.dtype.itemsize)
        dx = xp.empty(x.shape, dtype=x.dtype) if need_dx and len(chunks) > 1 else None
        for chunk, (lo, hi) in enumerate(chunks):
            cols = kept[chunk] if kept else im2col.im2col(xp, x[lo:hi], geo, self.workspace)
            cols_g = cols.reshape(hi - lo, groups, -1, geo.oh * geo.ow)
            d = dout[lo:hi]
            for g in range(groups):
                dg = d[:, g * og:(g + 1) * og]  # (n', og, OHW)
                if not self.cpu:  # one batched GEMM, then a sum over the images
                    dw[g] += xp.matmul(dg, cols_g[:, g].transpose(0, 2, 1)).sum(axis=0)
                elif geo.oh * geo.ow >= LONG_MAP and og * cols_g.shape[2] * geo.oh * geo.ow >= BIG_GEMM:
                    # one GEMM per image, accumulated: BLAS reads the transposed columns in place,
                    # where tensordot would first copy them into a transposed layout
                    for i in range(hi - lo):
                        xp.matmul(dg[i], cols_g[i, g].T, out=step)
                        dw[g] += step
                else:  # small problems: the copy is cheap and one GEMM beats many tiny ones
                    dw[g] += xp.tensordot(dg, cols_g[:, g], axes=([0, 2], [0, 2]))
            if need_dx:  # (n', C*kh*kw, OH*OW), group by group
                dcols = xp.concatenate([xp.matmul(wmat[g].T, d[:, g * og:(g + 1) * og]) for g in range(groups)],
                                       axis=1) if groups > 1 else xp.matmul(wmat[0].T, d)
                piece = im2col.col2im(xp, dcols, geo)
                if dx is None:  # one chunk: its gradient is the whole one (a 1x1 conv's: the GEMM's result)
                    dx = piece
                else:
                    dx[lo:hi] = piece
        return dx, dw.reshape(w.shape), dout.sum(axis=2).sum(axis=0)

    # batch-major im2col ----------------------------------------------------------------------
    def _batch_major_forward(self, x, w, b, geo):
        xp = self.xp
        n, o = x.shape[0], w.shape[0]
        keep = geo.whole_window or self.keeps(geo.col_elems_per_image * n * x.dtype.itemsize, o)
        # (CKK, n*OHW): kept in this node's own buffer, reused across steps, or in a passing one
        cols = im2col.im2col_batch_major(xp, x, geo, self.workspace, key=self.key if keep else None)
        out = (w.reshape(o, -1) @ cols).reshape(o, n, geo.oh, geo.ow).transpose(1, 0, 2, 3)
        if self.cpu:  # the transposed copy adds the bias on its way
            out = contiguous(xp, out, add=None if b is None else b.reshape(1, o, 1, 1))
        elif b is not None:
            out += b.reshape(1, o, 1, 1)
        # on the GPU the (N, O, H, W) view goes out as it is: the next kernel (bias and activation,
        # bn's first pass, im2col) reads it in place instead of after a copy
        return out, {"path": "batch_major", "cols": cols if keep else None, "x": None if keep else x,
                     "geo": geo, "n": n}

    def _batch_major_backward(self, saved, dout, w, need_dx, epilogue=None):
        xp = self.xp
        cols, geo, n = saved["cols"], saved["geo"], saved["n"]
        if cols is None:  # dropped by forward (keeps): made again, in a buffer that goes when backward is done
            cols = im2col.im2col_batch_major(xp, saved["x"], geo, self.workspace)
        o = w.shape[0]
        d3 = dout.reshape(n, o, -1).transpose(1, 0, 2)
        if epilogue:  # the activation's gradient, written straight into the GEMM's (O, n*OHW) layout
            _, grad, y = epilogue
            dout_t = grad(d3, y.reshape(n, o, -1).transpose(1, 0, 2)).reshape(o, -1)
        else:
            dout_t = contiguous(xp, d3).reshape(o, -1)  # (O, n*OHW)
        dw = weight_grad(xp, dout_t, cols).reshape(w.shape)
        dx = None
        # the wide grid only for numpy's col2im: the native one is as fast on 56x56 maps and
        # faster on small ones without it (benchmarks/NOTES.md, change 28)
        if need_dx and self.cpu and not native.available(xp, dout_t.dtype) and im2col.wide_col2im_applies(geo):
            dx = im2col.col2im_wide(xp, w.reshape(o, -1).T @ im2col.widen(xp, dout_t, geo, n), geo, n)
        elif need_dx:
            dx = im2col.col2im_batch_major(xp, w.reshape(o, -1).T @ dout_t, geo, n)
        return dx, dw, dout_t.sum(axis=1)

    # space-to-depth --------------------------------------------------------------------------
    def _s2d_forward(self, x, w, b, geo):
        xp = self.xp
        s = geo.stride[0]
        xs, inner = fold_input(xp, x, geo)
        ws = fold_weight(xp, w, s)
        out, saved = self.forward(xs, ws, b, inner, 1)
        return out, {"path": "s2d", "inner": saved, "geo": geo, "inner_geo": inner, "w_shape": w.shape}

    def _s2d_backward(self, saved, dout, w, need_dx):
        xp = self.xp
        geo, s = saved["geo"], saved["geo"].stride[0]
        dxs, dws, db = self.backward(saved["inner"], dout, fold_weight(xp, w, s), need_dx)
        dw = unfold_weight(xp, dws, s, w.shape)
        dx = unfold_input(xp, dxs, geo, saved["inner_geo"]) if need_dx else None
        return dx, dw, db


# what an algorithm makes from the weights alone (Conv.prepare): the blocked kernel's packed layer,
# the direct kernel's tap-major weights
PREPARES = {"blocked": lambda xp, w, b, geo: blocked.Layer(w, b, geo),
            "winograd_fused": lambda xp, w, b, geo: winograd_fused.Layer(winograd.fused_filters(w), b),
            "direct": lambda xp, w, b, geo: direct.tap_major(xp, w, w.dtype)}


def weight_grad(xp, dout_t, cols):
    """dW = dout_t @ cols.T, (O, n*OHW) x (CKK, n*OHW) -> (O, CKK), contiguous. Small results
    are computed as (cols @ dout_t.T) and copied back transposed: OpenBLAS runs that orientation
    faster on thin shapes and the copy is cheap; a tiny result over a long inner axis (LeNet's
    c1: 6x25 over 50,176) is summed over pieces of it, which BLAS runs at several times the rate
    of one long GEMM (benchmarks/NOTES.md, change 17). Large results keep the plain orientation:
    their transposed copy would cost more than it gains."""
    o, (ckk, inner) = dout_t.shape[0], cols.shape
    if on_gpu(xp) or o * ckk > SMALL_RESULT:
        return dout_t @ cols.T
    if o * ckk > TINY_RESULT or inner <= 2 * PIECE:
        return xp.ascontiguousarray((cols @ dout_t.T).T)
    acc = cols[:, :PIECE] @ dout_t[:, :PIECE].T
    for lo in range(PIECE, inner, PIECE):
        acc += cols[:, lo:lo + PIECE] @ dout_t[:, lo:lo + PIECE].T
    return xp.ascontiguousarray(acc.T)


def _bias_grad(dout):
    return dout.reshape(dout.shape[0], dout.shape[1], -1).sum(axis=2).sum(axis=0)


def _s2d_applies(geo: Geometry, groups: int) -> bool:
    s = geo.stride[0]
    return (groups == 1 and s >= 2 and geo.stride[1] == s and geo.kernel[0] >= s and geo.kernel[1] >= s
            and geo.c * s * s <= S2D_MAX_CHANNELS)


def fold_input(xp, x, geo: Geometry):
    """(n, C, H, W) -> (n, C*s*s, Hb, Wb): block (i, j) of s x s pixels becomes s*s channels, so
    that output (y, x) of the strided conv reads blocks y..y+K'-1, x..x+K'-1 (K' = ceil(k/s))."""
    s = geo.stride[0]
    kb = (-(-geo.kernel[0] // s), -(-geo.kernel[1] // s))
    hb, wb = geo.oh + kb[0] - 1, geo.ow + kb[1] - 1
    n, c = x.shape[:2]
    big = xp.zeros((n, c, hb * s, wb * s), dtype=x.dtype)
    ph, pw = geo.pad
    h, w = min(geo.h, hb * s - ph), min(geo.w, wb * s - pw)  # rows past the last window are never read
    big[:, :, ph:ph + h, pw:pw + w] = x[:, :, :h, :w]
    folded = big.reshape(n, c, hb, s, wb, s).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * s * s, hb, wb)
    inner = Geometry.of(folded.shape, kb, (1, 1), (0, 0))
    return xp.ascontiguousarray(folded), inner


def unfold_input(xp, dxs, geo: Geometry, inner: Geometry):
    """The adjoint of fold_input: folded gradients back onto the (unpadded) input."""
    s = geo.stride[0]
    n = dxs.shape[0]
    hb, wb = inner.h, inner.w
    big = dxs.reshape(n, geo.c, s, s, hb, wb).transpose(0, 1, 4, 2, 5, 3).reshape(n, geo.c, hb * s, wb * s)
    dx = xp.zeros((n, geo.c, geo.h, geo.w), dtype=dxs.dtype)
    ph, pw = geo.pad
    h, w = min(geo.h, hb * s - ph), min(geo.w, wb * s - pw)
    dx[:, :, :h, :w] = big[:, :, ph:ph + h, pw:pw + w]
    return dx


def fold_weight(xp, w, s: int):
    """(O, C, k, k) -> (O, C*s*s, K', K'): weight (i'*s + a, j'*s + b) moves to channel
    (c, a, b), tap (i', j'); taps past k are zero."""
    o, c, kh, kw = w.shape
    kb = (-(-kh // s), -(-kw // s))
    padded = xp.zeros((o, c, kb[0] * s, kb[1] * s), dtype=w.dtype)
    padded[:, :, :kh, :kw] = w
    return xp.ascontiguousarray(
        padded.reshape(o, c, kb[0], s, kb[1], s).transpose(0, 1, 3, 5, 2, 4).reshape(o, c * s * s, *kb))


def unfold_weight(xp, ws, s: int, shape):
    o, c, kh, kw = shape
    kb = ws.shape[2:]
    full = ws.reshape(o, c, s, s, kb[0], kb[1]).transpose(0, 1, 4, 2, 5, 3).reshape(o, c, kb[0] * s, kb[1] * s)
    return xp.ascontiguousarray(full[:, :, :kh, :kw])
