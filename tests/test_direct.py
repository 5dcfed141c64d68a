"""The direct convolution kernels (backend/cpu/direct.py, native.c's direct_*) against float64
reference loops written out here: forward, weight, bias and input gradients, on geometries that
cross every tile boundary, with each fused activation's gradient, over two threads, and the rule
that picks them for LeNet's layers and not for ResNet's."""
import numpy as np
import pytest

import netdsl
from netdsl.backend.cpu import direct, native
from netdsl.backend.im2col import Geometry

from .gradcheck import check_gradients
from .test_forward import ref_conv

RNG = np.random.default_rng(11)

# (n, C, H, W, O, kh, kw, ph, pw): LeNet's c1 and c3 (small batches), padding, non-square
# kernels and padding, 1x1, outputs that are no multiple of a tile's 6 or 8 or the weight
# gradient's 4, maps whose wide grid is no multiple of a tile, a kernel as large as the map
GEOMETRIES = [(2, 1, 32, 32, 6, 5, 5, 0, 0), (3, 6, 14, 14, 16, 5, 5, 0, 0), (2, 3, 9, 7, 5, 3, 3, 1, 1),
              (1, 2, 5, 6, 11, 3, 3, 2, 2), (2, 4, 7, 9, 7, 2, 3, 0, 1), (3, 5, 6, 6, 9, 1, 1, 0, 0),
              (2, 3, 17, 5, 13, 4, 2, 1, 0), (1, 2, 4, 4, 3, 4, 4, 1, 1), (2, 1, 3, 40, 2, 3, 3, 1, 1)]


def _reference_grads(x, w, dy, pad):
    """dW and dX of out = conv(x, w) (stride 1) by loops over the taps, in float64."""
    (ph, pw), (kh, kw) = pad, w.shape[2:]
    n, c, h, wd = x.shape
    oh, ow = dy.shape[2:]
    xpad = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xpad[:, :, ph:ph + h, pw:pw + wd] = x
    dw, dxpad = np.zeros(w.shape), np.zeros(xpad.shape)
    for i in range(kh):
        for j in range(kw):
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xpad[:, :, i:i + oh, j:j + ow])
            dxpad[:, :, i:i + oh, j:j + ow] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    return dw, dxpad[:, :, ph:ph + h, pw:pw + wd]


@pytest.fixture(autouse=True)
def _needs_native():
    assert native.library() is not None, "no working C compiler: the direct kernels are untested"


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", GEOMETRIES, ids=[f"{g[1]}x{g[2]}x{g[3]}->{g[4]}k{g[5]}x{g[6]}p{g[7]}x{g[8]}"
                                                  for g in GEOMETRIES])
def test_direct_conv_matches_reference(shape, dtype, tol):
    n, c, h, wd, o, kh, kw, ph, pw = shape
    x, w, b = RNG.standard_normal((n, c, h, wd)), RNG.standard_normal((o, c, kh, kw)), RNG.standard_normal(o)
    geo = Geometry.of(x.shape, (kh, kw), (1, 1), (ph, pw))
    out, saved = direct.forward(np, x.astype(dtype), w.astype(dtype), b.astype(dtype), geo)
    expect = ref_conv(x, w, b, (1, 1), (ph, pw), 1)
    scale = max(1.0, np.abs(expect).max())
    assert out.dtype == dtype and out.shape == expect.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, expect, rtol=0, atol=tol * scale * 10)

    dy = RNG.standard_normal(out.shape)
    dx, dw, db = direct.backward(np, saved, dy.astype(dtype), w.astype(dtype), True)
    dw_ref, dx_ref = _reference_grads(x, w, dy, (ph, pw))
    assert dx.shape == x.shape and dx.flags.c_contiguous and dw.shape == w.shape and dw.flags.c_contiguous
    for got, ref in ((dw, dw_ref), (dx, dx_ref), (db, dy.sum(axis=(0, 2, 3)))):
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()) * 10)
    # without the input gradient (first layers) dy is laid out without its margins
    no_dx, dw2, db2 = direct.backward(np, saved, dy.astype(dtype), w.astype(dtype), False)
    assert no_dx is None
    np.testing.assert_allclose(dw2, dw, rtol=0, atol=tol * max(1.0, np.abs(dw_ref).max()))
    np.testing.assert_allclose(db2, db, rtol=0, atol=tol * max(1.0, np.abs(db).max()))


def test_geometries_cover_every_weight_gradient_tile():
    assert {direct._wgrad_tile(g[4], g[5] * g[6]) for g in GEOMETRIES} == set(direct.WGRAD_TILES)


RULES = {"relu": lambda y: (y > 0).astype(y.dtype), "tanh": lambda y: 1 - y * y, "sigmoid": lambda y: y * (1 - y)}


@pytest.mark.parametrize("activation", sorted(RULES))
def test_fused_activation_gradient_is_applied_on_the_wide_grid(activation):
    """backward with an epilogue equals backward of dy times the activation's derivative."""
    x, w = RNG.standard_normal((3, 2, 8, 9)), RNG.standard_normal((5, 2, 3, 3))
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    out, saved = direct.forward(np, x, w, None, geo)
    y = {"relu": np.maximum(out, 0), "tanh": np.tanh(out), "sigmoid": 1 / (1 + np.exp(-out))}[activation]
    dy = RNG.standard_normal(out.shape)
    fused = direct.backward(np, saved, dy, w, True, (activation, y))
    plain = direct.backward(np, saved, dy * RULES[activation](y), w, True)
    for got, ref in zip(fused, plain):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_direct_conv_over_two_threads(fine_grained_work, monkeypatch):
    """Split over the images from the first multiply-add: the weight gradient's per-thread
    sums add up, and every image's output and input gradient is written once."""
    monkeypatch.setattr(direct, "MIN_SPLIT_MACS", 1)
    x, w, b = RNG.standard_normal((5, 3, 10, 11)), RNG.standard_normal((7, 3, 5, 3)), RNG.standard_normal(7)
    geo = Geometry.of(x.shape, (5, 3), (1, 1), (2, 1))
    out, saved = direct.forward(np, x, w, b, geo)
    np.testing.assert_allclose(out, ref_conv(x, w, b, (1, 1), (2, 1), 1), rtol=0, atol=1e-11)
    dy = RNG.standard_normal(out.shape)
    dx, dw, db = direct.backward(np, saved, dy, w, True)
    dw_ref, dx_ref = _reference_grads(x, w, dy, (2, 1))
    np.testing.assert_allclose(dw, dw_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("source", ["input 2x8x8\nconv 3 3x3\ntanh", "input 3x6x7\nconv 4 3x2 pad 1\nsigmoid",
                                    "input 1x12x12\nconv 6 5x5\ntanh\npool avg 2x2\nconv 5 3x3\nrelu"],
                         ids=["tanh", "sigmoid", "two-layers"])
def test_direct_gradient_through_fused_activation(source):
    """Finite differences in float64 through a conv whose activation is fused (passes/fuse.py):
    its gradient is applied by the direct backward kernel itself."""
    net = netdsl.optimise(netdsl.compile_source(source + "\nflatten"), "training")
    assert any(data.get("epilogue") for _, data in net.graph.nodes(data=True))
    check_gradients(source + "\nflatten", batch=3, samples=10)


def _path(source: str, batch: int, **options) -> str:
    net = netdsl.compile_source(source)
    model = netdsl.Model(net, device="cpu", dtype="float32", **options)
    model.forward(np.zeros((batch, *net.input_shape), dtype=np.float32), training=True)
    return next(node.saved.conv["path"] for node in model.nodes if node.op == "conv")


def test_thin_layers_run_direct_and_wide_ones_do_not():
    """The rule: thin stride-1 layers (LeNet's c1 and c3, VGG's first) take the direct kernels;
    wide ones (ResNet's 64-channel 3x3 from 14x14), 1x1, strided, grouped and whole-window
    layers keep their paths; strided first layers run direct once folded (space-to-depth)."""
    assert _path("input 1x32x32\nconv 6 5x5", 4) == "direct"
    assert _path("input 6x14x14\nconv 16 5x5", 4) == "direct"
    assert _path("input 3x32x32\nconv 64 3x3 pad 1", 2) == "direct"
    assert _path("input 64x14x14\nconv 64 3x3 pad 1", 2) != "direct"
    assert _path("input 192x8x8\nconv 16 1x1", 2) != "direct"
    assert _path("input 6x14x14\nconv 16 5x5 /2", 4) != "direct"
    assert _path("input 6x14x14\nconv 16 5x5 groups 2", 4) != "direct"
    assert _path("input 16x5x5\nconv 120 5x5", 4) != "direct"
    assert _path("input 3x35x35\nconv 8 7x7 /2 pad 3", 2) == "s2d"
    net = netdsl.compile_source("input 3x35x35\nconv 8 7x7 /2 pad 3")
    model = netdsl.Model(net, device="cpu", dtype="float32")
    model.forward(np.zeros((2, *net.input_shape), dtype=np.float32), training=True)
    assert model.nodes[1].saved.conv["inner"]["path"] == "direct"


def test_numpy_kernels_keep_their_paths(monkeypatch):
    """Without the compiled kernels (no C compiler, NETDSL_NATIVE=0) nothing runs direct."""
    monkeypatch.setattr(native, "available", lambda xp, dtype: False)
    assert _path("input 1x32x32\nconv 6 5x5", 4) != "direct"
