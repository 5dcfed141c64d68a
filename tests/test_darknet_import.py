"""Darknet .cfg import (issue 16). The files are written here from Darknet's public cfg format
(parser.c's keys and defaults: pad=1 is size/2, maxpool's padding is size-1 split floor(p/2)
before and the rest after, the default activation is logistic, leaky's slope is 0.1)."""
import re

import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main

HEAD = "[net]\nbatch=64\nwidth=32\nheight=32\nchannels=3\n\n"


def conv(filters, size, stride=1, act="leaky", bn=1):
    return f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\nactivation={act}\n\n"


def darknet_out(n, size, stride, padding):
    """Darknet's maxpool output size: (n + padding - size)/stride + 1."""
    return (n + padding - size) // stride + 1


def test_a_small_darknet_with_route_and_shortcut(tmp_path):
    cfg = (HEAD + conv(16, 3) + "[maxpool]\nsize=2\nstride=2\n\n" + conv(32, 3) + conv(16, 1) + conv(32, 3)
           + "[shortcut]\nfrom=-3\nactivation=linear\n\n"
           + "[route]\nlayers=-4\n\n" + conv(32, 1)  # back to layer 2, a second branch from it
           + "[route]\nlayers=-3,-1\n\n"  # the shortcut's output beside the new branch
           + "[maxpool]\nsize=3\nstride=2\n\n" + conv(10, 1, act="linear", bn=0) + "[avgpool]\n\n[softmax]\n\n[cost]\n")
    f = tmp_path / "tiny.cfg"
    f.write_text(cfg)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    shapes = [l.shape for l in net.layers]
    assert net.input_shape == (3, 32, 32)
    assert (16, darknet_out(32, 2, 2, 1), darknet_out(32, 2, 2, 1)) in shapes  # 2x2/2 on 32: 16
    assert "pool max 2x2" in text and "pool max 3x3 /2 pad 1" in text  # padding 2 = 1 before, 1 after
    assert "leaky 0.1" in text and "add {" in text and "concat {" in text
    assert "conv 16 3x3 pad 1 nobias\nbn" in text  # batch_normalize: the conv has no bias of its own
    assert net.layers[-1].shape == (10,) and net.layers[-1].op == "softmax"
    concat = next(l for l in net.layers if l.op == "concat")
    assert concat.shape == (64, 16, 16)  # route: the shortcut's 32 channels and the 1x1 branch's 32


def test_maxpool_size_2_stride_1_pads_after_only(tmp_path):
    f = tmp_path / "p.cfg"
    f.write_text(HEAD + "[maxpool]\nsize=2\nstride=1\n\n")
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    assert "pool max 2x2 /1 padend 1" in text
    assert net.layers[-1].shape == (3, darknet_out(32, 2, 1, 1), darknet_out(32, 2, 1, 1)) == (3, 32, 32)


def test_the_default_activation_is_logistic(tmp_path):
    f = tmp_path / "a.cfg"
    f.write_text(HEAD + "[convolutional]\nfilters=4\nsize=1\n\n")
    text, _ = netdsl.import_model(f)
    assert "conv 4 1x1\nsigmoid" in text


@pytest.mark.parametrize("body, words", [
    ("[upsample]\nstride=2\n", "is a section netdsl has no layer for"),
    (conv(8, 3) + conv(8, 3, stride=2) + "[route]\nlayers=-2\n" + "[shortcut]\nfrom=-2\n",
     "adds a 8x16x16 layer to a 8x32x32 one: Darknet then adds the smaller map at every s-th position"),
    (conv(12, 3) + conv(8, 3) + "[shortcut]\nfrom=-2\n", "(12 is no multiple of 8)"),
    (conv(8, 3) + conv(8, 3) + "[shortcut]\nfrom=-2\nalpha=0.5\n", "weights its sum (alpha=0.5)"),
    (conv(8, 3) + "[crop]\ncrop_height=16\ncrop_width=16\nnoadjust=1\n", "crops the 32x32 map to its centre 16x16 at inference"),
    (conv(8, 3) + "[crop]\ncrop_height=32\ncrop_width=32\n", "rescales its values to x*2 - 1 at inference"),
    ("[crop]\ncrop_height=48\ncrop_width=32\n", "crops 48x32 from a 32x32 image"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=mish\n", "has activation mish"),
    ("[route]\nlayers=-5\n", "names layer -5, which is not an earlier layer"),
])
def test_what_netdsl_cannot_express_is_refused_by_layer(tmp_path, capsys, body, words):
    f = tmp_path / "bad.cfg"
    f.write_text(HEAD + body)
    with pytest.raises(NetError, match=re.escape(words)):
        netdsl.import_model(f)
    assert main(["summary", str(f)]) == 1
    assert words in capsys.readouterr().err


def test_a_file_that_is_not_a_cfg(tmp_path, capsys):
    f = tmp_path / "x.cfg"
    f.write_text("[net]\nwidth=8\nheight=8\nchannels=1\nthis is not a key\n")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:5:1: error: expected [section] or key=value" in err and "     5 | this is not a key" in err


def _write_weights(path, model, net, cfg_layers):
    """A .weights file in Darknet's order (parser.c's save_weights), from a netdsl model's state:
    header 0.2.0 with an 8-byte `seen`; per layer biases, [bn: scales, means, variances], weights
    (connected: biases, weights, [bn values])."""
    import numpy as np
    p = {k: np.asarray(v) for k, v in model.state_dict().items()}
    out = [np.array([0, 2, 0], "<i4").tobytes(), np.array([1234], "<u8").tobytes()]
    for kind, conv, bn in cfg_layers:
        bias = p[f"{bn}.bias"] if bn else p[f"{conv}.bias"]
        parts = [bias]
        bn_parts = [p[f"{bn}.weight"], p[f"{bn}.running_mean"], p[f"{bn}.running_var"]] if bn else []
        parts += (bn_parts + [p[f"{conv}.weight"]]) if kind == "conv" else ([p[f"{conv}.weight"]] + bn_parts)
        out += [np.ascontiguousarray(x, "<f4").tobytes() for x in parts]
    path.write_bytes(b"".join(out))


def test_darknet_weights_load_in_darknets_order(tmp_path):
    import numpy as np
    cfg = HEAD + conv(8, 3) + "[maxpool]\nsize=2\nstride=2\n\n" + conv(4, 1, act="linear", bn=0) + \
        "[connected]\noutput=5\nactivation=linear\nbatch_normalize=1\n\n[softmax]\n"
    f = tmp_path / "w.cfg"
    f.write_text(cfg)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    rng = np.random.default_rng(0)
    model = netdsl.Model(net, device="cpu", seed=1)
    for name, value in model.state_dict().items():  # distinct numbers everywhere, variances positive
        value[...] = rng.uniform(0.5, 1.5, value.shape) if name.endswith("running_var") else rng.standard_normal(value.shape)
    layers = [("conv", "conv1", "bn1"), ("conv", "conv2", None), ("fc", "fc3", "bn2")]
    _write_weights(tmp_path / "w.weights", model, net, layers)
    text2, state = netdsl.import_model(f, tmp_path / "w.weights")
    assert text2 == text
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    (tmp_path / "short.weights").write_bytes((tmp_path / "w.weights").read_bytes()[:-8])
    with pytest.raises(NetError, match="ends inside the rolling variances of layer"):
        netdsl.import_model(f, tmp_path / "short.weights")
    (tmp_path / "long.weights").write_bytes((tmp_path / "w.weights").read_bytes() + b"\0" * 8)
    with pytest.raises(NetError, match="holds 2 values more than the .cfg's layers take"):
        netdsl.import_model(f, tmp_path / "long.weights")


# --- issue 26: DenseNet and ResNet cfgs, [crop], [shortcut] between different shapes ----------------

def dense_layer(k):
    """pjreddie's densenet201.cfg: a 1x1 bottleneck of 4k, a 3x3 of k, the input routed back beside them."""
    return conv(4 * k, 1) + conv(k, 3) + "[route]\nlayers=-1,-3\n\n"


def test_a_densenet_cfg_comes_back_as_dense_layers(tmp_path):
    k = 8
    cfg = (HEAD + "[crop]\ncrop_height=32\ncrop_width=32\nflip=1\nnoadjust=1\n\n" + conv(16, 3)
           + dense_layer(k) * 3 + conv(16, 1) + "[maxpool]\nsize=2\nstride=2\n\n" + dense_layer(k) * 3
           + conv(10, 1, act="linear", bn=0) + "[avgpool]\n\n[softmax]\n\n[cost]\n")
    f = tmp_path / "dense.cfg"
    f.write_text(cfg)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    # by hand: a conv k*k*cin*cout, its batch norm 2*cout (scales and biases; no bias of the conv's own)
    def dense(c):
        return (c * 4 * k + 2 * 4 * k) + (9 * 4 * k * k + 2 * k)
    stem, transition, head = 27 * 16 + 32, 40 * 16 + 32, 40 * 10 + 10
    assert net.totals().params == stem + sum(dense(16 + i * k) for i in range(3)) * 2 + transition + head == 20_458
    assert text.count("repeat 3 dense_layer") == 2 and "block dense_layer() {\n  concat {" in text
    assert [l.shape for l in net.layers if l.op == "concat"] == [(24, 32, 32), (32, 32, 32), (40, 32, 32),
                                                                  (24, 16, 16), (32, 16, 16), (40, 16, 16)]
    assert net.input_shape == (3, 32, 32)  # the crop keeps the whole map: no layer


def test_an_input_crop_is_how_the_image_is_prepared_the_network_takes_its_size(tmp_path):
    """pjreddie's vgg-16.cfg: [net] 256x256, then [crop] 224x224 (Darknet's crop_layer.c at
    inference: the centre, values x*2 - 1 by default): VGG16 as the paper counts it at 224."""
    def vgg_conv(filters):
        return f"[convolutional]\nfilters={filters}\nsize=3\nstride=1\npad=1\nactivation=relu\n\n"
    pool = "[maxpool]\nsize=2\nstride=2\n\n"
    body = "".join(vgg_conv(f) * n + pool for f, n in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)))
    fcs = "".join(f"[connected]\noutput={n}\nactivation={a}\n\n" for n, a in
                  ((4096, "relu"), (4096, "relu"), (1000, "linear")))
    head = "[net]\nbatch=1\nheight=256\nwidth=256\nchannels=3\n\n"
    f = tmp_path / "vgg-16.cfg"
    f.write_text(head + "[crop]\ncrop_height=224\ncrop_width=224\nflip=1\nexposure=1\nsaturation=1\nangle=0\n\n"
                 + body + fcs + "[softmax]\ngroups=1\n\n[cost]\ntype=sse\n")
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    assert net.input_shape == (3, 224, 224)
    assert net.totals().params == 138_357_544  # torchvision's vgg16
    assert "centre 224x224 of [net]'s 256x256 image, its pixels (in [0, 1]) rescaled to x*2 - 1" in text
    f.write_text(f.read_text().replace("angle=0", "angle=0\nnoadjust=1"))
    text, _ = netdsl.import_model(f)
    assert "centre 224x224 of [net]'s 256x256 image\n" in text


def residual(filters, stride=1):
    """Darknet's resnet cfgs: two 3x3 convs, the shortcut from the block's input (from=-3)."""
    return conv(filters, 3, stride) + conv(filters, 3, act="linear") + "[shortcut]\nfrom=-3\nactivation=leaky\n\n"


def test_a_resnet_cfg_with_shortcuts_between_shapes_is_option_a(tmp_path):
    cfg = (HEAD + conv(16, 3) + residual(16) * 2 + residual(32, 2) + residual(32) + residual(64, 2) + residual(64)
           + "[avgpool]\n\n[connected]\noutput=10\nactivation=linear\n\n[softmax]\n\n[cost]\n")
    f = tmp_path / "res.cfg"
    f.write_text(cfg)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    def c(cin, cout):
        return 9 * cin * cout + 2 * cout
    by_hand = (c(3, 16) + 4 * c(16, 16) + c(16, 32) + 3 * c(32, 32) + c(32, 64) + 3 * c(64, 64) + 64 * 10 + 10)
    assert net.totals().params == by_hand == 172_506  # option A: the shortcuts learn nothing
    assert text.count("shortcut zeropad") == 1  # one block for both downsampling residuals
    assert [(l.shape, l.name.split("/")[-1]) for l in net.layers if l.op == "zeropad"] == [
        ((32, 16, 16), "zeropad"), ((64, 8, 8), "zeropad")]
    assert not [l for l in net.layers if l.op == "conv" and l.shape[0] != 10 and "shortcut" in l.name]


def _darknet_shortcut(add, out):
    """Darknet's shortcut_cpu, loop for loop (w1, h1, c1: the `from` layer; w2, h2, c2: the output)."""
    out = out.copy()
    batch, c1, h1, w1 = add.shape
    _, c2, h2, w2 = out.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    a, o = add.reshape(-1), out.reshape(-1)
    for b in range(batch):
        for k in range(min(c1, c2)):
            for j in range(min(h1, h2)):
                for i in range(min(w1, w2)):
                    o[i * sample + w2 * (j * sample + h2 * (k + c2 * b))] += a[i * stride + w1 * (j * stride + h1 * (k + c1 * b))]
    return o.reshape(out.shape)


@pytest.mark.parametrize("c0, c1", [(8, 4), (4, 8), (4, 4)], ids=["more channels", "fewer", "same"])
def test_shortcut_between_shapes_computes_darknets_sum(tmp_path, c0, c1):
    """1x1 convs of known weights (bias, no activation): a0 = W0 x + b0 (c0 x 8 x 8), a1 = W1 x[::2, ::2]
    + b1 (c1 x 4 x 4), then [shortcut] from=-2: a1 plus a0 as Darknet adds it."""
    import numpy as np
    from netdsl.backend.executor import Model
    cfg = ("[net]\nwidth=8\nheight=8\nchannels=4\n\n" + conv(c0, 1, act="linear", bn=0)
           + conv(c1, 1, stride=2, act="linear", bn=0) + "[shortcut]\nfrom=-2\n")
    f = tmp_path / "s.cfg"
    f.write_text(cfg)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    rng = np.random.default_rng(0)
    convs = [l.name for l in net.layers if l.op == "conv"]
    w0, b0 = rng.standard_normal((c0, 4)).astype(np.float32), rng.standard_normal(c0).astype(np.float32)
    w1, b1 = rng.standard_normal((c1, c0)).astype(np.float32), rng.standard_normal(c1).astype(np.float32)
    state = {f"{convs[0]}.weight": w0.reshape(c0, 4, 1, 1), f"{convs[0]}.bias": b0,
             f"{convs[1]}.weight": w1.reshape(c1, c0, 1, 1), f"{convs[1]}.bias": b1}
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    a0 = np.einsum("oc,nchw->nohw", w0, x) + b0[:, None, None]
    a1 = np.einsum("oc,nchw->nohw", w1, a0[:, :, ::2, ::2]) + b1[:, None, None]
    np.testing.assert_allclose(m(x), _darknet_shortcut(a0, a1), rtol=1e-5, atol=1e-5)
