"""ONNX import (issue 16, first part): a model file back to netdsl text and a state dict.

Round trip: every network in nets/, exported and imported again, has the original's per-layer
shapes, parameters and MACs, the same outputs on the same weights, and re-exports to the same
ONNX nodes (types and attributes, in order). Models netdsl did not write (built here with
onnx.helper: MatMul + Add, Reshape, auto_pad, Constant, Identity, Sum) import to networks whose
outputs equal onnxruntime's on the source file."""
from pathlib import Path

import numpy as np
import pytest

import onnx  # noqa: E402  (a netdsl dependency)
import onnxruntime as ort  # noqa: E402  (a dev dependency)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetError  # noqa: E402
from netdsl.backend.executor import Model  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.init import initial_state  # noqa: E402
# netdsl's own exports come back as their embedded source (tests/test_roundtrip.py); these tests
# use them as models to read, so they call the importer that reads the graph alone
from netdsl.interchange.onnx_import import import_onnx  # noqa: E402

NETS = sorted((Path(__file__).resolve().parent.parent / "nets").glob("*.net"))


def _nodes(model):
    """What 'the same export, node for node' compares: op types and attributes, in order."""
    return [(n.op_type, sorted((a.name, str(helper.get_attribute_value(a))) for a in n.attribute))
            for n in model.graph.node]


@pytest.mark.parametrize("path", NETS, ids=[p.stem for p in NETS])
def test_round_trip(tmp_path, path):
    net = netdsl.load(path)
    state = initial_state(net.graph, seed=1)
    first = netdsl.export_onnx(net, tmp_path / "a.onnx", state)
    text, imported_state = import_onnx(tmp_path / "a.onnx")
    again = netdsl.compile_source(text)
    assert [(l.op, l.shape, l.weights, l.biases, l.macs) for l in again.layers] == \
        [(l.op, l.shape, l.weights, l.biases, l.macs) for l in net.layers]
    assert again.totals() == net.totals()
    assert [name for name, _ in again.outputs] == [name for name, _ in net.outputs]
    a, b = Model(net, device="cpu"), Model(again, device="cpu")
    a.load_state_dict(state)
    b.load_state_dict(imported_state)
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape)).astype(np.float32)
    want, got = a.forward(x), b.forward(x)
    for name in want:
        assert float(np.abs(got[name] - want[name]).max()) <= 1e-5 * float(np.abs(want[name]).max())
    assert _nodes(netdsl.export_onnx(again, None, imported_state)) == _nodes(first)
    assert netdsl.compile_source(text).totals() == again.totals()  # the text compiles as it is


def _model(nodes, inits, in_shape, out_shape, opset=13, weights_as_inputs=False):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])]
    tensors = [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k) for k, v in inits.items()]
    if weights_as_inputs:  # old IR versions listed every initializer as a graph input too
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in tensors]
    graph = helper.make_graph(nodes, "external", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])],
                              initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def _against_ort(tmp_path, model, in_shape):
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path))
    text, state = netdsl.import_model(path)
    net = netdsl.compile_source(text)
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((3, *in_shape)).astype(np.float32)
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = m(x)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    return text


@pytest.mark.parametrize("weights_as_inputs", [False, True])
def test_a_model_netdsl_did_not_write(tmp_path, weights_as_inputs):
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
             "w2": rng.standard_normal((4, 4, 3, 3)), "shape": np.array([0, -1], np.int64),
             "m": rng.standard_normal((4 * 4 * 4, 5)), "bias": rng.standard_normal(5)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_a", kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu_a"),
        helper.make_node("Identity", ["r1"], ["r1i"], name="id"),
        helper.make_node("Conv", ["r1i", "w2"], ["c2"], name="conv_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sum", ["c2", "r1i"], ["s"], name="residual"),
        helper.make_node("MaxPool", ["s"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["flat"], name="flatten_it"),
        helper.make_node("MatMul", ["flat", "m"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "bias"], ["logits"], name="fc_bias"),
        helper.make_node("Softmax", ["logits"], ["y"], name="prob", axis=1),
    ]
    text = _against_ort(tmp_path, _model(nodes, inits, (3, 8, 8), (5,), weights_as_inputs=weights_as_inputs), (3, 8, 8))
    assert "conv 4 3x3 pad 1" in text and "add {" in text and "shortcut" in text and "fc 5" in text


@pytest.mark.parametrize("node, words", [
    (helper.make_node("Conv", ["x", "w"], ["y"], name="dil", kernel_shape=[3, 3], dilations=[2, 2]),
     "node 'dil' (Conv) has dilations [2, 2]"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="asym", kernel_shape=[3, 3], pads=[1, 1, 0, 0]),
     "node 'asym' (Conv) pads [1, 1, 0, 0] put more padding before the input than after"),
    (helper.make_node("Elu", ["x"], ["y"], name="elu"), "node 'elu' has op Elu, which netdsl has no layer for"),
])
def test_what_netdsl_cannot_express_is_refused_by_node(tmp_path, capsys, node, words):
    inits = {"w": np.ones((2, 2, 3, 3), np.float32)} if node.op_type == "Conv" else {}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(NetError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        netdsl.import_model(path)
    assert main(["summary", str(path)]) == 1
    assert words in capsys.readouterr().err


def test_damaged_files_are_refused(tmp_path, capsys):
    net = netdsl.load(NETS[0].parent / "lenet5.net")
    good = netdsl.export_onnx(net, None).SerializeToString()
    for name, data in (("cut.onnx", good[: len(good) // 3]), ("noise.onnx", bytes(range(256)) * 4), ("empty.onnx", b"")):
        (tmp_path / name).write_bytes(data)
        assert main(["import", str(tmp_path / name), "-o", str(tmp_path / "x.net")]) == 1
        err = capsys.readouterr().err
        assert f"{tmp_path / name} is not a readable ONNX model" in err and "Traceback" not in err
    assert not (tmp_path / "x.net").exists()


def test_import_command_writes_text_and_weights_that_train_and_export(tmp_path, capsys):
    net = netdsl.load(NETS[0].parent / "lenet5.net")
    netdsl.export_onnx(net, tmp_path / "l.onnx", initial_state(net.graph, 3))
    assert main(["import", str(tmp_path / "l.onnx"), "-o", str(tmp_path / "l.net"), "--weights",
                 str(tmp_path / "l.safetensors")]) == 0
    said = capsys.readouterr().out
    assert "61,706 parameters, 416,520 MACs" in said
    assert main(["check", str(tmp_path / "l.net")]) == 0
    m = Model(netdsl.load(tmp_path / "l.net"), device="cpu", seed=9)
    m.load(tmp_path / "l.safetensors")
    np.testing.assert_array_equal(m.parameters()["c1.weight"], initial_state(net.graph, 3)["c1.weight"])  # its labels back
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "l.onnx"), "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == 61706


def _import_text(tmp_path, stem):
    net = netdsl.load(NETS[0].parent / f"{stem}.net")
    netdsl.export_onnx(net, tmp_path / f"{stem}.onnx")
    text, _ = import_onnx(tmp_path / f"{stem}.onnx")
    return net, text


def _calls(text, block):
    """(widths, stride) of every instance of `block`, repeats unrolled, in order."""
    out = []
    for line in text.splitlines():
        words = line.split(": ")[-1].split()
        count = 1
        if words[:1] == ["repeat"]:
            count, words = int(words[1]), words[2:]
        if words[:1] == [block]:
            stride = next((w.split("=")[1] for w in words if w.startswith("s=")), "1")
            out += [(tuple(int(w) for w in words[1:] if "=" not in w), int(stride))] * count
    return out


def test_googlenet_comes_back_as_one_inception_block_with_the_papers_widths(tmp_path):
    _, text = _import_text(tmp_path, "googlenet")
    assert text.count("block ") == 1 and "block inception(c1, c2, c3, c4, c5, c6) {" in text
    widths = [w for w, _ in _calls(text, "inception")]
    assert widths == [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64),
                      (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
                      (256, 160, 320, 32, 128, 128), (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]
    assert "inception3a: inception 64 96 128 16 32 32" in text  # the source's names as labels
    assert "aux1: side {" in text and "aux2: side {" in text


@pytest.mark.parametrize("stem, stages", [("resnet50", (3, 4, 6, 3)), ("resnet101", (3, 4, 23, 3)),
                                          ("resnet152", (3, 8, 36, 3))])
def test_resnets_come_back_as_one_bottleneck_block_in_their_stages(tmp_path, stem, stages):
    _, text = _import_text(tmp_path, stem)
    assert text.count("block ") == 1
    assert ("block bottleneck(c, s=1) {\n  add {\n    { conv c 1x1 nobias; bn; relu; conv c 3x3 /s pad 1 nobias; bn; "
            "relu; conv 4*c 1x1 nobias; bn }\n    shortcut\n  }\n  relu\n}") in text
    calls = _calls(text, "bottleneck")
    counts = [sum(1 for w, _ in calls if w == (c,)) for c in (64, 128, 256, 512)]
    assert tuple(counts) == stages
    assert [s for _, s in calls] == [s for n, c in zip(stages, (64, 128, 256, 512)) for s in [1 if c == 64 else 2] + [1] * (n - 1)]


def test_vgg_comes_back_as_plain_lines(tmp_path):
    net, text = _import_text(tmp_path, "vgg16")
    assert "block" not in text and text.count("conv 64 3x3 pad 1") == 2


@pytest.mark.parametrize("stem", ["googlenet", "resnet18", "lenet5"])
def test_formatting_again_changes_nothing(tmp_path, stem):
    _, first = _import_text(tmp_path, stem)
    again = netdsl.compile_source(first)
    netdsl.export_onnx(again, tmp_path / f"{stem}.onnx")
    second, _ = import_onnx(tmp_path / f"{stem}.onnx")
    assert second.splitlines()[1:] == first.splitlines()[1:]
    assert main(["check", "-q", str(_write(tmp_path, first))]) == 0


def _write(tmp_path, text):
    p = tmp_path / "imported.net"
    p.write_text(text)
    return p


@pytest.mark.parametrize("opset", [7, 9, 11])
def test_older_opsets_forms(tmp_path, opset):
    """Attributes where later opsets take inputs (Dropout's ratio), BatchNormalization's spatial
    (opsets 7-8), Reshape's shape as an input (from 5): an older model imports and matches
    onnxruntime."""
    rng = np.random.default_rng(opset)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4),
             "s": rng.uniform(0.5, 1.5, 4), "o": rng.standard_normal(4), "m": rng.standard_normal(4),
             "v": rng.uniform(0.5, 2, 4), "fw": rng.standard_normal((3, 4 * 3 * 3)), "fb": rng.standard_normal(3),
             "shape": np.array([0, -1], np.int64)}
    bn_attrs = {"epsilon": 1e-3, "momentum": 0.9}
    if opset < 9:
        bn_attrs["spatial"] = 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"], name="bn", **bn_attrs),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["p"], ["d"], name="drop", ratio=0.3),
        helper.make_node("Reshape", ["d", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="prob", axis=1),
    ]
    model = _model(nodes, inits, (3, 6, 6), (3,), opset=opset)
    model.ir_version = 3 if opset < 9 else 4
    text = _against_ort(tmp_path, model, (3, 6, 6))
    assert "bn eps=0.001" in text and "dropout 0.3" in text and "fc 3" in text


def test_constants_computed_from_a_shape_fold_away(tmp_path):
    rng = np.random.default_rng(2)
    inits = {"m": rng.standard_normal((12, 5)), "bshape": np.array([5], np.int64)}
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=1),
             helper.make_node("MatMul", ["f", "m"], ["mm"], name="fc"),
             helper.make_node("ConstantOfShape", ["bshape"], ["bias"], name="zeros",
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["mm", "bias"], ["y"], name="fc_bias")]
    text = _against_ort(tmp_path, _model(nodes, inits, (3, 2, 2), (5,)), (3, 2, 2))
    assert "fc 5" in text and "flatten" not in text
