"""Winograd F(2x2, 3x3) fused for inference (backend/cpu/winograd_fused.py, native.c's wfc_
section) against a float64 convolution written from its definition: out[o, y, x] = bias[o] + sum
over c, i, j of w[o, c, i, j] * xpad[c, y + i, x + j] (3x3, stride 1, padding 1), with the fused
residual (apart from the output, or the output's own buffer) and ReLU; its float32 error against
plain float32 im2col's; where the tuner offers it."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.backend import tuner, winograd
from netdsl.backend.conv import Conv
from netdsl.backend.cpu import native, threads, winograd_fused
from netdsl.backend.im2col import Geometry

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def reference(x, w, bias):
    """(n, C, H, W) in float64, tap by tap over the definition."""
    n, c, h, width = x.shape
    xp = np.zeros((n, c, h + 2, width + 2))
    xp[:, :, 1:h + 1, 1:width + 1] = x
    out = np.zeros((n, w.shape[0], h, width)) + (0 if bias is None else bias.astype(np.float64)[None, :, None, None])
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + width], w[:, :, i, j].astype(np.float64))
    return out


def layer_of(w, bias):
    return winograd_fused.Layer(winograd.fused_filters(w), bias)


# (n, C, H, W, O): odd maps (a last tile row and column half outside), maps narrower than a vector
# of 16 tiles (units across rows and images), rows of 28 tiles (vectors both along one row and
# across two), output channels off the blocks of 8, one pixel, more tiles than one unit; few tiles
# and many blocks of channels (a 7x7 map at batch 1: the blocks split over the cores too)
SHAPES = [(1, 3, 5, 7, 5), (2, 4, 6, 6, 8), (3, 5, 7, 7, 9), (1, 16, 33, 40, 16), (2, 8, 14, 14, 12),
          (1, 2, 1, 1, 3), (2, 3, 56, 56, 17), (1, 6, 2, 3, 8), (4, 9, 9, 13, 11), (1, 8, 7, 7, 40),
          (3, 200, 9, 9, 10)]  # channels enough for the smaller unit (its V within V_BYTES)


@pytest.fixture(params=[1, 2], ids=["one thread", "units on two"])
def workers(request, monkeypatch):
    monkeypatch.setattr(threads, "WORKERS", request.param)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)  # split even the small ones
    monkeypatch.setattr(winograd_fused, "MIN_SPLIT_MACS", 0)
    return request.param


@pytest.mark.parametrize("n,c,h,w,o", SHAPES)
def test_fused_winograd_equals_the_definition(n, c, h, w, o, workers):
    rng = np.random.default_rng(n * 1000 + c * 10 + o)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    want = reference(x, wt, bias)
    scale = max(float(np.abs(want).max()), 1.0)
    layer = layer_of(wt, bias)
    out = np.full(want.shape, np.nan, dtype=np.float32)
    layer.bind(x, out)()
    assert np.abs(out - want).max() <= 1e-5 * scale

    residual = rng.standard_normal(want.shape).astype(np.float32)
    apart = np.full(want.shape, np.nan, dtype=np.float32)
    layer.bind(x, apart, residual, relu=True)()
    with_add = np.maximum(want + residual, 0)
    assert np.abs(apart - with_add).max() <= 1e-5 * scale

    in_place = residual.copy()  # the add's output in its other input's buffer: each value read, then written
    layer.bind(x, in_place, in_place, relu=True)()
    assert np.abs(in_place - with_add).max() <= 1e-5 * scale


@pytest.mark.parametrize("vectors", [2, 3, 4])
@pytest.mark.parametrize("unit", [1, 3])
def test_every_register_tile_and_unit_size(vectors, unit, monkeypatch):
    """native.c instantiates 2, 3 and 4 vectors of tiles; units of one or several register tiles."""
    monkeypatch.setattr(winograd_fused, "TILE_VECTORS", vectors)
    monkeypatch.setattr(winograd_fused, "UNIT_TILES", (16 * vectors * unit,))
    rng = np.random.default_rng(vectors + 10 * unit)
    x = rng.standard_normal((3, 7, 15, 18)).astype(np.float32)
    wt = rng.standard_normal((10, 7, 3, 3)).astype(np.float32)
    out = np.empty((3, 10, 15, 18), dtype=np.float32)
    layer_of(wt, None).bind(x, out, relu=False)()
    want = reference(x, wt, None)
    assert np.abs(out - want).max() <= 1e-5 * float(np.abs(want).max())


def test_units_shrink_as_channels_grow():
    """A unit's V stays within V_BYTES: fewer tiles a unit for wide layers, whole register tiles."""
    step = 16 * winograd_fused.TILE_VECTORS
    for c in (3, 64, 128, 200, 256, 512, 4096):
        tiles = winograd_fused.unit_tiles(c)
        assert tiles % step == 0 and tiles >= step
        assert 16 * c * (tiles + 16) * 4 <= winograd_fused.V_BYTES or tiles == min(winograd_fused.UNIT_TILES)
    assert winograd_fused.unit_tiles(64) > winograd_fused.unit_tiles(512)


def test_bad_arrays_are_refused():
    wt = np.ones((4, 3, 3, 3), dtype=np.float32)
    layer = layer_of(wt, None)
    x = np.ones((1, 3, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="overlap"):
        buf = np.zeros(4 * 64, dtype=np.float32)
        layer.bind(buf[:3 * 64].reshape(1, 3, 8, 8), buf.reshape(1, 4, 8, 8))
    with pytest.raises(ValueError, match="shapes"):
        layer.bind(x, np.empty((1, 5, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        layer.bind(x.astype(np.float64), np.empty((1, 4, 8, 8)))
    with pytest.raises(ValueError, match="3x3|16"):
        winograd_fused.Layer(np.ones((9, 4, 3), dtype=np.float32), None)


def test_float32_error_within_the_default_budget():
    """Against a float64 convolution on the same float32 weights and input (drawn as a trained
    layer's: He-scaled weights, ReLU'd input): the error over plain float32 im2col's stays within
    ERROR_GROWTH's figure for it, and that within --precision default's 2x."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((2, 64, 28, 28)), 0).astype(np.float32)
    wt = (rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2.0 / (64 * 9))).astype(np.float32)
    want = reference(x, wt, None)
    out = np.empty(want.shape, dtype=np.float32)
    layer_of(wt, None).bind(x, out)()
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    im2col, _ = Conv(np, None, 1 << 40, "c").run("batch_major", x, wt, None, geo, 1)

    def error(y):
        return float(np.linalg.norm(y - want) / np.linalg.norm(want))
    growth = error(out) / error(im2col)
    assert growth <= tuner.ERROR_GROWTH["winograd_fused"] <= tuner.PRECISIONS["default"]


def test_the_tuner_offers_it_for_inference_only():
    x = np.zeros((1, 8, 10, 10), dtype=np.float32)
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    inference = Conv(np, None, 1 << 40, "c", precision="default")
    assert "winograd_fused" in tuner.candidates(inference, x, geo, 1, 8)
    training = Conv(np, None, 1 << 40, "c", precision="default")
    training.training = True
    assert "winograd_fused" not in tuner.candidates(training, x, geo, 1, 8)
    exact = Conv(np, None, 1 << 40, "c", precision="exact")
    assert "winograd_fused" not in tuner.candidates(exact, x, geo, 1, 8)
    strided = Geometry.of(x.shape, (3, 3), (2, 2), (1, 1))
    assert "winograd_fused" not in tuner.candidates(inference, x, strided, 1, 8)
    assert "winograd_fused" not in tuner.candidates(inference, x.astype(np.float64), geo, 1, 8)


# the unfused path's float32 transforms, 16 tiles a vector (native.c's wf_ section): the same V and
# the same output as wino_input / wino_output (scalar tile by tile) in float64, then + bias,
# + residual (apart, or in place), ReLU
TRANSFORM_SHAPES = [(2, 3, 5, 7), (1, 4, 56, 56), (3, 5, 14, 14), (2, 2, 7, 7), (1, 3, 33, 40), (1, 2, 1, 1),
                    (1, 2, 2, 3)]


@pytest.mark.parametrize("n,c,h,w", TRANSFORM_SHAPES)
def test_vectorised_transforms_equal_the_scalar_ones(n, c, h, w, workers):
    lib = native.library()
    th, tw = -(-h // 2), -(-w // 2)
    rng = np.random.default_rng(h * w + c)
    x = rng.standard_normal((n, c, h, w))
    v64 = np.empty((16, c, n * th * tw))
    lib.wino_input_f64(native._at(x), native._at(v64), n, c, th, tw, h, w, 0, n)
    v32 = np.full(v64.shape, np.nan, dtype=np.float32)
    native.winograd_input_f32(np, x.astype(np.float32), v32, n, c, th, tw, h, w)
    assert np.abs(v32 - v64).max() <= 1e-5 * np.abs(v64).max()

    m = rng.standard_normal((16, c, n * th * tw))
    y64 = np.empty((n, c, h, w))
    lib.wino_output_f64(native._at(m), native._at(y64), n, c, th, tw, h, w, 0, n)
    m32 = m.astype(np.float32)
    bias, residual = rng.standard_normal(c).astype(np.float32), rng.standard_normal((n, c, h, w)).astype(np.float32)
    plain = np.full(y64.shape, np.nan, dtype=np.float32)
    native.winograd_output_f32(np, m32, plain, n, c, th, tw, h, w)
    tol = 1e-5 * max(np.abs(y64).max(), 1.0)
    assert np.abs(plain - y64).max() <= tol
    want = np.maximum(y64 + bias[:, None, None] + residual, 0)
    apart = np.full(y64.shape, np.nan, dtype=np.float32)
    native.winograd_output_f32(np, m32, apart, n, c, th, tw, h, w, bias, residual, relu=True)
    assert np.abs(apart - want).max() <= tol
    in_place = residual.copy()
    native.winograd_output_f32(np, m32, in_place, n, c, th, tw, h, w, bias, in_place, relu=True)
    assert np.abs(in_place - want).max() <= tol


@pytest.mark.parametrize("size", [1, 1000, (1 << 16) * 3 + 5])
def test_the_parallel_copy(size, workers):
    src = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    dst = np.full(size, np.nan, dtype=np.float32)
    native.copy_call(dst, src)()
    assert np.array_equal(dst, src)
    with pytest.raises(ValueError):
        native.copy_call(dst[:-1] if size > 1 else np.empty(2, np.float32), src)
