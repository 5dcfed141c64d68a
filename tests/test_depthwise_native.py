"""native.c's depthwise convolution (backend/kernels/dense.py's `depthwise_native` variant): forward,
input gradient and weight gradient against references written here from the definition (a loop over
the taps in float64), against central differences, and against the numpy variant it replaces."""
import numpy as np
import pytest

import netdsl
from netdsl.backend.cpu import native
from netdsl.backend.executor import Model

from .gradcheck import central_difference, check_gradients

RNG = np.random.default_rng(2026)

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def _out_size(n, k, s, p, e):
    return (n + 2 * p + e - k) // s + 1


def _taps(x_hw, out_hw, kernel, stride, pad):
    """For each tap (i, j): the input rows and columns the outputs read, and which are inside the input."""
    (h, w), (oh, ow), (kh, kw), (sh, sw), (ph, pw) = x_hw, out_hw, kernel, stride, pad
    for i in range(kh):
        for j in range(kw):
            ys, xs = np.arange(oh) * sh + i - ph, np.arange(ow) * sw + j - pw
            yok, xok = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
            yield i, j, ys[yok], xs[xok], yok, xok


def reference(x, w, b, stride, pad, padend, dout=None):
    """y[n, c, oy, ox] = b[c] + sum_ij w[c, 0, i, j] * x[n, c, oy*sh + i - ph, ox*sw + j - pw] (zero
    outside the input); with dout also its adjoints dx and dw, tap by tap."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    oh, ow = _out_size(h, kh, stride[0], pad[0], padend[0]), _out_size(wd, kw, stride[1], pad[1], padend[1])
    y = np.zeros((n, c, oh, ow)) + (0 if b is None else b.reshape(1, c, 1, 1))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i, j, ys, xs, yok, xok in _taps((h, wd), (oh, ow), (kh, kw), stride, pad):
        tap = x[:, :, ys][:, :, :, xs]  # the inputs this tap reads, for the outputs [yok][:, xok]
        y[:, :, np.flatnonzero(yok)[:, None], np.flatnonzero(xok)] += w[:, 0, i, j].reshape(1, c, 1, 1) * tap
        if dout is not None:
            d = dout[:, :, np.flatnonzero(yok)[:, None], np.flatnonzero(xok)]
            dw[:, 0, i, j] = (d * tap).sum(axis=(0, 2, 3))
            dx[:, :, ys[:, None], xs] += w[:, 0, i, j].reshape(1, c, 1, 1) * d  # one tap: no repeats
    return y, dx, dw


def _geometry(x, w, stride, pad, padend):
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    oh, ow = _out_size(h, kh, stride[0], pad[0], padend[0]), _out_size(wd, kw, stride[1], pad[1], padend[1])
    return native.Geometry(h, wd, kh, kw, *stride, *pad, oh, ow)


# (batch, channels, h, w), kernel, stride, padding, padend
CASES = [
    ((2, 3, 7, 7), (3, 3), (1, 1), (1, 1), (0, 0)),
    ((2, 3, 8, 6), (3, 3), (2, 2), (1, 1), (0, 0)),
    ((1, 4, 9, 10), (3, 3), (2, 2), (0, 0), (0, 0)),
    ((2, 2, 6, 7), (5, 5), (1, 1), (2, 2), (0, 0)),
    ((2, 3, 11, 8), (5, 5), (2, 2), (2, 2), (0, 0)),
    ((1, 3, 5, 6), (5, 5), (1, 1), (0, 0), (0, 0)),
    ((2, 2, 6, 6), (3, 3), (2, 2), (0, 0), (1, 1)),  # TensorFlow's SAME at stride 2: padend
    ((1, 3, 7, 9), (5, 5), (2, 2), (1, 1), (1, 0)),
    ((2, 2, 7, 5), (3, 1), (1, 2), (1, 0), (0, 0)),
    ((1, 2, 4, 4), (3, 3), (1, 1), (2, 2), (0, 0)),  # padding wider than the map's border
    ((1, 2, 9, 9), (3, 3), (3, 3), (1, 1), (0, 0)),
    # maps big enough that native.c's buffer holds fewer images than the batch (2 of 3 in float64)
    ((3, 2, 100, 100), (3, 3), (1, 1), (1, 1), (0, 0)),
    ((3, 2, 101, 99), (3, 3), (2, 2), (1, 1), (0, 0)),
]
IDS = [f"{'x'.join(map(str, s[2:]))}-k{k[0]}x{k[1]}-s{st[0]}{st[1]}-p{p[0]}{p[1]}-e{e[0]}{e[1]}"
       for s, k, st, p, e in CASES]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("shape,kernel,stride,pad,padend", CASES, ids=IDS)
def test_matches_the_definition(shape, kernel, stride, pad, padend, dtype, tol):
    x = RNG.standard_normal(shape)
    w = RNG.standard_normal((shape[1], 1, *kernel))
    b = RNG.standard_normal(shape[1])
    geo = _geometry(x, w, stride, pad, padend)
    dout = RNG.standard_normal((shape[0], shape[1], geo.oh, geo.ow))
    want_y, want_dx, want_dw = reference(x, w, b, stride, pad, padend, dout)
    cast = [a.astype(dtype) for a in (x, w, b, dout)]
    y = native.depthwise_forward(np, cast[0], cast[1], cast[2], geo)
    y_nobias = native.depthwise_forward(np, cast[0], cast[1], None, geo)
    dx, dw, db = native.depthwise_backward(np, cast[0], cast[3], cast[1], geo, need_dx=True, need_db=True)
    scale = lambda a: tol * max(1.0, float(np.abs(a).max()))  # noqa: E731
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=scale(want_y))
    np.testing.assert_allclose(y_nobias, want_y - b.reshape(1, -1, 1, 1), rtol=tol, atol=scale(want_y))
    np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=scale(want_dx))
    np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=scale(want_dw))
    np.testing.assert_allclose(db, dout.sum(axis=(0, 2, 3)), rtol=tol, atol=scale(db))
    dx_none, dw_again, db_none = native.depthwise_backward(np, cast[0], cast[3], cast[1], geo, False, False)
    assert dx_none is None and db_none is None
    np.testing.assert_array_equal(dw_again, dw)


@pytest.mark.parametrize("case", [1, 4, 7], ids=[IDS[1], IDS[4], IDS[7]])
def test_gradients_match_central_differences(case):
    """Every coordinate of x, w and b: the loss sum(y * r) through the C forward, differenced."""
    shape, kernel, stride, pad, padend = CASES[case]
    x = RNG.standard_normal(shape)
    w = RNG.standard_normal((shape[1], 1, *kernel))
    b = RNG.standard_normal(shape[1])
    geo = _geometry(x, w, stride, pad, padend)
    r = RNG.standard_normal((shape[0], shape[1], geo.oh, geo.ow))
    dx, dw, db = native.depthwise_backward(np, x, r, w, geo, True, True)
    loss = lambda: float((native.depthwise_forward(np, x, w, b, geo) * r).sum())  # noqa: E731
    eps = 1e-6
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        numeric = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            numeric[idx] = central_difference(loss, arr, idx, eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


LAYERS = ["input 3x7x6\nconv 3 3x3 /2 pad 1 groups 3\nrelu",
          "input 4x6x6\nconv 4 3x3 /2 padend 1 groups 4 nobias\nrelu",
          "input 2x8x7\nconv 2 5x5 pad 2 groups 2\nrelu6",
          "input 3x5x5\nconv 3 3x3 pad 1 groups 3"]


def _layer_step(source, x):
    """The output, the input's and the parameters' gradients of one forward and backward of a layer in
    float64 (the loss: softmax cross-entropy of the flattened output), and the variant that ran."""
    net = netdsl.optimise(netdsl.compile_source(source + "\nflatten"), "training")  # the activation fused
    model = Model(net, device="cpu", dtype="float64", seed=5)
    jitter = np.random.default_rng(7)  # the same parameters for each variant
    for value in model.parameters().values():
        value += 0.1 * jitter.standard_normal(value.shape)
    out = model.forward(x)["output"].copy()
    model.loss(x, np.arange(x.shape[0]) % 3, training=True)
    grads = model.backward(input_grad=True)
    conv = next(node for node in model.nodes if node.op == "conv")
    return out, grads, conv


@pytest.mark.parametrize("source", LAYERS, ids=["s2-relu", "padend-relu", "5x5-relu6", "plain"])
def test_native_and_numpy_variants_agree(source, monkeypatch):
    """The C variant and the numpy one it replaces (NETDSL_NATIVE=0, and the GPU's code) give the
    same layer, the fused activation included; the layer's output also against the definition."""
    x = RNG.standard_normal((2, *netdsl.compile_source(source).input_shape))
    out, grads, conv = _layer_step(source, x)
    assert conv.variant.name == "depthwise_native"
    assert conv.epilogue == ("relu" if source.endswith("\nrelu") else conv.epilogue)
    with monkeypatch.context() as m:
        m.setattr(native, "available", lambda xp, dtype: False)
        out_np, grads_np, conv_np = _layer_step(source, x)
    assert conv_np.variant.name == "depthwise"
    np.testing.assert_allclose(out, out_np, rtol=1e-12, atol=1e-12)
    assert grads.keys() == grads_np.keys()
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_np[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_fused_activation_matches_the_definition():
    source = "input 3x7x6\nconv 3 3x3 /2 pad 1 groups 3\nrelu"
    net = netdsl.optimise(netdsl.compile_source(source), "inference")
    model = Model(net, device="cpu", dtype="float64", seed=5)
    params = model.parameters()
    x = RNG.standard_normal((2, 3, 7, 6))
    got = model.forward(x)["output"]
    conv = next(node for node in model.nodes if node.op == "conv")
    assert conv.epilogue == "relu" and conv.variant.name == "depthwise_native"
    want, _, _ = reference(x, params["conv1.weight"], params["conv1.bias"], (2, 2), (1, 1), (0, 0))
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("source", ["input 3x7x7\nconv 3 3x3 /2 pad 1 groups 3\nrelu",
                                    "input 2x7x6\nconv 2 5x5 /2 pad 2 padend 1 groups 2\nrelu"])
def test_layer_gradients_by_central_differences(source):
    assert "input" in check_gradients(source + "\nflatten", batch=2)
