"""The zoo's ops (issue 26) against references written here from their definitions (PyTorch's and
ONNX's operator documents), in float64, and onnxruntime's reading of their ONNX mappings."""
import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model
from netdsl.init import initial_state

RNG = np.random.default_rng(26)


def _run(source, x, params=None):
    net = netdsl.compile_source(source)
    model = Model(net, device="cpu", dtype="float64", seed=3)
    for name, value in (params or {}).items():
        model.parameters()[name][...] = value
    return model.forward(x)["output"]


# The definitions, element by element (ONNX: Clip, HardSigmoid with alpha 1/6 and beta 1/2,
# HardSwish; PyTorch: SiLU x * sigmoid(x)).
REFERENCES = {
    "relu6": np.vectorize(lambda v: min(max(0.0, v), 6.0)),
    "hsigmoid": np.vectorize(lambda v: max(0.0, min(1.0, v / 6 + 0.5))),
    "hswish": np.vectorize(lambda v: v * max(0.0, min(1.0, v / 6 + 0.5))),
    "silu": np.vectorize(lambda v: v / (1 + np.exp(-v))),
    "sigmoid": np.vectorize(lambda v: 1 / (1 + np.exp(-v))),
}


@pytest.mark.parametrize("op", sorted(REFERENCES))
def test_activation_matches_its_definition(op):
    x = RNG.uniform(-9, 9, (2, 3, 4, 5))  # across every kink: -3, 0, 3, 6
    np.testing.assert_allclose(_run(f"input 3x4x5\n{op}", x), REFERENCES[op](x), rtol=1e-12, atol=1e-12)


def test_gate_multiplies_each_channel_by_its_factor():
    x = RNG.standard_normal((2, 3, 4, 4))
    w = RNG.standard_normal((3, 3, 1, 1))
    b = RNG.standard_normal(3)
    out = _run("input 3x4x4\ngate {\nshortcut\n{ pool avg global; conv 3 1x1; sigmoid }\n}", x,
               {"b2/conv1.weight": w, "b2/conv1.bias": b})
    want = np.empty_like(x)
    for n in range(2):
        for c in range(3):
            mean = x[n].mean(axis=(1, 2))  # the squeeze: one value a channel
            factor = 1 / (1 + np.exp(-(sum(w[c, k, 0, 0] * mean[k] for k in range(3)) + b[c])))
            want[n, c] = x[n, c] * factor
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_zeropad_is_the_papers_option_a():
    x = RNG.standard_normal((2, 2, 5, 5))
    out = _run("input 2x5x5\nzeropad 5 /2", x)
    assert out.shape == (2, 5, 3, 3)
    for c in range(5):
        for i in range(3):
            for j in range(3):
                want = x[:, c, 2 * i, 2 * j] if c < 2 else 0.0
                np.testing.assert_array_equal(out[:, c, i, j], want)


def test_split_and_shuffle_by_index():
    x = RNG.standard_normal((1, 6, 2, 2))
    np.testing.assert_array_equal(_run("input 6x2x2\nsplit 3 take 2", x), x[:, 2:4])
    out = _run("input 6x2x2\nshuffle 2", x)
    # ShuffleNet's shuffle with 2 groups: the halves interleaved, 0 3 1 4 2 5
    np.testing.assert_array_equal(out, x[:, [0, 3, 1, 4, 2, 5]])


def test_dense_concat_puts_the_input_first():
    x = RNG.standard_normal((1, 2, 3, 3))
    out = _run("input 2x3x3\nconcat { shortcut; { conv 1 1x1 } }", x)
    np.testing.assert_array_equal(out[:, :2], x)


def test_depthwise_kernel_matches_a_loop():
    x = RNG.standard_normal((2, 3, 7, 6))
    w = RNG.standard_normal((3, 1, 3, 3))
    b = RNG.standard_normal(3)
    out = _run("input 3x7x6\nconv 3 3x3 /2 pad 1 groups 3", x, {"conv1.weight": w, "conv1.bias": b})
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 3, 4, 3))
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(3):
                    want[n, c, i, j] = b[c] + (xp[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[c, 0]).sum()
    np.testing.assert_allclose(out, want, rtol=1e-12)


ONNX_CASES = {
    "relu6": "input 3x4x4\nconv 3 1x1\nrelu6",
    "hsigmoid": "input 3x4x4\nhsigmoid",
    "hswish": "input 3x4x4\nhswish",
    "silu": "input 3x4x4\nsilu",
    "gate-conv": "input 4x3x3\ngate { shortcut; { pool avg global; conv 2 1x1; relu; conv 4 1x1; hsigmoid } }",
    "gate-fc": "input 4x3x3\ngate { shortcut; { pool avg global; fc 2; relu; fc 4; sigmoid } }",
    "zeropad": "input 2x6x6\nadd { { conv 4 3x3 /2 pad 1 } shortcut zeropad }",
    "split-shuffle": "input 4x3x3\nconcat { { split 2 take 1 } { split 2 take 2; conv 2 1x1 } }\nshuffle 2",
    "dense": "input 2x3x3\nconcat { shortcut; { conv 3 3x3 pad 1 } }",
    "depthwise": "input 3x6x6\nconv 3 3x3 /2 pad 1 groups 3\nrelu",
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnxruntime_agrees(case):
    import onnx
    import onnxruntime as ort

    from netdsl.interchange.onnx_export import export_onnx
    net = netdsl.compile_source(ONNX_CASES[case] + "\nflatten")
    state = initial_state(net.graph, seed=1)
    model = export_onnx(net, None, state)
    onnx.checker.check_model(model, full_check=True)
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    x = (3 * RNG.standard_normal((2, *net.input_shape))).astype(np.float32)
    want = m.forward(x)["output"]
    (got,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert float(np.abs(got - want).max()) <= 1e-5 * float(np.abs(want).max())


@pytest.mark.parametrize("source,message", [
    ("input 4x3x3\ngate { shortcut; { pool avg global; conv 3 1x1; sigmoid } }", "one factor per channel"),
    ("input 4x3x3\ngate { shortcut; { conv 4 3x3 pad 1 } }", "one factor per channel"),
    ("input 4x6x6\nadd { { conv 2 3x3 /2 pad 1 } shortcut zeropad }", "adds zero channels"),
    ("input 4x3x3\nconcat { shortcut zeropad; { conv 2 1x1 } }", "belongs in an add"),
    ("input 4x3x3\nconcat { shortcut; shortcut; { conv 2 1x1 } }", "holds its input once"),
    ("input 5x3x3\nsplit 2 take 1", "equal parts"),
    ("input 4x3x3\nsplit 2 take 3", "has no part 3"),
    ("input 4x3x3\nsplit 2", "needs the part to keep"),
    ("input 6x3x3\nshuffle 4", "divide into 4 groups"),
    ("input 4x3x3\nzeropad 2", "fewer than the 4 input channels"),
])
def test_mistakes_are_named(source, message):
    with pytest.raises(netdsl.NetError) as err:
        netdsl.compile_source(source)
    assert message in str(err.value)
