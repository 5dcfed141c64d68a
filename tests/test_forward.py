"""Forward results of conv, pooling, LRN and batch norm against plain float64 loops written
here, straight from the definitions (not from netdsl's kernels)."""
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model

RNG = np.random.default_rng(42)


def run_layer(source, x, training=False, params=None, **model_options):
    net = netdsl.compile_source(source)
    model = Model(net, device="cpu", dtype="float64", seed=3, **model_options)
    for name, value in (params or {}).items():
        model.parameters()[name][...] = value
    out = model.forward(x, training=training)["output"]
    return model, out


def ref_conv(x, w, b, stride, pad, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]))
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = x
    oh = (h + 2 * pad[0] - kh) // stride[0] + 1
    ow = (wd + 2 * pad[1] - kw) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for ni in range(n):
        for oc in range(o):
            g = oc // og
            for y in range(oh):
                for xx in range(ow):
                    acc = b[oc] if b is not None else 0.0
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += w[oc, ci, i, j] * xp[ni, g * cg + ci, y * stride[0] + i, xx * stride[1] + j]
                    out[ni, oc, y, xx] = acc
    return out


@pytest.mark.parametrize("c,h,w,line,o,k,stride,pad,groups", [
    (3, 7, 7, "conv 4 3x3 /2 pad 1", 4, (3, 3), (2, 2), (1, 1), 1),
    (4, 6, 5, "conv 6 2x3 pad 0x1 groups 2", 6, (2, 3), (1, 1), (0, 1), 2),
    (2, 9, 9, "conv 3 5x5 /3 pad 2", 3, (5, 5), (3, 3), (2, 2), 1),
    (3, 4, 4, "conv 2 1x1", 2, (1, 1), (1, 1), (0, 0), 1),
])
def test_conv_matches_reference(c, h, w, line, o, k, stride, pad, groups):
    x = RNG.standard_normal((2, c, h, w))
    wt = RNG.standard_normal((o, c // groups, *k))
    b = RNG.standard_normal(o)
    _, out = run_layer(f"input {c}x{h}x{w}\n{line}", x, params={"conv1.weight": wt, "conv1.bias": b})
    np.testing.assert_allclose(out, ref_conv(x, wt, b, stride, pad, groups), rtol=1e-10, atol=1e-10)


def ref_pool(x, mode, k, s, p):
    n, c, h, w = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((n, c, h + 2 * p, w + 2 * p), fill)
    xp[:, :, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for xx in range(ow):
            win = xp[:, :, y * s:y * s + k, xx * s:xx * s + k]
            out[:, :, y, xx] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (k * k)
    return out


@pytest.mark.parametrize("mode,k,s,p,size", [("max", 3, 2, 1, 7), ("max", 2, 2, 0, 6), ("avg", 3, 2, 0, 7),
                                             ("avg", 3, 1, 1, 5), ("max", 3, 2, 0, 13)])
def test_pool_matches_reference(mode, k, s, p, size):
    x = RNG.standard_normal((2, 3, size, size))
    _, out = run_layer(f"input 3x{size}x{size}\npool {mode} {k}x{k} /{s} pad {p}", x)
    np.testing.assert_allclose(out, ref_pool(x, mode, k, s, p), rtol=1e-12)


def test_global_average_pool():
    x = RNG.standard_normal((2, 4, 5, 3))
    _, out = run_layer("input 4x5x3\npool avg global", x)
    np.testing.assert_allclose(out[:, :, 0, 0], x.mean(axis=(2, 3)))


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 2, 2, 2))
    net = netdsl.compile_source("input 2x2x2\npool max 2x2\nflatten")
    model = Model(net, device="cpu", dtype="float64")
    model.loss(x, [0])
    grad = model.backward(input_grad=True)["input"]
    for c in range(2):  # PyTorch routes each window's gradient to its first maximum
        assert grad[0, c, 0, 0] != 0 and np.count_nonzero(grad[0, c]) == 1


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.6, 1.0), (2, 0.1, 0.75, 2.0)])
def test_lrn_matches_reference(size, alpha, beta, k):
    x = RNG.standard_normal((2, 7, 3, 3)) * 3
    _, out = run_layer(f"input 7x3x3\nlrn {size} alpha={alpha} beta={beta} k={k}", x)
    ref = np.zeros_like(x)
    for c in range(7):
        lo, hi = max(0, c - size // 2), min(7, c + (size - 1) // 2 + 1)  # PyTorch's window
        s = (x[:, lo:hi] ** 2).sum(axis=1)
        ref[:, c] = x[:, c] / (k + alpha / size * s) ** beta
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_batch_norm_training_statistics_and_running_averages():
    x = RNG.standard_normal((4, 3, 5, 5)) * 2 + 1
    model, out = run_layer("input 3x5x5\nbn momentum=0.1", x, training=True)
    mean = x.mean(axis=(0, 2, 3))
    var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
    ref = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    bufs = model.buffers()
    np.testing.assert_allclose(bufs["bn1.running_mean"], 0.1 * mean)
    np.testing.assert_allclose(bufs["bn1.running_var"], 0.9 + 0.1 * var * 100 / 99)  # unbiased, 100 values
    # evaluation uses the running statistics
    out_eval = model.forward(x, training=False)["output"]
    ref_eval = (x - bufs["bn1.running_mean"][None, :, None, None]) / np.sqrt(
        bufs["bn1.running_var"][None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out_eval, ref_eval, rtol=1e-10)


def test_batch_norm_variance_is_two_pass():
    # values with a huge mean: E[x^2] - E[x]^2 would lose every digit in float32
    x = (1e4 + RNG.standard_normal((8, 2, 3, 3))).astype(np.float32)
    net = netdsl.compile_source("input 2x3x3\nbn")
    model = Model(net, device="cpu", dtype="float32")
    out = model.forward(x, training=True)["output"]
    assert abs(float(out.std()) - 1) < 1e-2


def test_dropout_is_inverted_and_off_in_evaluation():
    x = np.ones((2000, 10))
    net = netdsl.compile_source("input 10\ndropout 0.25")
    model = Model(net, device="cpu", dtype="float64")
    train = model.forward(x, training=True)["output"]
    assert set(np.unique(train)) == {0.0, 1 / 0.75}
    assert abs(train.mean() - 1) < 0.02
    np.testing.assert_array_equal(model.forward(x, training=False)["output"], x)


def test_softmax_and_svm_losses():
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    labels = [0, 1, 2]
    # cs231n's worked hinge-loss example: losses 2.9, 0, 12.9 -> mean 5.27
    net = netdsl.compile_source("input 3\nsvm")
    model = Model(net, device="cpu", dtype="float64")
    assert model.loss(scores, labels) == pytest.approx((2.9 + 0 + 12.9) / 3)
    net = netdsl.compile_source("input 3\nsoftmax")
    model = Model(net, device="cpu", dtype="float64")
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert model.loss(scores, labels) == pytest.approx(-np.log(p[[0, 1, 2], labels]).mean())


@pytest.mark.parametrize("path", ["batch_major", "per_image", "winograd", "direct"])
def test_conv_paths_agree(path, monkeypatch):
    """Batch-major columns, per-image columns (forced by a 1-byte column budget), Winograd
    (allowed down to 16 channels) and the direct kernels (which take these thin layers unless
    switched off) give the same convolution as the reference loops."""
    from netdsl.backend import winograd
    from netdsl.backend.cpu import direct
    if path != "direct":
        monkeypatch.setattr(direct, "MAX_INNER", 0)
    for threshold in ("MIN_CHANNELS", "NATIVE_MIN_CHANNELS"):
        monkeypatch.setattr(winograd, threshold, 16 if path == "winograd" else 1 << 30)
    monkeypatch.setattr(winograd, "MIN_TILES", 64)
    monkeypatch.setattr(winograd, "NATIVE_MIN_MACS", 0)
    options = {"col_budget": 1} if path == "per_image" else {}
    for c, size in ((3, 5), (3, 17), (16, 16)) if path != "winograd" else ((16, 16), (16, 17)):
        x = RNG.standard_normal((2, c, size, size))
        wt = RNG.standard_normal((16, c, 3, 3))
        b = RNG.standard_normal(16)
        model, out = run_layer(f"input {c}x{size}x{size}\nconv 16 3x3 pad 1", x,
                               params={"conv1.weight": wt, "conv1.bias": b}, **options)
        model.forward(x, training=True)
        assert model.nodes[1].saved.conv["path"] == path
        np.testing.assert_allclose(out, ref_conv(x, wt, b, (1, 1), (1, 1), 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("o,ckk,inner", [(6, 25, 50_176), (6, 25, 8_193), (6, 25, 8_192), (64, 576, 9_000),
                                         (128, 1152, 300)])
def test_weight_gradient_pieces_sum_to_the_product(o, ckk, inner):
    """The weight gradient, whole, transposed or summed over pieces of its inner axis (LeNet's
    c1 shape, both sides of the threshold, a ragged last piece), equals the plain product in
    float64, and is contiguous: the optimiser's flat views of a strided one would copy it."""
    from netdsl.backend import conv
    dout_t = RNG.standard_normal((o, inner))
    cols = RNG.standard_normal((ckk, inner))
    dw = conv.weight_grad(np, dout_t, cols)
    assert dw.flags.c_contiguous
    np.testing.assert_allclose(dw, np.dot(dout_t, cols.T), rtol=1e-12, atol=1e-9)


def test_every_gradient_is_contiguous():
    """Every path's parameter gradients come out contiguous (SGD updates them through flat views)."""
    net = netdsl.load(Path(__file__).parent.parent / "nets" / "resnet18.net")
    model = Model(net, device="cpu", dtype="float32", seed=0)
    x = RNG.standard_normal((1, *net.input_shape)).astype(np.float32)
    model.loss(x, [0])
    model.backward()
    strided = [k for k, g in model.gradients().items() if not g.flags.c_contiguous]
    assert strided == []


@pytest.mark.parametrize("shape,line", [
    ((3, 227, 227), "conv 8 11x11 /4"),          # AlexNet's conv1: 11x11 stride 4
    ((3, 30, 29), "conv 8 7x7 /2 pad 3"),        # ResNet's conv1, odd width
    ((3, 17, 17), "conv 4 5x5 /3 pad 2"),
])
def test_space_to_depth_matches_im2col(shape, line):
    """Strided first layers run space-to-depth; forward and every gradient must equal im2col."""
    from netdsl.backend import conv
    from netdsl.backend.im2col import Geometry
    net = netdsl.compile_source(f"input {'x'.join(map(str, shape))}\n{line}\nflatten")
    k, s = net.layers[1].written.split()[2], int(line.split("/")[1].split()[0])
    kk = int(k.split("x")[0])
    pad = int(line.split("pad ")[1]) if "pad" in line else 0
    assert conv._s2d_applies(Geometry.of((1, *shape), (kk, kk), (s, s), (pad, pad)), 1)
    x = RNG.standard_normal((2, *shape))
    fast = Model(net, device="cpu", dtype="float64")
    plain = Model(net, device="cpu", dtype="float64", params_from=fast)
    # the same network with the path switched off: the plain im2col path
    original = conv._s2d_applies
    try:
        conv._s2d_applies = lambda geo, groups: False
        ref_out = plain(x)
        plain.loss(x, [0, 1])
        ref = plain.backward(input_grad=True)
    finally:
        conv._s2d_applies = original
    np.testing.assert_allclose(fast(x), ref_out, rtol=1e-11, atol=1e-11)
    fast.loss(x, [0, 1])
    got = fast.backward(input_grad=True)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape,kernel,pad", [
    ((3, 4, 14, 14), (5, 5), (0, 0)),     # LeNet's c3 shape, smaller: runs of 10
    ((2, 3, 9, 7), (3, 2), (1, 0)),       # rectangular kernel, uneven padding
    ((2, 5, 12, 42), (3, 3), (1, 1)),     # a wide map: 2 extra columns on 42
])
def test_wide_input_gradient_equals_col2im(shape, kernel, pad):
    """The stride-1 input gradient summed on the wide grid equals the plain col2im of the same
    columns, in float64."""
    from netdsl.backend import im2col
    geo = im2col.Geometry.of(shape, kernel, (1, 1), pad)
    assert im2col.wide_col2im_applies(geo)
    n, o = shape[0], 6
    w2 = RNG.standard_normal((o, geo.c * kernel[0] * kernel[1]))
    dout_t = RNG.standard_normal((o, n * geo.oh * geo.ow))
    plain = im2col.col2im_batch_major(np, w2.T @ dout_t, geo, n)
    wide = im2col.col2im_wide(np, w2.T @ im2col.widen(np, dout_t, geo, n), geo, n)
    assert wide.shape == shape
    np.testing.assert_allclose(wide, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,c,size,o,expect", [(8, 96, 27, 256, True), (2, 96, 27, 256, True),  # AlexNet conv2
                                                 (8, 32, 28, 96, True), (8, 16, 28, 32, False),
                                                 (1, 32, 28, 32, False), (8, 256, 7, 256, False)])
def test_five_by_five_winograd_rule(n, c, size, o, expect):
    """5x5 stride-1 pad-2 layers take F(2x2, 5x5) with native.c's transforms from 32 channels on
    maps from 13x13 with 64M multiply-adds (AlexNet's conv2), never without them
    (benchmarks/NOTES.md, change 47)."""
    from netdsl.backend import winograd
    from netdsl.backend.im2col import Geometry
    geo = Geometry.of((n, c, size, size), (5, 5), (1, 1), (2, 2))
    assert winograd.applies(geo, 1, o, True) is expect
    assert not winograd.applies(geo, 1, o, False)
    assert not winograd.applies(Geometry.of((n, c, size, size), (5, 5), (2, 2), (2, 2)), 1, o, True)
    if expect:
        assert winograd.tile_for(geo, True) == 2


@pytest.mark.parametrize("n,c,size,o,expect", [
    (8, 64, 56, 64, 4), (8, 128, 28, 128, 4), (8, 256, 14, 256, 4), (8, 512, 7, 512, 2),  # ResNet-18 b8
    (2, 64, 224, 64, 4), (2, 128, 112, 128, 4), (2, 256, 28, 512, 4), (2, 512, 14, 512, 2),  # VGG16 b2
    (8, 256, 13, 384, 2), (8, 384, 13, 384, 2), (8, 384, 13, 256, 2),  # AlexNet b8 conv3-5
    (2, 64, 28, 64, None), (2, 128, 28, 128, 4), (8, 64, 56, 32, None), (8, 256, 7, 256, None),
    (2, 512, 7, 512, None), (8, 512, 5, 512, None), (1, 512, 28, 512, 4), (4, 512, 14, 512, 2),
    (8, 128, 14, 128, 4), (1, 64, 56, 64, 4), (2, 64, 14, 64, None), (8, 64, 7, 64, None)])
def test_winograd_rule_with_native_transforms(n, c, size, o, expect):
    """Which 3x3 layers take Winograd with native.c's transforms, and with which output tile:
    64+ channels on maps from 13x13 with 64M multiply-adds, 512+ on maps from 7x7 with 98 tiles
    over the batch; F(4x4, 3x3) on maps from 28x28, and on 14x14 maps from 128 of its 4x4 tiles
    (benchmarks/NOTES.md, changes 31, 35, 36, 42, 44, 45)."""
    from netdsl.backend import winograd
    from netdsl.backend.im2col import Geometry
    geo = Geometry.of((n, c, size, size), (3, 3), (1, 1), (1, 1))
    got = winograd.tile_for(geo, True) if winograd.applies(geo, 1, o, True) else None
    assert got == expect
