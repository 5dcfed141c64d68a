"""ONNX's own node tests for the ops netdsl imports (issue 16): each passes, or is refused with
a clear reason (an attribute or form netdsl does not support); none gives a wrong answer.

The cases are the ones the `onnx` package generates (onnx.backend.test.case.node; this wheel
ships no data/node folder, and the classic-CNN model tests need a download, so they are not
run here). Each single-node model is imported as netdsl text, with the test's own values for
inputs after the first bound as constants (ONNX's conv tests feed their weights as inputs), and
run by netdsl's kernels; the result is compared at the ONNX runner's tolerances.

The zoo's ops (issue 26): HardSwish, HardSigmoid, Clip, Mul and Sigmoid are in the table too. Their
node tests use inputs of rank 1 or 3, which netdsl reads as a batch of vectors (the op works value by
value, so the answer is the same values); the forms those tests never take but the zoo's nets use
(Clip(0, 6), HardSigmoid(1/6, 1/2), Mul of a map by a per-channel factor) are added below as cases
of the same shape, their expected values computed by onnx's own reference evaluator."""
import warnings

import numpy as np
import pytest

import onnx  # noqa: E402  (a netdsl dependency)
from onnx import numpy_helper  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetError  # noqa: E402
from netdsl.backend.executor import Model  # noqa: E402

OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "BatchNormalization",
       "Gemm", "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Concat", "Add", "Sum", "Softmax", "Flatten", "Reshape",
       "Dropout", "HardSwish", "HardSigmoid", "Clip", "Mul")
# ops that work value by value: a test input of another rank runs as a batch of vectors
ELEMENTWISE = ("Relu", "LeakyRelu", "Tanh", "Sigmoid", "HardSwish", "HardSigmoid", "Clip")


def _zoo_cases():
    """Cases in the node tests' form (name, model, data_sets) for the forms the zoo uses, expected
    values from onnx.reference (ONNX's Python reference implementation, not netdsl's code)."""
    from types import SimpleNamespace

    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    x = np.random.default_rng(0).uniform(-8, 8, (2, 3, 4, 4)).astype(np.float32)
    graphs = {
        "zoo_clip_0_6": [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        "zoo_hardsigmoid_sixth_half": [helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)],
        "zoo_mul_per_channel_broadcast": [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                                          helper.make_node("Sigmoid", ["p"], ["g"]),
                                          helper.make_node("Mul", ["x", "g"], ["y"])],
        "zoo_mul_x_sigmoid_x": [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
    }
    cases = []
    for name, nodes in graphs.items():
        clip = nodes[0].op_type == "Clip"
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                  for n, s in [("x", list(x.shape))] + ([("lo", []), ("hi", [])] if clip else [])]
        graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        feeds = [x] + ([np.array(0, np.float32), np.array(6, np.float32)] if clip else [])
        want = ReferenceEvaluator(model).run(None, dict(zip(("x", "lo", "hi"), feeds)))
        cases.append(SimpleNamespace(name=name, model=model, data_sets=[(feeds, want)]))
    return cases


@pytest.fixture(scope="module")
def cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = collect_testcases(None)
    return [c for c in every if c.model.graph.node and c.model.graph.node[0].op_type in OPS] + _zoo_cases()


def _run(case, tmp_path):
    """netdsl's answer for one node test: (outputs, None), or (None, the reason it is refused)."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    (inputs, expected), = case.data_sets[:1]
    graph = model.graph
    names = [i.name for i in graph.input]
    for name, value in list(zip(names, inputs))[1:]:  # bind later inputs as constants
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    x = np.asarray(inputs[0])
    if x.dtype != np.float32:
        return None, f"input of type {x.dtype}: netdsl computes in float32"
    if graph.node[0].op_type in ELEMENTWISE and len(graph.node) == 1 and x.ndim not in (2, 4):
        x = x.reshape(x.shape[0] if x.ndim > 1 else 1, -1)  # the same values as a batch of vectors
        dims = graph.input[0].type.tensor_type.shape
        del dims.dim[:]
        for d in x.shape:
            dims.dim.add().dim_value = d
    # netdsl reads N x C x H x W or N x features: elementwise and channel tests of other ranks as a batch of vectors
    path = tmp_path / f"{case.name}.onnx"
    onnx.save(model, str(path))
    try:
        text, state = netdsl.import_model(path)
        net = netdsl.compile_source(text)
    except NetError as err:
        return None, err.message.split(": ", 1)[-1]
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    return m.forward(x), None


def test_node_tests_pass_or_are_refused_never_wrong(cases, tmp_path):
    passed, refused, wrong = [], {}, []
    for case in cases:
        got, reason = _run(case, tmp_path)
        if reason is not None:
            refused[case.name] = reason
            continue
        (_, expected), = case.data_sets[:1]
        want = np.asarray(expected[0])
        value = next(iter(got.values()))
        if value.shape != want.shape:
            value = value.reshape(want.shape) if value.size == want.size else value
        try:
            np.testing.assert_allclose(value, want, rtol=1e-3, atol=1e-7)  # the ONNX runner's tolerances
            passed.append(case.name)
        except AssertionError:
            wrong.append(case.name)
    print(f"\nONNX node tests for {len(OPS)} ops: {len(passed)} passed, {len(refused)} refused, {len(wrong)} wrong")
    for name, reason in sorted(refused.items()):
        print(f"  refused {name}: {reason}")
    assert not wrong, f"wrong answers: {wrong}"
    assert len(passed) >= 30, passed
    print("  passed: " + ", ".join(sorted(passed)))
    # the zoo's ops (issue 26): ONNX's own tests where they take a form netdsl has, and the zoo's forms
    assert {"test_hardswish", "test_sigmoid", "test_sigmoid_example", "test_clip_default_min", "test_relu",
            "zoo_clip_0_6", "zoo_hardsigmoid_sixth_half", "zoo_mul_per_channel_broadcast",
            "zoo_mul_x_sigmoid_x"} <= set(passed)


MODELS = ("bvlc_alexnet", "zfnet512", "vgg19", "inception_v1", "resnet50")


@pytest.mark.parametrize("name", MODELS)
def test_the_classic_cnn_model_tests(name):
    """The model tests the onnx package ships as light models (data/light: real architectures,
    light weights), run as ONNX's runner does: its dummy input, its expected output. Those
    weights make every output 0.001, so the numbers say little; what this checks is that each
    whole network imports, compiles and runs. (The numbers are checked by the round trips and
    the models built in test_onnx_import.py.)"""
    import os
    from onnx.backend.test.runner import Runner
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    path = os.path.join(folder, f"light_{name}.onnx")
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    x_info = next(i for i in model.graph.input if i.name not in inits)
    x = Runner.generate_dummy_data(x_info, seed=0, name=name, random=False)
    want = numpy_helper.to_array(onnx.load_tensor(os.path.join(folder, f"light_{name}_output_0.pb")))
    text, state = netdsl.import_model(path)
    m = Model(netdsl.compile_source(text), device="cpu")
    m.load_state_dict(state)
    np.testing.assert_allclose(m(x).reshape(want.shape), want, rtol=1e-3, atol=1e-7)
    if name == "inception_v1":  # ONNX's GoogLeNet comes back as one inception block with the paper's widths
        assert "block inception(c1, c2, c3, c4, c5, c6)" in text and "inception 64 96 128 16 32 32" in text
