"""Caffe .prototxt import (issue 16). The files are written here (or kept small in tests/data/)
from Caffe's public prototxt format: caffe.proto's field names and defaults, and the layer code's
conventions (pooling rounds up; LRN's k defaults to 1; BatchNorm + Scale; in-place layers)."""
from pathlib import Path

import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main

DATA = Path(__file__).resolve().parent / "data"


def test_bvlc_alexnet_deploy_has_the_published_counts():
    text, _ = netdsl.import_model(DATA / "bvlc_alexnet_deploy.prototxt")
    net = netdsl.compile_source(text)
    reference = netdsl.load(DATA.parent.parent / "nets" / "alexnet2012.net")  # BVLC's counts, two towers as groups
    assert net.name == "AlexNet"
    assert (net.totals().params, net.totals().macs) == (60_965_224, 724_406_816) == \
        (reference.totals().params, reference.totals().macs)
    assert [l.shape for l in net.layers] == [l.shape for l in reference.layers]
    assert "lrn 5 alpha=0.0001 beta=0.75 k=1" in text  # Caffe's k defaults to 1
    assert text.count("pool max 3x3 /2 ceil") == 3 and "pool5: pool max 3x3 /2 ceil" in text
    assert "drop6: dropout 0.5" in text and "prob: softmax" in text  # the source's names where netdsl's differ


def _layer(name, kind, bottoms, tops, body=""):
    b = "".join(f'  bottom: "{x}"\n' for x in bottoms)
    t = "".join(f'  top: "{x}"\n' for x in tops)
    return f'layer {{\n  name: "{name}"\n  type: "{kind}"\n{b}{t}{body}}}\n'


def _conv(name, bottom, n, k, s=1, p=0, bias=True):
    body = f"  convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p}" + \
           ("" if bias else " bias_term: false") + " }\n"
    return _layer(name, "Convolution", [bottom], [name], body)


@pytest.mark.parametrize("style", ["input_dim", "input_shape", "Input layer"])
def test_the_three_ways_a_deploy_file_declares_its_input(tmp_path, style):
    head = {"input_dim": 'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 32\ninput_dim: 32\n',
            "input_shape": 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n',
            "Input layer": _layer("data", "Input", [], ["data"],
                                  "  input_param { shape: { dim: 1 dim: 3 dim: 32 dim: 32 } }\n")}[style]
    f = tmp_path / "net.prototxt"
    f.write_text('name: "tiny"\n' + head + _conv("conv1", "data", 8, 3, p=1) + _layer("relu1", "ReLU", ["conv1"], ["conv1"]))
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    assert net.input_shape == (3, 32, 32) and net.layer("conv1").shape == (8, 32, 32)


def _bottleneck(prefix, bottom, c, stride, project):
    """A ResNet bottleneck as Caffe's ResNet-50 prototxt writes it: BatchNorm + Scale, in place."""
    out = []

    def cbr(name, src, n, k, s, p, relu=True):
        out.append(_conv(name, src, n, k, s, p, bias=False))
        out.append(_layer(f"bn_{name}", "BatchNorm", [name], [name], "  batch_norm_param { use_global_stats: true }\n"))
        out.append(_layer(f"scale_{name}", "Scale", [name], [name], "  scale_param { bias_term: true }\n"))
        if relu:
            out.append(_layer(f"{name}_relu", "ReLU", [name], [name]))
    cbr(f"{prefix}_branch2a", bottom, c, 1, 1, 0)
    cbr(f"{prefix}_branch2b", f"{prefix}_branch2a", c, 3, stride, 1)
    cbr(f"{prefix}_branch2c", f"{prefix}_branch2b", 4 * c, 1, 1, 0, relu=False)
    short = bottom
    if project:
        cbr(f"{prefix}_branch1", bottom, 4 * c, 1, stride, 0, relu=False)
        short = f"{prefix}_branch1"
    out.append(_layer(prefix, "Eltwise", [short, f"{prefix}_branch2c"], [prefix]))
    out.append(_layer(f"{prefix}_relu", "ReLU", [prefix], [prefix]))
    return "".join(out)


def test_batchnorm_and_scale_fold_into_bn_and_the_bottleneck_comes_back(tmp_path):
    body = 'name: "ResNet-mini"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 56 dim: 56 }\n'
    body += _conv("conv1", "data", 64, 3, 1, 1, bias=False)
    body += _layer("bn_conv1", "BatchNorm", ["conv1"], ["conv1"]) + _layer("scale_conv1", "Scale", ["conv1"], ["conv1"],
                                                                           "  scale_param { bias_term: true }\n")
    body += _layer("conv1_relu", "ReLU", ["conv1"], ["conv1"])
    blocks = [("res2a", "conv1", 64, 1, True), ("res2b", "res2a", 64, 1, False), ("res2c", "res2b", 64, 1, False),
              ("res3a", "res2c", 128, 2, True), ("res3b", "res3a", 128, 1, False)]
    for b in blocks:
        body += _bottleneck(*b)
    body += _layer("pool5", "Pooling", ["res3b"], ["pool5"], "  pooling_param { pool: AVE global_pooling: true }\n")
    body += _layer("fc10", "InnerProduct", ["pool5"], ["fc10"], "  inner_product_param { num_output: 10 }\n")
    body += _layer("prob", "Softmax", ["fc10"], ["prob"])
    f = tmp_path / "resnet_mini.prototxt"
    f.write_text(body)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    assert "block bottleneck(c, s=1)" in text and "shortcut" in text and "Scale" not in text
    assert "repeat 3 bottleneck 64" in text and "bottleneck 128 s=2" in text and "bottleneck 128\n" in text
    bns = [l for l in net.layers if l.op == "bn"]
    assert len(bns) == 1 + 3 * 5 + 2 and all(l.params == 2 * l.shape[0] for l in bns)  # Scale's gamma, beta
    assert net.layer("fc10").shape == (10,)


def _inception(name, bottom, c):
    """GoogLeNet's inception module as BVLC's train_val.prototxt names it."""
    parts = [("1x1", [(c[0], 1, 0)]), ("3x3", [(c[1], 1, 0), (c[2], 3, 1)]), ("5x5", [(c[3], 1, 0), (c[4], 5, 2)])]
    out, tops = [], []
    for branch, convs in parts:
        src = bottom
        for i, (n, k, p) in enumerate(convs):
            lname = f"{name}/{branch}" if i == len(convs) - 1 else f"{name}/{branch}_reduce"
            out.append(_conv(lname, src, n, k, 1, p))
            out.append(_layer(f"{name}/relu_{lname.split('/')[1]}", "ReLU", [lname], [lname]))
            src = lname
        tops.append(src)
    out.append(_layer(f"{name}/pool", "Pooling", [bottom], [f"{name}/pool"],
                      "  pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 }\n"))
    out.append(_conv(f"{name}/pool_proj", f"{name}/pool", c[5], 1))
    out.append(_layer(f"{name}/relu_pool_proj", "ReLU", [f"{name}/pool_proj"], [f"{name}/pool_proj"]))
    tops.append(f"{name}/pool_proj")
    out.append(_layer(f"{name}/output", "Concat", tops, [f"{name}/output"]))
    return "".join(out)


def test_a_train_val_file_with_an_auxiliary_head(tmp_path):
    body = 'name: "GoogleNet-mini"\n'
    body += _layer("data", "Data", [], ["data", "label"], '  include { phase: TRAIN }\n  transform_param { mirror: true '
                   'crop_size: 28 }\n  data_param { source: "train_lmdb" batch_size: 32 backend: LMDB }\n')
    body += _layer("data", "Data", [], ["data", "label"], '  include { phase: TEST }\n  transform_param { crop_size: 28 }\n')
    body += _conv("conv1", "data", 64, 3, 1, 1) + _layer("relu1", "ReLU", ["conv1"], ["conv1"])
    body += _layer("pool1", "Pooling", ["conv1"], ["pool1"], "  pooling_param { pool: MAX kernel_size: 3 stride: 2 }\n")
    body += _inception("inception_3a", "pool1", (64, 96, 128, 16, 32, 32))
    body += _inception("inception_3b", "inception_3a/output", (128, 128, 192, 32, 96, 64))
    body += _layer("loss1/ave_pool", "Pooling", ["inception_3a/output"], ["loss1/ave_pool"],
                   "  pooling_param { pool: AVE kernel_size: 5 stride: 3 }\n")
    body += _layer("loss1/fc", "InnerProduct", ["loss1/ave_pool"], ["loss1/fc"], "  inner_product_param { num_output: 10 }\n")
    body += _layer("loss1/loss", "SoftmaxWithLoss", ["loss1/fc", "label"], ["loss1/loss1"], "  loss_weight: 0.3\n")
    body += _layer("pool5", "Pooling", ["inception_3b/output"], ["pool5"], "  pooling_param { pool: AVE global_pooling: true }\n")
    body += _layer("loss3/classifier", "InnerProduct", ["pool5"], ["loss3/classifier"],
                   "  inner_product_param { num_output: 10 }\n")
    body += _layer("loss3/loss3", "SoftmaxWithLoss", ["loss3/classifier", "label"], ["loss3/loss3"], "  loss_weight: 1\n")
    body += _layer("loss3/top-1", "Accuracy", ["loss3/classifier", "label"], ["loss3/top-1"], "  include { phase: TEST }\n")
    f = tmp_path / "train_val.prototxt"
    f.write_text(body)
    text, _ = netdsl.import_model(f)
    net = netdsl.compile_source(text)
    assert net.input_shape == (3, 28, 28)
    assert net.layer("pool1").shape == (64, 14, 14)  # Caffe rounds up: ceil((28 - 3)/2) + 1 = 14 (floor: 13)
    assert "inception_3a: inception 64 96 128 16 32 32" in text and "inception_3b: inception" in text
    assert len(net.outputs) == 2 and "side {" in text
    assert net.layer(net.outputs[1][1]).shape == (10,)
    assert "fc 10  # loss3/classifier" in text  # a source name that cannot be a label, as a comment


@pytest.mark.parametrize("content, words, place", [
    ('name: "x"\ninput: "data"\ninput_dim: 1\nlayer {\n  name: "c" type: "Convolution"\n  bottom "data"\n}\n',
     "this is not Caffe's prototxt text format here", ":6:10:"),
    ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\nlayer { name: "w" type: "Warp" bottom: "data" top: "w" }\n',
     "layer 'w' (Warp) is of type Warp, which netdsl has no layer for", ":3:"),
    ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
     'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 3 kernel_size: 1 } }\n'
     'layer { name: "e" type: "Eltwise" bottom: "data" bottom: "c1" top: "e" eltwise_param { operation: PROD } }\n',
     "layer 'e' (Eltwise) combines by PROD", ":4:"),
    ('name: "old"\nlayers { name: "conv1" type: CONVOLUTION }\n', "legacy V1 format", None),
    ('name: "none"\n', "declares no input", None),
])
def test_bad_prototxt_files_are_refused_with_the_place(tmp_path, capsys, content, words, place):
    f = tmp_path / "bad.prototxt"
    f.write_text(content)
    with pytest.raises(NetError, match=words.replace("(", r"\(").replace(")", r"\)")):
        netdsl.import_model(f)
    assert main(["summary", str(f)]) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    if place:
        assert f"{f}{place}" in err
    if place == ":6:10:":
        assert '     6 |   bottom "data"\n       |          ^' in err  # a caret under the culprit


def _caffemodel(path, layers):
    """A .caffemodel written with the same caffe.proto subset netdsl reads (caffemodel.py)."""
    from netdsl.interchange.caffemodel import messages
    net_cls, _ = messages()
    net = net_cls(name="mini")
    for name, blobs in layers:
        layer = net.layer.add(name=name)
        for array in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.astype("float32").ravel().tolist())
    path.write_bytes(net.SerializeToString())


def test_caffemodel_weights_give_the_same_outputs(tmp_path, capsys):
    import numpy as np
    proto = ('name: "mini"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
             + _conv("conv1", "data", 4, 3, 1, 1, bias=False)
             + _layer("bn1", "BatchNorm", ["conv1"], ["conv1"]) + _layer("sc1", "Scale", ["conv1"], ["conv1"],
                                                                        "  scale_param { bias_term: true }\n")
             + _layer("relu1", "ReLU", ["conv1"], ["conv1"])
             + _layer("pool1", "Pooling", ["conv1"], ["pool1"], "  pooling_param { pool: MAX kernel_size: 3 stride: 2 }\n")
             + _layer("fc2", "InnerProduct", ["pool1"], ["fc2"], "  inner_product_param { num_output: 5 }\n"))
    f = tmp_path / "mini.prototxt"
    f.write_text(proto)
    rng = np.random.default_rng(0)
    w, mean, var = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    gamma, beta, fw, fb = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal((5, 64)), rng.standard_normal(5)
    factor = 4.0  # Caffe keeps sums: mean * factor, var * factor, and the factor
    _caffemodel(tmp_path / "mini.caffemodel", [("conv1", [w]), ("bn1", [mean * factor, var * factor, np.array([factor])]),
                                               ("sc1", [gamma, beta]), ("fc2", [fw, fb])])
    text, state = netdsl.import_model(f, tmp_path / "mini.caffemodel")
    # the same network written by hand in netdsl, given the same numbers
    ref = netdsl.compile_source("input 3x8x8\nconv 4 3x3 pad 1 nobias\nbn\nrelu\npool max 3x3 /2 ceil\nfc 5")
    a = netdsl.Model(ref, device="cpu")
    a.load_state_dict({"conv1.weight": w, "bn1.weight": gamma, "bn1.bias": beta, "bn1.running_mean": mean,
                       "bn1.running_var": var, "fc2.weight": fw, "fc2.bias": fb})
    b = netdsl.Model(netdsl.compile_source(text), device="cpu")
    b.load_state_dict(state)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(b(x), a(x), rtol=1e-5, atol=1e-5)
    out = tmp_path / "mini.net"
    assert main(["import", str(f), "--caffemodel", str(tmp_path / "mini.caffemodel"), "-o", str(out),
                 "--weights", str(tmp_path / "mini.safetensors")]) == 0
    assert main(["import", str(f), "-o", str(out), "--weights", str(tmp_path / "w.safetensors")]) == 1
    assert "carries no weights" in capsys.readouterr().err
    _caffemodel(tmp_path / "partial.caffemodel", [("conv1", [w])])
    with pytest.raises(NetError, match="has no weights for layer 'bn1'"):
        netdsl.import_model(f, tmp_path / "partial.caffemodel")
    (tmp_path / "noise.caffemodel").write_bytes(b"\xff" * 64)
    with pytest.raises(NetError, match="is not a readable .caffemodel"):
        netdsl.import_model(f, tmp_path / "noise.caffemodel")
