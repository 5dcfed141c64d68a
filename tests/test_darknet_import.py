"""Darknet .cfg import (issue 16). The files are written here from Darknet's public cfg format
(parser.c's keys and defaults: pad=1 is size/2, maxpool's padding is size-1 split floor(p/2)
before and the rest after, the default activation is logistic, leaky's slope is 0.1)."""
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
    (conv(8, 3) + conv(8, 3, stride=2) + "[shortcut]\nfrom=-2\n", "adds a 8x32x32 layer to a 8x16x16 one"),
    (conv(8, 3) + conv(8, 3) + "[route]\nlayers=-1,-2\n",
     "concatenates the layer its branches leave from with a later one"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=mish\n", "has activation mish"),
    ("[route]\nlayers=-5\n", "names layer -5, which is not an earlier layer"),
])
def test_what_netdsl_cannot_express_is_refused_by_layer(tmp_path, capsys, body, words):
    f = tmp_path / "bad.cfg"
    f.write_text(HEAD + body)
    with pytest.raises(NetError, match=words.replace("(", r"\(").replace(")", r"\)")):
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
