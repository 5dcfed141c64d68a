"""The compiled CPU kernels (backend/cpu/native.c) against the numpy code they stand in for, on a
table of geometries (strides, padding, rectangular windows and maps, one channel, windows
covering the map), in float32 and float64; and how the library is built, cached and done without."""
import os
import subprocess
import sys

import numpy as np
import pytest

from netdsl.backend import im2col
from netdsl.backend.cpu import native
from netdsl.backend.im2col import Geometry

# (input shape, kernel, stride, padding)
GEOMETRIES = [((2, 3, 7, 6), (3, 3), (1, 1), (1, 1)), ((3, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
              ((2, 4, 5, 5), (5, 5), (1, 1), (2, 2)), ((1, 2, 6, 6), (1, 1), (2, 2), (0, 0)),
              ((4, 1, 12, 12), (5, 5), (1, 1), (0, 0)), ((2, 3, 11, 13), (7, 7), (2, 2), (3, 3)),
              ((2, 2, 4, 5), (4, 5), (1, 1), (0, 0)), ((3, 5, 8, 8), (3, 3), (2, 2), (1, 1))]


@pytest.fixture(autouse=True)
def compiled():
    assert native.library() is not None, "no working C compiler: the native kernels are untested"


@pytest.fixture
def numpy_only(monkeypatch):
    monkeypatch.setattr(native, "available", lambda xp, dtype: False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,pad", GEOMETRIES)
def test_im2col_and_col2im_match_numpy(shape, kernel, stride, pad, dtype, monkeypatch):
    rng = np.random.default_rng(0)
    geo = Geometry.of(shape, kernel, stride, pad)
    x = rng.standard_normal(shape).astype(dtype)
    cols = im2col.im2col_batch_major(np, x, geo)
    d = rng.standard_normal(cols.shape).astype(dtype)
    dx = im2col.col2im_batch_major(np, d, geo, shape[0])
    monkeypatch.setattr(native, "available", lambda xp, dtype: False)
    np.testing.assert_array_equal(cols, im2col.im2col_batch_major(np, x, geo))
    np.testing.assert_allclose(dx, im2col.col2im_batch_major(np, d, geo, shape[0]),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def _max_pool(x, source_pool: str, numpy_only: bool, monkeypatch):
    """Forward and backward of one max-pool layer through the executor's kernels."""
    import netdsl
    from netdsl.backend.executor import Model
    if numpy_only:
        monkeypatch.setattr(native, "available", lambda xp, dtype: False)
    net = netdsl.compile_source(f"input {'x'.join(map(str, x.shape[1:]))}\n{source_pool}\nflatten")
    model = Model(net, device="cpu", dtype=str(x.dtype))
    model.loss(x, np.zeros(x.shape[0], dtype=int))
    out = model._values[model.index[net.layers[1].name]].copy()
    dx = model.backward(input_grad=True)["input"]
    monkeypatch.undo()
    return out, dx


@pytest.mark.parametrize("pool", ["pool max 3x3 /2 pad 1", "pool max 2x2", "pool max 2x3 /1", "pool max 3x3 /3 pad 1",
                                  "pool max 3x3 /2", "pool max 2x4 /2 pad 1"])
@pytest.mark.parametrize("values", ["random", "ties", "nan"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (2, 2, 8, 9)], ids=["even-width", "odd-width"])
def test_max_pool_matches_numpy(pool, values, shape, monkeypatch):
    """Values, the gradient routed to the first maximum in tap order (ties: small integers and
    ReLU-like zeros), and NaN winning its window, as numpy's maximum makes it; maps of even and
    odd width, windows with and without padding."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    if values == "ties":
        x = np.maximum(rng.integers(-2, 3, x.shape), 0).astype(np.float64)
    if values == "nan":
        x[0, 1, 2, 3] = np.nan
    fast = _max_pool(x, pool, False, monkeypatch)
    plain = _max_pool(x, pool, True, monkeypatch)
    np.testing.assert_array_equal(fast[0], plain[0])
    if values != "nan":  # NaN's gradient is NaN either way, wherever it is routed
        np.testing.assert_allclose(fast[1], plain[1], rtol=1e-12, atol=1e-12)


def _python(code: str, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_library_is_built_once_into_the_cache_by_whole_files(tmp_path):
    code = "from netdsl.backend.cpu import native; print(native.library() is not None)"
    first = _python(code, NETDSL_CACHE=str(tmp_path))
    assert first.stdout.strip() == "True", first.stderr
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].endswith(".so")  # no temporary left behind
    again = _python(code, NETDSL_CACHE=str(tmp_path))
    assert again.stdout.strip() == "True" and sorted(p.name for p in tmp_path.iterdir()) == built


@pytest.mark.parametrize("env", [{"NETDSL_NATIVE": "0"}, {"CC": "/nonexistent/cc"}], ids=["switched-off", "no-compiler"])
def test_without_the_library_the_numpy_paths_run(tmp_path, env):
    code = ("import numpy as np, netdsl\nfrom netdsl.backend.cpu import native\n"
            "net = netdsl.compile_source('input 2x6x6\\nconv 3 3x3 pad 1\\npool max 2x2\\nflatten')\n"
            "m = netdsl.Model(net, device='cpu')\nm.loss(np.ones((2, 2, 6, 6), np.float32), [0, 1])\n"
            "m.backward()\nprint(native.library())\nprint(m.device.description)")
    result = _python(code, NETDSL_CACHE=str(tmp_path / "cache"), **env)
    assert result.returncode == 0, result.stderr
    library, description = result.stdout.strip().splitlines()
    assert library == "None" and "numpy kernels only" in description  # the run reports say so


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_fused_networks_agree_with_numpy(mode, monkeypatch):
    """A whole optimised ResNet block (bn with its ReLU fused, max pooling, convs) through the
    compiled kernels and through numpy: the same loss, gradients and running statistics."""
    import netdsl
    from netdsl.backend.executor import Model

    from .test_gradients import MINI_RESNET
    source = MINI_RESNET.replace("conv 4 3x3 pad 1 nobias; bn; relu", "conv 4 3x3 pad 1 nobias; bn; relu; pool max 3x3 /1 pad 1")
    net = netdsl.optimise(netdsl.compile_source(source), "training")  # inference's would fold bn away
    assert any(d.get("op") == "bn" and d.get("epilogue") == "relu" for _, d in net.graph.nodes(data=True))
    x = np.random.default_rng(3).standard_normal((5, *net.input_shape))
    results = []
    for numpy_only in (False, True):
        if numpy_only:
            monkeypatch.setattr(native, "available", lambda xp, dtype: False)
        model = Model(net, device="cpu", dtype="float64", seed=0)
        loss = model.loss(x, [0, 1, 2, 0, 1], training=mode == "training")
        grads = model.backward(input_grad=True)
        results.append((loss, grads, {k: v.copy() for k, v in model.buffers().items()}))
    (l0, g0, b0), (l1, g1, b1) = results
    assert l0 == pytest.approx(l1, rel=1e-12)
    for name in g1:
        np.testing.assert_allclose(g0[name], g1[name], rtol=1e-9, atol=1e-12, err_msg=name)
    for name in b1:
        np.testing.assert_allclose(b0[name], b1[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.0, 5e-4])
def test_sgd_update_in_c_matches_the_formula(dtype, decay, fine_grained_work):
    """native.c's one-pass SGD (over pieces on two threads, a ragged last piece) against the
    formula in float64: v = momentum*v + g + decay*w; w -= lr*v, three steps."""
    from netdsl.train import optim
    rng = np.random.default_rng(3)
    n = 3 * optim.CHUNK + 17
    w, v = rng.standard_normal(n).astype(dtype), np.zeros(n, dtype)
    w64, v64 = w.astype(np.float64), np.zeros(n)
    for _ in range(3):
        g = rng.standard_normal(n).astype(dtype)
        optim._update_in_place(np, w, g, v, 0.9, decay, 0.05)
        v64 = 0.9 * v64 + g + decay * w64
        w64 = w64 - 0.05 * v64
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(v, v64, rtol=tol, atol=tol)
    np.testing.assert_allclose(w, w64, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k", [((3, 6, 28, 28), (2, 2)), ((2, 4, 10, 10), (2, 2)), ((2, 3, 9, 8), (3, 2)),
                                     ((1, 2, 6, 9), (2, 3)), ((2, 2, 4, 4), (4, 4))])
def test_tiled_average_pooling_matches_the_window_means(shape, k, dtype):
    """native.c's average pooling for windows that tile the input, both ways, against the means
    of the windows (forward) and the gradient spread evenly over each window (backward)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    geo = Geometry.of(shape, k, k, (0, 0))
    n, c, h, w = shape
    windows = x.reshape(n, c, geo.oh, k[0], geo.ow, k[1])
    tol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(native.avgpool_tiled(np, x, geo, forward=True), windows.mean(axis=(3, 5)),
                               rtol=tol, atol=tol)
    d = rng.standard_normal((n, c, geo.oh, geo.ow)).astype(dtype)
    spread = np.broadcast_to(d[:, :, :, None, :, None] / (k[0] * k[1]), windows.shape).reshape(shape)
    np.testing.assert_allclose(native.avgpool_tiled(np, d, geo, forward=False), spread, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile,r", [(2, 3), (4, 3), (2, 5)], ids=["F2x2-3x3", "F4x4-3x3", "F2x2-5x5"])
@pytest.mark.parametrize("o,c", [(3, 5), (2, 515), (64, 64)], ids=["under-a-vector", "blocks-and-tail", "even"])
def test_winograd_filter_transform_in_c(o, c, tile, r, dtype, fine_grained_work):
    """native.c's filter transform U = G g G^T against the product written out (G from the
    paper's points, winograd.G2/G4/G5), in blocks of filters on two threads with a ragged tail;
    and its adjoint by the identity <U(g), dU> = <g, U^T(dU)> in float64."""
    from netdsl.backend import winograd
    g_matrix = np.array({(2, 3): winograd.G2, (4, 3): winograd.G4, (2, 5): winograd.G5}[tile, r])
    rng = np.random.default_rng(7)
    w = rng.standard_normal((o, c, r, r)).astype(dtype)
    expected = np.einsum("ai,ocij,bj->aboc", g_matrix, w.astype(np.float64), g_matrix)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    u = winograd._filter_transform(np, w, tile)
    assert u.dtype == dtype and u.shape == (tile + r - 1, tile + r - 1, o, c)
    np.testing.assert_allclose(u, expected, rtol=tol, atol=tol)
    du = rng.standard_normal(u.shape).astype(dtype)
    dw = winograd._filter_adjoint(np, du, tile, r)
    assert dw.dtype == dtype and dw.shape == w.shape
    expected_dw = np.einsum("ai,aboc,bj->ocij", g_matrix, du.astype(np.float64), g_matrix)
    np.testing.assert_allclose(dw, expected_dw, rtol=tol, atol=tol)
    if dtype == np.float64:
        assert np.isclose(np.vdot(u, du), np.vdot(w, dw), rtol=1e-12)
