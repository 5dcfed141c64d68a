"""native.c's skinny fc (sk_fc, the inference path's fc at small batch) against x @ W.T + b written
from the definition in float64: batch sizes 1..17 (the 4-row input tiles and their remainders),
feature counts that are not multiples of the vector width nor of the kernel's 1024-value chunks,
output counts that are not multiples of its 4-row weight blocks, with and without bias and a
clamp activation, the rows split over threads as the inference path splits them."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import netdsl
from netdsl.backend import inference
from netdsl.backend.cpu import native
from netdsl.backend.executor import Model

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def _reference(x, w, b, activation=None):
    """sum_k x[i, k] w[j, k] + b[j], term by term in float64, then the activation by its formula."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    out = (x64[:, None, :] * w64[None, :, :]).sum(axis=2)
    if b is not None:
        out = out + b.astype(np.float64)
    if activation == "relu":
        out = np.where(out > 0, out, 0.0)
    elif activation == "relu6":
        out = np.minimum(np.where(out > 0, out, 0.0), 6.0)
    elif activation == "hsigmoid":
        out = np.clip(out / 6 + 0.5, 0.0, 1.0)
    return out


def _tolerance(x, w, dtype):
    """A dot product's float rounding bound: k * eps * sum |x||w| (loose by the sqrt(k) of random
    signs, tight enough that a lost or doubled term, of size ~|x||w|, fails)."""
    eps = np.finfo(dtype).eps
    mags = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    return 4 * eps * np.sqrt(x.shape[1]) * mags + 1e-30


def _run(x, w, b, activation=None, parts=1):
    out = np.full((x.shape[0], w.shape[0]), np.nan, dtype=x.dtype)
    rows = native.skinny_fc_call(x, w, b, out, activation)
    o = w.shape[0]
    bounds = [(o * p // parts, o * (p + 1) // parts) for p in range(parts)]
    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(lambda lohi: rows(*lohi), bounds))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", range(1, 18))
def test_every_batch_size_against_the_definition(n, dtype):
    rng = np.random.default_rng(n)
    k, o = 1031, 23  # 1031: one full 1024-value chunk and a 7-value one, neither a vector multiple
    x = rng.standard_normal((n, k)).astype(dtype)
    w = rng.standard_normal((o, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    out = _run(x, w, b)
    assert np.all(np.abs(out - _reference(x, w, b)) <= _tolerance(x, w, dtype))


@pytest.mark.parametrize("k", [1, 3, 15, 17, 33, 1024, 2049])
@pytest.mark.parametrize("o", [1, 3, 4, 5, 9])
def test_odd_shapes_without_bias(k, o):
    rng = np.random.default_rng(k * 31 + o)
    x = rng.standard_normal((5, k)).astype(np.float32)
    w = rng.standard_normal((o, k)).astype(np.float32)
    out = _run(x, w, None)
    assert np.all(np.abs(out - _reference(x, w, None)) <= _tolerance(x, w, np.float32))


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_rows_split_over_threads_give_the_whole(parts):
    rng = np.random.default_rng(parts)
    x = rng.standard_normal((8, 300)).astype(np.float32)
    w = rng.standard_normal((37, 300)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    whole, split = _run(x, w, b), _run(x, w, b, parts=parts)
    assert np.array_equal(whole, split)  # the same sums in the same order, row by row
    assert np.all(np.abs(split - _reference(x, w, b)) <= _tolerance(x, w, np.float32))


@pytest.mark.parametrize("activation", ["relu", "relu6", "hsigmoid"])
def test_fused_clamps(activation):
    rng = np.random.default_rng(7)
    x = (4 * rng.standard_normal((3, 70))).astype(np.float32)
    w = rng.standard_normal((11, 70)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    out = _run(x, w, b, activation)
    ref = _reference(x, w, b, activation)
    assert (ref == 0).any() and (ref > 0).any()  # both sides of the clamp are exercised
    assert np.all(np.abs(out - ref) <= _tolerance(x, w, np.float32))


def test_float32_error_is_a_dot_products():
    """At AlexNet fc6's depth (9216 terms) the error is that of a float32 dot product, not of one
    running sum: within 2x of numpy's BLAS (a blocked GEMM) against the float64 definition."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 9216)).astype(np.float32)
    w = rng.standard_normal((8, 9216)).astype(np.float32)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    ours = np.abs(_run(x, w, None) - ref).max()
    blas = np.abs((x @ w.T) - ref).max()
    assert ours <= 2 * blas + 1e-6


def test_nan_propagates_through_relu():
    x = np.ones((2, 20), np.float32)
    x[1, 3] = np.nan
    w = np.ones((5, 20), np.float32)
    out = _run(x, w, None, "relu")
    assert np.all(out[0] == 20) and np.all(np.isnan(out[1]))


def test_mismatched_arrays_are_refused():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="one dtype"):
        native.skinny_fc_call(x, np.ones((3, 8), np.float64), None, np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="do not agree"):
        native.skinny_fc_call(x, np.ones((3, 7), np.float32), None, np.empty((2, 3), np.float32))


FC_NET = """network fcs
input 3x7x7
f1: fc 37
relu
f2: fc 19
relu6
f3: fc 13
tanh
f4: fc 6
"""


@pytest.mark.parametrize("n", [1, 2, 5, inference.SKINNY_ROWS[-1], inference.SKINNY_ROWS[-1] + 1])
def test_inference_path_on_both_sides_of_the_bound(n, monkeypatch):
    """fc layers with relu, relu6 (clamps in the kernel's output loop) and tanh (applied after it)
    give the training graph's eval-mode output, through the skinny kernel in SKINNY_ROWS
    rows (from 2 on: one row is OpenBLAS's GEMV) and OpenBLAS above."""
    prepared = []
    real = native.skinny_fc_call
    monkeypatch.setattr(native, "skinny_fc_call", lambda *a: prepared.append(a[4]) or real(*a))
    net = netdsl.compile_source(FC_NET, "fcs.net")
    model = Model(net, device="cpu", seed=0)
    x = np.random.default_rng(n).standard_normal((n, *net.input_shape)).astype(np.float32)
    expected = model(x)
    got = model.predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the kernel's own activations: relu and relu6 in its loop, tanh's and none left to the step
    assert prepared == (["relu", "relu6", None, None] if n in inference.SKINNY_ROWS else [])
