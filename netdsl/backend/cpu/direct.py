"""Direct convolution for thin stride-1 layers on the CPU (native.c's direct_forward and
direct_weight_grad), where im2col + GEMM spends its time on the columns rather than on the
arithmetic: LeNet's c1 is a 6 x 25 by 25 x 50,176 GEMM, which OpenBLAS runs at ~29 GFLOP/s
after writing 5 MB of columns for 0.3 MB of input.

Each input plane is flattened with its padded width `wp` and a zero tail; output position p of
the "wide grid" (OH rows of wp columns, the columns from OW on computed and dropped) reads tap
(ky, kx) at p + ky*wp + kx, so every tap is a contiguous run and the kernel tiles are vectors.

    forward   out = conv(x, w) + b           over the flat planes, outputs in register tiles
    backward  dW  = sum over p of dy_wide[o, p] * x[c, p + ky*wp + kx]
              dX  = the forward kernel over dy_wide behind a zero margin of (kh-1)*wp + kw-1,
                    the weights flipped and transposed, on the padded input's grid: the "full"
                    correlation that is the forward's adjoint (dy's dropped columns are zeros,
                    so the taps that wrap round a row read nothing)
"""
from __future__ import annotations

from . import native, threads
from .threads import over_batch

VBYTES = 64  # native.c's vector size: register tiles of DIRECT_PV vectors of positions
DIRECT_PV = 2
# the weight gradient's register tiles, outputs x taps (native.c instantiates these four)
WGRAD_TILES = ((4, 5), (4, 4), (3, 5), (3, 4))
TILE_OUTPUTS = (6, 8)  # the forward's outputs per register tile (native.c instantiates these)
# Thin layers only, where they beat the im2col paths (benchmarks/NOTES.md, change 32): short dot
# products (C*kh*kw) and few weights. Wide layers lose (the weight gradient's per-lane sums, 64
# bytes a weight, outgrow the caches), and so do 1x1 convs, which are GEMMs over the input as it lies.
MAX_INNER = 512
MAX_WEIGHTS = 1 << 16
# The forward/weight-gradient kernels are compute-bound: split over the images from this many
# multiply-adds (a thread hand-off costs ~30 us, ~1M multiply-adds here)
MIN_SPLIT_MACS = 1 << 22


def applies(geo, groups: int, out_channels: int, native_kernels: bool) -> bool:
    inner = geo.c * geo.kernel[0] * geo.kernel[1]
    return (native_kernels and groups == 1 and geo.stride == (1, 1) and not geo.pointwise
            and geo.pad[0] < geo.kernel[0] and geo.pad[1] < geo.kernel[1] and (geo.oh, geo.ow) != (1, 1)
            and inner <= MAX_INNER and out_channels * inner <= MAX_WEIGHTS)


def _round_up(a: int, b: int) -> int:
    return -(-a // b) * b


def _lanes(dtype) -> int:
    return VBYTES // dtype.itemsize


def flat_planes(xp, x, pad: tuple[int, int], kernel: tuple[int, int]):
    """(n, C, plane) zero-padded flat planes of x, with the padded width and the output size."""
    n, c, h, w = x.shape
    (ph, pw), (kh, kw) = pad, kernel
    hp, wp = h + 2 * ph, w + 2 * pw
    oh, ow = hp - kh + 1, wp - kw + 1
    plane = _round_up(oh * wp, DIRECT_PV * _lanes(x.dtype)) + (kh - 1) * wp + kw - 1  # the last tile's reads
    flat = xp.zeros((n, c, plane), dtype=x.dtype)
    flat[:, :, :hp * wp].reshape(n, c, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x
    return flat, wp, oh, ow


def _wgrad_tile(o: int, taps: int) -> tuple[int, int]:
    """The weight gradient's (outputs, taps) tile that pads o x taps least, the larger on a
    tie: LeNet's c1 (6 x 25) takes 3 x 5, the folded ResNet stem (64 x 16) 4 x 4."""
    return min(WGRAD_TILES, key=lambda t: _round_up(o, t[0]) * _round_up(taps, t[1]))


def _tile_outputs(o: int) -> int:
    """6 or 8 outputs a tile, whichever pads o less (8 on a tie)."""
    return min(reversed(TILE_OUTPUTS), key=lambda ob: _round_up(o, ob))


def tap_major(xp, w, dtype):
    """The forward kernel's weights: (C, taps, O rounded up to its tile), the outputs innermost."""
    o, c, kh, kw = w.shape
    wt = xp.zeros((c, kh * kw, _round_up(o, _tile_outputs(o))), dtype=dtype)
    wt[:, :, :o] = w.reshape(o, c, kh * kw).transpose(1, 2, 0)
    return wt


def _conv(xp, x, w, b, pad, wt=None):
    """out = conv(x, w) + b at stride 1, and the flat planes it read."""
    n, c = x.shape[:2]
    o, _, kh, kw = w.shape
    flat, wp, oh, ow = flat_planes(xp, x, pad, (kh, kw))
    ob = _tile_outputs(o)
    opad = _round_up(o, ob)
    wt = tap_major(xp, w, x.dtype) if wt is None else wt
    bias = None if b is None else xp.ascontiguousarray(b, dtype=x.dtype)
    out = xp.empty((n, o, oh, ow), dtype=x.dtype)
    kernel = native._kernel("direct_forward", x.dtype)
    args = (native._at(flat), native._at(wt), None if bias is None else native._at(bias), native._at(out),
            c, o, opad, flat.shape[2], wp, kh, kw, oh, ow, ob, 0, flat.shape[2])
    over_batch(xp, n, _split_measure(n * opad * oh * wp * c * kh * kw), lambda lo, hi: kernel(*args, lo, hi))
    return out, flat


def _split_measure(macs: int) -> int:
    """over_batch splits from MIN_ELEMENTS elements: scaled so that it splits from MIN_SPLIT_MACS."""
    return macs * threads.MIN_ELEMENTS // MIN_SPLIT_MACS


def forward(xp, x, w, b, geo, wt=None):
    """wt: tap_major(w) made before (the tuner's and the inference path's: once a layer), or None."""
    out, flat = _conv(xp, x, w, b, geo.pad, wt)
    return out, {"flat": flat, "geo": geo}


def backward(xp, saved, dout, w, need_dx, epilogue=None):
    """(dx, dw, db); epilogue: (name, activation output) of a fused activation (any of the op
    table's epilogues), whose gradient is applied while dout is laid out on the wide grid."""
    flat, geo = saved["flat"], saved["geo"]
    n, o = dout.shape[:2]
    c, (kh, kw) = geo.c, geo.kernel
    wp, lanes = geo.wp, _lanes(dout.dtype)
    m = _round_up(geo.oh * wp, lanes)  # the weight gradient's positions
    if need_dx:  # a margin and a tail that the input gradient's taps read as zeros
        front = (kh - 1) * wp + kw - 1
        dplane = front + _round_up(geo.hp * wp, DIRECT_PV * lanes) + (kh - 1) * wp + kw - 1
    else:
        front, dplane = 0, m
    ob, tb = _wgrad_tile(o, kh * kw)
    opad = _round_up(o, ob)
    dout = xp.ascontiguousarray(dout)
    y = None if epilogue is None else xp.ascontiguousarray(epilogue[1])
    act = native.epilogue_code(None if epilogue is None else epilogue[0])
    dyw = xp.empty((n, opad, dplane), dtype=dout.dtype)
    sums = xp.empty((n, o), dtype=dout.dtype)  # per image and channel: the bias gradient's terms
    planes = native._kernel("direct_grad_planes", dout.dtype)
    over_batch(xp, n, dyw.size, lambda lo, hi: planes(
        native._at(dout), None if y is None else native._at(y), native._at(dyw), native._at(sums), o, opad,
        geo.oh, geo.ow, wp, front, dplane, act, lo, hi))

    kernel = native._kernel("direct_weight_grad", dout.dtype)
    parts = []

    def work(lo, hi):
        part = xp.empty((opad, c, kh * kw), dtype=dout.dtype)
        if kernel(native._at(flat), native._at(dyw, front), native._at(part), c, opad, flat.shape[2], dplane, m,
                  wp, kh, kw, ob, tb, lo, hi):
            raise MemoryError("direct_weight_grad: no memory for its per-lane sums")
        parts.append(part)
    over_batch(xp, n, _split_measure(n * opad * m * c * kh * kw), work)
    dw = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
    dw = xp.ascontiguousarray(dw[:o].reshape(w.shape))
    db = sums.sum(axis=0)
    dx = None
    if need_dx:  # the full correlation of dy with the flipped weights, on the padded input's grid
        ob = _tile_outputs(c)
        cpad = _round_up(c, ob)
        wt = xp.zeros((opad, kh * kw, cpad), dtype=dout.dtype)  # (outputs, taps flipped, inputs)
        wt[:o, :, :c] = w[:, :, ::-1, ::-1].reshape(o, c, kh * kw).transpose(0, 2, 1)
        dxpad = xp.empty((n, c, geo.hp, wp), dtype=dout.dtype)
        forward_kernel = native._kernel("direct_forward", dout.dtype)
        args = (native._at(dyw), native._at(wt), None, native._at(dxpad), opad, c, cpad, dplane, wp, kh, kw,
                geo.hp, wp, ob, front, front + geo.oh * wp)
        over_batch(xp, n, _split_measure(n * cpad * geo.hp * wp * opad * kh * kw),
                   lambda lo, hi: forward_kernel(*args, lo, hi))
        ph, pw = geo.pad
        dx = dxpad if (ph, pw) == (0, 0) else xp.ascontiguousarray(dxpad[:, :, ph:ph + geo.h, pw:pw + geo.w])
    return dx, dw, db
