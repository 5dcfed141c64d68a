"""The zoo's ops read back from ONNX (issue 26): netdsl's own exports of DenseNet-121 and MobileNet
v2/v3 through the ordinary importer (the graph alone, not the round trip's embedded source) come
back as their blocks with torchvision's published counts, and compute what onnxruntime computes
from the exported file; graphs built here with onnx.helper (squeeze-and-excitation with convs or
with fcs, x * Sigmoid(x), Clip(0, 6), HardSigmoid(1/6, 1/2), HardSwish) import to the zoo's ops,
and what has no exact netdsl layer is refused by node with the reason.

The big nets run at 3x32x32, which keeps every layer (a global pool precedes the classifier, so
the parameters do not depend on the map size)."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import netdsl
from netdsl import NetError
from netdsl.backend.executor import Model
from netdsl.init import initial_state
from netdsl.interchange.onnx_import import import_onnx

ZOO = Path(__file__).resolve().parent.parent / "nets" / "zoo"


def _small(name: str):
    return netdsl.compile_source((ZOO / f"{name}.net").read_text().replace("input 3x224x224", "input 3x32x32"))


def _agrees_with_onnxruntime(path, text, state, shape, seed=0):
    """The imported network on the imported weights against onnxruntime on the file (1e-4 of the largest value)."""
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    m = Model(netdsl.compile_source(text), device="cpu")
    m.load_state_dict(state)
    got = m(x).reshape(want.shape)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())


# published: torchvision's parameter counts (the table)
EXPORTS = [
    ("densenet121", 7_978_856, ["repeat 6 dense_layer", "repeat 12 dense_layer", "repeat 24 dense_layer",
                                "repeat 16 dense_layer"]),
    ("mobilenet_v2", 3_504_872, ["relu6", "groups 960"]),
    ("mobilenet_v3_large", 5_483_032, ["hswish", "hsigmoid", "gate {"]),
]


@pytest.mark.parametrize("name,params,words", EXPORTS, ids=[e[0] for e in EXPORTS])
def test_an_export_imports_back_as_its_blocks(tmp_path, name, params, words):
    net = _small(name)
    state = initial_state(net.graph, seed=3)
    netdsl.export_onnx(net, tmp_path / "m.onnx", state)
    text, imported = import_onnx(tmp_path / "m.onnx")
    back = netdsl.compile_source(text)
    assert back.totals().params == net.totals().params == params
    assert back.totals().macs == net.totals().macs
    assert [l.op for l in back.layers].count("concat") == [l.op for l in net.layers].count("concat")
    assert [l.op for l in back.layers].count("gate") == [l.op for l in net.layers].count("gate")
    for word in words:
        assert word in text, word
    if name == "densenet121":  # DenseNet's dense layer: the block's input is one branch of the concat
        assert "block dense_layer() {\n  concat {\n    shortcut\n" in text
        assert len([l for l in back.layers if l.op == "concat"]) == 6 + 12 + 24 + 16
    if name == "mobilenet_v3_large":  # squeeze-and-excitation in the 8 bottlenecks that have it
        assert len([l for l in back.layers if l.op == "gate"]) == 8
    _agrees_with_onnxruntime(tmp_path / "m.onnx", text, imported, net.input_shape)


# --- graphs built here --------------------------------------------------------------------------------

def _save(tmp_path, nodes, inits, in_shape, out_shape, opset=13, name="m"):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _w(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def test_squeeze_and_excitation_with_convs_and_hard_sigmoid(tmp_path):
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["a"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["p"]),
             helper.make_node("Conv", ["p", "w1", "b1"], ["s1"], kernel_shape=[1, 1]),
             helper.make_node("Clip", ["s1", "lo", "hi"], ["r"]),  # relu6
             helper.make_node("Conv", ["r", "w2", "b2"], ["s2"], kernel_shape=[1, 1]),
             helper.make_node("HardSigmoid", ["s2"], ["g"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["g", "h"], ["y"])]  # the gate first: the map is found whichever order
    inits = {"w0": _w(rng, 8, 3, 3, 3), "w1": _w(rng, 2, 8, 1, 1), "b1": _w(rng, 2), "w2": _w(rng, 8, 2, 1, 1),
             "b2": _w(rng, 8), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    path = _save(tmp_path, nodes, inits, [3, 6, 6], [8, 6, 6], opset=14)
    text, state = import_onnx(path)
    assert "gate {\n  shortcut\n  { pool avg global; conv 2 1x1; relu6; conv 8 1x1; hsigmoid }\n}" in text
    assert "hswish" in text
    _agrees_with_onnxruntime(path, text, state, (3, 6, 6))


def test_squeeze_and_excitation_with_fcs_and_silu(tmp_path):
    """EfficientNet's SiLU written as x * Sigmoid(x), and an fc gate made N x C x 1 x 1 by Unsqueeze."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Sigmoid", ["x"], ["sx"]),
             helper.make_node("Mul", ["sx", "x"], ["h"]),  # silu, the sigmoid first
             helper.make_node("GlobalAveragePool", ["h"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["s1"], transB=1),
             helper.make_node("Relu", ["s1"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["s2"], transB=1),
             helper.make_node("Sigmoid", ["s2"], ["g"]),
             helper.make_node("Unsqueeze", ["g", "axes"], ["g4"]),
             helper.make_node("Mul", ["h", "g4"], ["y"])]
    inits = {"w1": _w(rng, 2, 4), "b1": _w(rng, 2), "w2": _w(rng, 4, 2), "b2": _w(rng, 4),
             "axes": np.array([2, 3], np.int64)}
    path = _save(tmp_path, nodes, inits, [4, 5, 5], [4, 5, 5])
    text, state = import_onnx(path)
    assert text.count("silu") == 1 and "sigmoid" in text
    assert "gate {\n  shortcut\n  { pool avg global; fc 2; relu; fc 4; sigmoid }\n}" in text
    _agrees_with_onnxruntime(path, text, state, (4, 5, 5))


def test_clip_without_a_maximum_is_relu_and_without_bounds_the_identity(tmp_path):
    nodes = [helper.make_node("Clip", ["x", "lo"], ["a"]), helper.make_node("Clip", ["a"], ["y"])]
    path = _save(tmp_path, nodes, {"lo": np.array(0, np.float32)}, [3, 4, 4], [3, 4, 4])
    text, state = import_onnx(path)
    assert text.strip().splitlines()[-1] == "relu" and "clip" not in text.lower().replace("clip.onnx", "")
    _agrees_with_onnxruntime(path, text, state, (3, 4, 4))


@pytest.mark.parametrize("node, inits, words", [
    (helper.make_node("HardSigmoid", ["x"], ["y"]), {}, "has alpha 0.2 and beta 0.5"),  # ONNX's default alpha
    (helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
     {"lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)}, "clips to [-1, 1]"),
    (helper.make_node("Mul", ["x", "k"], ["y"]), {"k": np.ones((3, 1, 1), np.float32)}, "multiplies by a constant"),
    (helper.make_node("Mul", ["x", "x"], ["y"]), {}, "multiplies 3x4x4 by 3x4x4"),
])
def test_what_has_no_exact_layer_is_refused_by_node(tmp_path, node, inits, words):
    node.name = "the_node"
    path = _save(tmp_path, [node], inits, [3, 4, 4], [3, 4, 4])
    with pytest.raises(NetError, match=words.replace("[", r"\[").replace("]", r"\]")) as err:
        import_onnx(path)
    assert "the_node" in err.value.message


def test_an_unsqueezed_vector_read_by_anything_but_a_gate_is_refused(tmp_path):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Unsqueeze", ["f", "axes"], ["u"]), helper.make_node("Relu", ["u"], ["y"], name="after")]
    path = _save(tmp_path, nodes, {"axes": np.array([2, 3], np.int64)}, [3, 4, 4], [3, 1, 1])
    with pytest.raises(NetError, match="a vector made Cx1x1") as err:
        import_onnx(path)
    assert "after" in err.value.message and "squeeze-and-excitation gate" in err.value.hint
