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
