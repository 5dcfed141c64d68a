"""ONNX's own node tests for the ops netdsl imports (issue 16): each passes, or is refused with
a clear reason (an attribute or form netdsl does not support); none gives a wrong answer.

The cases are the ones the `onnx` package generates (onnx.backend.test.case.node; this wheel
ships no data/node folder, and the classic-CNN model tests need a download, so they are not
run here). Each single-node model is imported as netdsl text, with the test's own values for
inputs after the first bound as constants (ONNX's conv tests feed their weights as inputs), and
run by netdsl's kernels; the result is compared at the ONNX runner's tolerances."""
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
       "Dropout")


@pytest.fixture(scope="module")
def cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = collect_testcases(None)
    return [c for c in every if c.model.graph.node and c.model.graph.node[0].op_type in OPS]


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
