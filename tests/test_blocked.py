"""The blocked direct convolution for inference (backend/cpu/blocked.py, native.c's cb_ section)
against a float64 convolution written from its definition: out[o, y, x] = bias[o] + sum over c,
i, j of w[o, c, i, j] * xpad[c, y*s + i, x*s + j], with the fused residual and ReLU."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.backend.cpu import blocked, native
from netdsl.backend.im2col import Geometry

pytestmark = pytest.mark.skipif(native.library() is None, reason="needs the compiled kernels")


def reference(x, w, bias, stride, pad):
    """One image (C, H, W) in float64, loop by loop over the taps of the definition."""
    o, c, kh, kw = w.shape
    xp = np.zeros((c, x.shape[1] + 2 * pad, x.shape[2] + 2 * pad))
    xp[:, pad:pad + x.shape[1], pad:pad + x.shape[2]] = x
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((o, oh, ow)) + (0 if bias is None else bias.astype(np.float64)[:, None, None])
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += np.tensordot(w[:, :, i, j].astype(np.float64), window, axes=(1, 0))
    return out


# (C, H, W, O, kernel, stride, pad): ResNet's 3x3 /1 and /2 and 1x1 /2, odd maps, channel counts
# off the 16-lane blocks, a 7x7 /2 stem, maps narrower than a register tile, 5x5 /1 and 11x11 /4
LAYERS = [(16, 12, 12, 32, 3, 1, 1), (5, 11, 9, 19, 3, 2, 1), (20, 13, 15, 24, 1, 2, 0), (3, 23, 21, 10, 7, 2, 3),
          (33, 7, 7, 70, 3, 1, 1), (9, 5, 3, 17, 3, 1, 1), (40, 15, 15, 36, 3, 2, 1),
          (6, 9, 37, 20, 3, 1, 1),  # rows of 37: two 16-wide blocks transposed in registers and a tail
          (7, 13, 27, 40, 5, 1, 2), (3, 9, 11, 33, 5, 1, 0),  # AlexNet's 5x5 /1 (its own tiles), odd sizes
          (12, 8, 19, 17, 5, 1, 2),  # 12 channels of 25 taps: a chunk of 10 and one of 2
          (3, 31, 35, 9, 11, 4, 0),
          (16, 28, 28, 24, 1, 2, 0)]  # a 1x1 /2 whose reads stay inside the map: x read as it lies  # an 11x11 /4 (AlexNet's conv1 unfolded: the generic tile)


@pytest.mark.parametrize("c,h,w,o,k,s,p", LAYERS)
def test_blocked_equals_the_definition(c, h, w, o, k, s, p):
    rng = np.random.default_rng(c * 100 + o)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    geo = Geometry.of((1, c, h, w), (k, k), (s, s), (p, p))
    want = reference(x, wt, bias, s, p)
    layer = blocked.Layer(wt, bias, geo)
    out = np.full((o, geo.oh, geo.ow), np.nan, dtype=np.float32)
    x_before = x.copy()
    layer(x, out)
    np.testing.assert_array_equal(x, x_before)
    # a float32 sum of n = c*k*k products: within ~sqrt(n) roundings of the sum of their sizes
    # (a wrong tap or channel is off by a whole product, ~1)
    bound = 4 * np.finfo(np.float32).eps * np.sqrt(c * k * k) * reference(np.abs(x), np.abs(wt), None, s, p)
    assert np.all(np.abs(out - want) <= bound)
    # the fused add and ReLU: relu(conv + residual), the residual also as the output itself
    residual = rng.standard_normal(out.shape).astype(np.float32)
    fused = np.maximum(want + residual, 0)
    layer(x, out, residual, relu=True)
    assert np.all(np.abs(out - fused) <= bound)
    in_place = residual.copy()
    layer(x, in_place, in_place, relu=True)
    assert np.all(np.abs(in_place - fused) <= bound)
    # on two threads, the units (a group's block of rows) claimed one at a time: the same sums
    layer.threads, layer.rows = 2, 1
    again = np.empty_like(out)
    layer(x, again, residual, relu=True)
    np.testing.assert_array_equal(again, out)
    # every register tile native.c instantiates gives the same
    for tile in blocked.TILES:
        other = blocked.Layer.__new__(blocked.Layer)
        blocked.Layer.__init__(other, wt, None, geo, tile=tile)
        got = np.empty_like(out)
        other(x, got)
        assert np.all(np.abs(got - (want - bias[:, None, None])) <= bound), tile


def test_a_batch_runs_image_by_image():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 8, 8)).astype(np.float32)
    wt = rng.standard_normal((18, 6, 3, 3)).astype(np.float32)
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    got = blocked.forward(x, wt, None, geo)
    for i in range(3):
        bound = 4 * np.finfo(np.float32).eps * np.sqrt(54) * reference(np.abs(x[i]), np.abs(wt), None, 1, 1)
        assert np.all(np.abs(got[i] - reference(x[i], wt, None, 1, 1)) <= bound)


@pytest.mark.parametrize("h,w,k,s,p", [(112, 112, 3, 2, 1), (9, 7, 3, 2, 1), (10, 11, 2, 2, 0), (8, 8, 3, 1, 1),
                                       (13, 6, 5, 3, 2), (33, 33, 3, 2, 1), (6, 32, 3, 2, 1), (7, 35, 3, 2, 0),
                                       (11, 21, 5, 2, 2), (4, 47, 3, 2, 1)])
def test_inference_max_pooling_equals_the_definition(h, w, k, s, p):
    """native.c's cb_maxpool (the inference path's, float32): each window's maximum over the
    input padded with -inf, written from the definition; a NaN in a window makes its maximum NaN."""
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((5, h, w)).astype(np.float32)
    x[1, h // 2, w // 2] = np.nan
    x[3, h - 1, w - 1] = x[4, 0, 0] = np.nan  # the last column's tail and the first window
    padded = np.full((5, h + 2 * p, w + 2 * p), -np.inf, dtype=np.float32)
    padded[:, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    want = np.empty((5, oh, ow), dtype=np.float32)
    for y in range(oh):
        for z in range(ow):
            window = padded[:, y * s:y * s + k, z * s:z * s + k].reshape(5, -1)
            want[:, y, z] = [np.nan if np.isnan(win).any() else win.max() for win in window]
    got = np.empty_like(want)
    assert native.library().cb_maxpool_f32(native._at(x), native._at(got), 5, h, w, k, k, s, s, p, p, oh, ow) == 0
    np.testing.assert_array_equal(got, want)


def test_a_5x5_layer_takes_a_tile_measured_for_5x5():
    """choose_tile ranks tiles by the 5x5 measurements for a 5x5 kernel (AlexNet's conv2: 256
    channels, rows of 27), by the 3x3 ones otherwise."""
    assert blocked.choose_tile(256, 27, kw=5) == min(blocked.TILES_BY_KERNEL[5], key=blocked.TILES_BY_KERNEL[5].get)
    assert blocked.choose_tile(64, 56, kw=3) in blocked.TILES


@pytest.mark.parametrize("contiguous", [True, False])
def test_an_image_copied_into_the_padded_planes_either_way(contiguous):
    """A layer's input copied into its padded planes (native.c's row copy for a contiguous
    float32 image, numpy's for a strided view) gives the definition's convolution: odd sizes,
    pad 2, the planes' border left zero by the copy."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 9, 7)).astype(np.float32)
    image = x if contiguous else np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert image.flags.c_contiguous == contiguous
    wt = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    geo = Geometry.of((1, *x.shape), (3, 3), (1, 1), (2, 2))
    layer = blocked.Layer(wt, None, geo)
    out = np.empty((7, geo.oh, geo.ow), dtype=np.float32)
    for _ in range(2):  # the second call on planes the first one filled
        layer(image, out)
    bound = 4 * np.finfo(np.float32).eps * np.sqrt(45) * reference(np.abs(x), np.abs(wt), None, 1, 2)
    assert np.all(np.abs(out - reference(x, wt, None, 1, 2)) <= bound)
