"""Winograd F(2x2, 3x3) for 3x3 convolutions at stride 1 with padding 1 (VGG's and most of
ResNet's), on the CPU: 16 multiplications per 2x2 output tile instead of 36, so the GEMMs do
2.25x less work; the transforms are additions, in native.c where it is built (the GEMMs then
batch-major, one per tile position over the whole batch), else over strided numpy views (the
GEMMs per image).

    forward   V = B^T d B (input tiles), U = G g G^T (filters), M = U V (16 GEMMs), Y = A^T M A
    backward  dM = A dY A^T;  dU = dM V^T -> dW = G^T dU G;  dV = U^T dM -> dX = B dV B^T

With native.c, maps from 28x28 (and 14x14 ones over a large enough batch) use F(4x4, 3x3)
instead (6x6 input tiles, 36 GEMMs, 4x fewer multiplications than im2col): the same steps with
B, G and A of that size (tile_for). 5x5 layers at stride 1 with padding 2 (AlexNet's conv2) use
F(2x2, 5x5) there: 6x6 input tiles too, with the same B^T (the same points), 36 multiplications
per 2x2 outputs instead of 100.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016. Exact in exact
arithmetic; in float32 the error is of the order of 5e-7 of the output's scale for F(2x2, 3x3)
and 1e-5 for F(4x4, 3x3) (tests compare with im2col in float64).
"""
from __future__ import annotations

import numpy as np

from .cpu import native
from .cpu.blas_threads import stacked_matmul
from .cpu.threads import over_batch

# Where it pays (the measurements: benchmarks/NOTES.md, "Winograd's decision rule"): enough
# channels for the GEMMs to matter and enough tiles for them to be efficient, on maps small
# enough that the memory-bound transforms stay in cache. Without native.c (numpy's transforms,
# per-image GEMMs) that is wide layers on maps from 56x56 only:
MIN_CHANNELS = 128
MIN_TILES = 28 * 28  # 2x2 tiles per image
MAX_ELEMENTS = 1 << 20  # per image, C*H*W: 256x56x56 yes, 64x224x224 no
# With native.c's transforms and batch-major GEMMs, wherever the layer has work enough on maps
# from 13x13; on 7x7 maps only 512-channel layers over enough tiles (fewer lose to im2col).
NATIVE_MIN_CHANNELS = 64
NATIVE_MIN_MAP = 13
NATIVE_MIN_MACS = 64 << 20  # n * h * w * C * O * 9
DEEP_CHANNELS = 512
DEEP_MIN_MAP = 7
DEEP_MIN_TILES = 98  # 2x2 tiles over the batch
# F(2x2, 5x5) for 5x5 stride-1 pad-2 layers (AlexNet's conv2) with 32+ channels, under the
# same map and work limits.
FIVE_MIN_CHANNELS = 32
# F(4x4, 3x3) (4x fewer multiplications than im2col against F(2x2)'s 2.25x) on maps from 28x28,
# and on 14x14 ones over enough of its tiles; its float32 error is ~1e-5 of the output's scale
# against ~5e-7 for F(2x2, 3x3), so where the two tie the smaller one runs.
F4_MIN_MAP = 28
F4_SMALL_MAP = 14  # from here, with F4_MIN_TILES 4x4 tiles over the batch
F4_MIN_TILES = 128


def tile_for(geo, native_transforms: bool) -> int:
    """The output tile of the Winograd variant for a layer that applies(): 4 or 2 (5x5: 2)."""
    if geo.kernel == (5, 5):
        return 2
    side, tiles = min(geo.h, geo.w), geo.n * -(-geo.h // 4) * -(-geo.w // 4)
    large = side >= F4_MIN_MAP or (side >= F4_SMALL_MAP and tiles >= F4_MIN_TILES)
    return 4 if native_transforms and large else 2


def applies(geo, groups: int, out_channels: int, native_transforms: bool = False) -> bool:
    tiles = ((geo.h + 1) // 2) * ((geo.w + 1) // 2)
    if geo.kernel == (5, 5):  # F(2x2, 5x5): native.c's wino25_* only
        return (native_transforms and geo.stride == (1, 1) and geo.pad == (2, 2) and groups == 1
                and min(geo.c, out_channels) >= FIVE_MIN_CHANNELS and min(geo.h, geo.w) >= NATIVE_MIN_MAP
                and geo.n * geo.h * geo.w * geo.c * out_channels * 25 >= NATIVE_MIN_MACS)
    if native_transforms:
        side, narrowest = min(geo.h, geo.w), min(geo.c, out_channels)
        macs = geo.n * geo.h * geo.w * geo.c * out_channels * 9
        deep = narrowest >= DEEP_CHANNELS and side >= DEEP_MIN_MAP and geo.n * tiles >= DEEP_MIN_TILES
        worth_it = deep or (side >= NATIVE_MIN_MAP and macs >= NATIVE_MIN_MACS)
        channels = NATIVE_MIN_CHANNELS
    else:
        worth_it = tiles >= MIN_TILES and geo.c * geo.h * geo.w <= MAX_ELEMENTS
        channels = MIN_CHANNELS
    return (geo.kernel == (3, 3) and geo.stride == (1, 1) and geo.pad == (1, 1) and groups == 1
            and geo.c >= channels and out_channels >= channels and worth_it)


# U = G g G^T is, per filter, the 9 taps times kron(G, G) (alpha^2 x 9): native.c's wino_filter
# loops over blocks of filters, else one small GEMM over all O*C filters (both faster than numpy
# passes over strided 3-tap views).
# G of F(2x2, 3x3) (4x3), and of F(4x4, 3x3) (6x3, for native.c's wino4_* transforms; Lavin &
# Gray's points 0, +-1, +-2)
G2 = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
G4 = ((0.25, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0))
# F(2x2, 5x5) on the same points as F(4x4, 3x3), so with the same B^T (native.c's wino25_*): row j
# is G4's scale for point p_j times (1, p_j, ..., p_j^4), and the point at infinity last
G5 = tuple(tuple(scale * p ** k for k in range(5)) for scale, p in zip((0.25, -1 / 6, -1 / 6, 1 / 24, 1 / 24),
                                                                       (0, 1, -1, 2, -2))) + ((0.0,) * 4 + (1.0,),)


def _kron(g):
    r = len(g[0])
    return tuple(tuple(ga[i] * gb[j] for i in range(r) for j in range(r)) for ga in g for gb in g)


# (output tile, kernel size) -> (alpha^2, r*r) kron(G, G), and native.c's name for the variant
KRON_G = {(2, 3): _kron(G2), (4, 3): _kron(G4), (2, 5): _kron(G5)}
NATIVE_VARIANT = {(2, 3): "wino", (4, 3): "wino4", (2, 5): "wino25"}


def _filter_transform(xp, w, tile: int = 2):
    """U = G g G^T for every (o, c): (O, C, r, r) -> (alpha, alpha, O, C), alpha = tile + r - 1."""
    o, c, r = w.shape[:3]
    alpha = tile + r - 1
    k = xp.asarray(KRON_G[tile, r], dtype=w.dtype)
    if native.available(xp, w.dtype):
        u = xp.empty((alpha * alpha, o * c), dtype=w.dtype)
        native.winograd_filters(xp, xp.ascontiguousarray(w), k, u, o * c, adjoint=False)
        return u.reshape(alpha, alpha, o, c)
    return (k @ xp.ascontiguousarray(w).reshape(o * c, r * r).T).reshape(alpha, alpha, o, c)


def fused_filters(w) -> np.ndarray:
    """F(2x2, 3x3)'s U = G g G^T of (O, C, 3, 3) weights as the fused inference kernel takes it
    (backend/cpu/winograd_fused.py): (16, O, C), computed in float64, float32."""
    o, c = w.shape[:2]
    u = _filter_transform(np, np.asarray(w, dtype=np.float64), 2)
    return np.ascontiguousarray(u.reshape(16, o, c), dtype=np.float32)


def _filter_adjoint(xp, du, tile: int = 2, r: int = 3):
    """dW = G^T dU G: (alpha, alpha, O, C) -> (O, C, r, r)."""
    o, c = du.shape[2:]
    k = xp.asarray(KRON_G[tile, r], dtype=du.dtype)
    if native.available(xp, du.dtype):
        dw = xp.empty((o, c, r, r), dtype=du.dtype)
        native.winograd_filters(xp, xp.ascontiguousarray(du), k, dw, o * c, adjoint=True)
        return dw
    return (xp.ascontiguousarray(du).reshape(k.shape[0], o * c).T @ k).reshape(o, c, r, r)


def _input_transform(xp, xpad, th, tw, v, lo, hi):
    """V[a, b] = (B^T d B)[a, b] for every 4x4 tile of the padded input, images lo:hi."""
    x = xpad[lo:hi]
    tile = lambda a, b: x[:, :, a:a + 2 * th:2, b:b + 2 * tw:2]  # noqa: E731  (n, C, th, tw) views
    r = xp.empty((4, 4) + tile(0, 0).shape, dtype=x.dtype)
    for b in range(4):
        xp.subtract(tile(0, b), tile(2, b), out=r[0, b])
        xp.add(tile(1, b), tile(2, b), out=r[1, b])
        xp.subtract(tile(2, b), tile(1, b), out=r[2, b])
        xp.subtract(tile(1, b), tile(3, b), out=r[3, b])
    for a in range(4):
        xp.subtract(r[a, 0], r[a, 2], out=v[a, 0, lo:hi])
        xp.add(r[a, 1], r[a, 2], out=v[a, 1, lo:hi])
        xp.subtract(r[a, 2], r[a, 1], out=v[a, 2, lo:hi])
        xp.subtract(r[a, 1], r[a, 3], out=v[a, 3, lo:hi])


def _output_transform(xp, m, out, h, w, lo, hi):
    """Y = A^T M A per tile, written to the 2x2 output positions, images lo:hi."""
    mm = m[:, :, lo:hi]  # (4, 4, n, O, th, tw)
    s0 = mm[0] + mm[1] + mm[2]  # (4, n, O, th, tw) over b
    s1 = mm[1] - mm[2] - mm[3]
    for i, s in enumerate((s0, s1)):
        y0 = s[0] + s[1] + s[2]
        y1 = s[1] - s[2] - s[3]
        for j, y in enumerate((y0, y1)):
            rows, cols = len(range(i, h, 2)), len(range(j, w, 2))
            out[lo:hi, :, i::2, j::2] = y[:, :, :rows, :cols]


def forward(xp, x, weight, bias, tile: int = 2):
    """(n, C, H, W) -> (n, O, H, W) and what backward needs; tile 4 (F(4x4, 3x3)) with native.c only."""
    if native.available(xp, x.dtype):
        out, saved = _forward_native(xp, x, weight, tile)
    else:
        out, saved = _forward_numpy(xp, x, weight)
    if bias is not None:
        out += bias.reshape(1, weight.shape[0], 1, 1)
    return out, saved


def _padded(xp, x):
    """The input padded by 1 and up to whole 2x2 tiles: (n, C, 2*th + 2, 2*tw + 2)."""
    n, c, h, w = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    xpad = xp.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    xpad[:, :, 1:1 + h, 1:1 + w] = x
    return xpad, th, tw


def _forward_numpy(xp, x, weight):
    """Per image: V (16, n, C, T), 16 x n GEMMs; the transforms as numpy passes."""
    n, c, h, w = x.shape
    o = weight.shape[0]
    xpad, th, tw = _padded(xp, x)
    v = xp.empty((4, 4, n, c, th, tw), dtype=x.dtype)
    over_batch(xp, n, v.size, lambda lo, hi: _input_transform(xp, xpad, th, tw, v, lo, hi))
    u = _filter_transform(xp, weight)  # (4, 4, O, C)
    vt = v.reshape(16, n, c, th * tw)
    m = xp.matmul(u.reshape(16, 1, o, c), vt)  # (16, n, O, T): 16 x n GEMMs
    out = xp.empty((n, o, h, w), dtype=x.dtype)
    m6 = m.reshape(4, 4, n, o, th, tw)
    over_batch(xp, n, m.size, lambda lo, hi: _output_transform(xp, m6, out, h, w, lo, hi))
    return out, {"v": vt, "u": u, "shape": x.shape, "native": False, "tile": 2, "r": 3}


def _forward_native(xp, x, weight, tile: int = 2):
    """Batch-major: V (alpha^2, C, n*T), one GEMM per tile position over the whole batch; the
    transforms in native.c, F(2x2, 3x3) or F(4x4, 3x3) by `tile`."""
    n, c, h, w = x.shape
    o, r = weight.shape[0], weight.shape[2]
    positions, variant = (tile + r - 1) ** 2, NATIVE_VARIANT[tile, r]
    th, tw = -(-h // tile), -(-w // tile)
    v = xp.empty((positions, c, n * th * tw), dtype=x.dtype)
    native.winograd(xp, "input", xp.ascontiguousarray(x), v, n, c, th, tw, h, w, variant=variant)
    u = _filter_transform(xp, weight, tile).reshape(positions, o, c)
    m = stacked_matmul(xp, u, v)  # (alpha^2, O, n*T): a GEMM per tile position, one a core
    out = xp.empty((n, o, h, w), dtype=x.dtype)
    native.winograd(xp, "output", m, out, n, o, th, tw, h, w, variant=variant)
    return out, {"v": v, "u": u, "shape": x.shape, "native": True, "tile": tile, "r": r}


def transforms(xp, x, weight, saved: dict) -> dict:
    """`saved` with V and U made again from the input and the weights, for a backward whose
    forward dropped them to save memory (conv.py decides which layers do)."""
    n, c, h, w = x.shape
    tile, r = saved["tile"], saved["r"]
    u = _filter_transform(xp, weight, tile)
    if saved["native"]:
        th, tw = -(-h // tile), -(-w // tile)
        v = xp.empty(((tile + r - 1) ** 2, c, n * th * tw), dtype=x.dtype)
        native.winograd(xp, "input", xp.ascontiguousarray(x), v, n, c, th, tw, h, w, variant=NATIVE_VARIANT[tile, r])
        return {**saved, "v": v, "u": u.reshape(v.shape[0], weight.shape[0], c)}
    xpad, th, tw = _padded(xp, x)
    v = xp.empty((4, 4, n, c, th, tw), dtype=x.dtype)
    over_batch(xp, n, v.size, lambda lo, hi: _input_transform(xp, xpad, th, tw, v, lo, hi))
    return {**saved, "v": v.reshape(16, n, c, th * tw), "u": u}


def _grad_tiles(xp, dy, th, tw, lo, hi, dm):
    """dM = A dY A^T: (n, O, H, W) gradient -> (4, 4, n, O, th, tw), images lo:hi."""
    n, o, h, w = dy[lo:hi].shape
    g = xp.zeros((hi - lo, o, 2 * th, 2 * tw), dtype=dy.dtype)
    g[:, :, :h, :w] = dy[lo:hi]
    q = [[g[:, :, i::2, j::2] for j in range(2)] for i in range(2)]  # dY_ij: (n, O, th, tw)
    rows = [lambda j: q[0][j], lambda j: q[0][j] + q[1][j], lambda j: q[0][j] - q[1][j], lambda j: -q[1][j]]
    for a in range(4):
        r0, r1 = rows[a](0), rows[a](1)
        xp.copyto(dm[a, 0, lo:hi], r0)
        xp.add(r0, r1, out=dm[a, 1, lo:hi])
        xp.subtract(r0, r1, out=dm[a, 2, lo:hi])
        xp.negative(r1, out=dm[a, 3, lo:hi])


def _input_adjoint(xp, dv, dxpad, th, tw, lo, hi):
    """dX = B dV B^T scattered back onto the overlapping 4x4 tiles, images lo:hi."""
    d = dv[:, :, lo:hi]  # (4 over a, 4 over b, n, C, th, tw)
    # B^T's columns: 0 -> v0; 1 -> v1 - v2 + v3; 2 -> -v0 + v1 + v2; 3 -> -v3 (both axes alike)
    adjoint = (lambda v: v[0], lambda v: v[1] - v[2] + v[3], lambda v: -v[0] + v[1] + v[2], lambda v: -v[3])
    target = dxpad[lo:hi]
    for bp, along_b in enumerate(adjoint):
        cb = along_b(d.swapaxes(0, 1))  # (4 over a, n, C, th, tw)
        for ap, along_a in enumerate(adjoint):
            target[:, :, ap:ap + 2 * th:2, bp:bp + 2 * tw:2] += along_a(cb)


def backward(xp, saved, dy, need_dx):
    """Gradients of the weights (and of the input, if needed) from dY (n, O, H, W)."""
    return (_backward_native if saved["native"] else _backward_numpy)(xp, saved, dy, need_dx)


def _backward_numpy(xp, saved, dy, need_dx):
    vt, u = saved["v"], saved["u"]
    n, c, h, w = saved["shape"]
    o = dy.shape[1]
    th, tw = (h + 1) // 2, (w + 1) // 2
    dm = xp.empty((4, 4, n, o, th, tw), dtype=dy.dtype)
    over_batch(xp, n, dm.size, lambda lo, hi: _grad_tiles(xp, dy, th, tw, lo, hi, dm))
    dmt = dm.reshape(16, n, o, th * tw)
    du = xp.zeros((16, o, c), dtype=dy.dtype)
    step = xp.empty_like(du)
    for i in range(n):  # dU = sum over images of dM V^T: 16 GEMMs an image, V read transposed in place
        xp.matmul(dmt[:, i], vt[:, i].transpose(0, 2, 1), out=step)
        du += step
    dw = _filter_adjoint(xp, du.reshape(4, 4, o, c))
    dx = None
    if need_dx:
        dv = xp.matmul(u.reshape(16, 1, o, c).transpose(0, 1, 3, 2), dmt)  # (16, n, C, T)
        dv6 = dv.reshape(4, 4, n, c, th, tw)
        dxpad = xp.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=dy.dtype)
        over_batch(xp, n, dxpad.size, lambda lo, hi: _input_adjoint(xp, dv6, dxpad, th, tw, lo, hi))
        dx = dxpad[:, :, 1:1 + h, 1:1 + w]
    return dx, dw


def _backward_native(xp, saved, dy, need_dx):
    v, u, tile, r = saved["v"], saved["u"], saved["tile"], saved["r"]  # (alpha^2, C, n*T), (alpha^2, O, C)
    n, c, h, w = saved["shape"]
    o, alpha, variant = dy.shape[1], tile + r - 1, NATIVE_VARIANT[tile, r]
    th, tw = -(-h // tile), -(-w // tile)
    dm = xp.empty((alpha * alpha, o, n * th * tw), dtype=dy.dtype)
    native.winograd(xp, "grad_tiles", xp.ascontiguousarray(dy), dm, n, o, th, tw, h, w, variant=variant)
    du = stacked_matmul(xp, dm, v.transpose(0, 2, 1))  # dU = dM V^T: a GEMM per tile position
    dw = _filter_adjoint(xp, du.reshape(alpha, alpha, o, c), tile, r)
    dx = None
    if need_dx:
        dv = stacked_matmul(xp, u.transpose(0, 2, 1), dm)  # (alpha^2, C, n*T)
        dx = xp.empty((n, c, h, w), dtype=dy.dtype)
        native.winograd(xp, "input_adjoint", dv, dx, n, c, th, tw, h, w, variant=variant)
    return dx, dw
