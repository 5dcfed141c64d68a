"""relu6 and hsigmoid as fused epilogues (issue 26): the optimised graph (conv + relu6, bn + relu6,
add + relu6, conv + hsigmoid fused) against the graph as written, and against finite differences,
in float64, with pre-activations on every side of both clamps; native.c's batch norm with the
clamp against the numpy path; the gradient at the kinks as PyTorch's; the ONNX export of the
fused nodes (Clip with bound inputs, HardSigmoid) against onnxruntime and back through the importer."""
import numpy as np
import pytest

import netdsl
from netdsl.backend.cpu import direct, native
from netdsl.backend.executor import Model
from netdsl.backend.im2col import Geometry
from netdsl.backend.kernels import ACTIVATIONS

TAIL = "flatten\nfc 3\nsoftmax"
# (source, the node that takes the activation as its epilogue, the activation)
FUSED = {
    "conv+relu6": (f"input 2x5x5\nconv 4 3x3 pad 1\nrelu6\n{TAIL}", "conv1", "relu6"),
    "bn+relu6": (f"input 2x5x5\nconv 4 3x3 pad 1 nobias\nbn\nrelu6\n{TAIL}", "bn1", "relu6"),
    "add+relu6": (f"input 3x5x5\nadd {{\n  {{ conv 3 3x3 pad 1 }}\n  shortcut\n}}\nrelu6\n{TAIL}", "add1", "relu6"),
    "conv+hsigmoid": (f"input 2x5x5\nconv 4 3x3 pad 1\nhsigmoid\n{TAIL}", "conv1", "hsigmoid"),
}
# the clamps' pieces: relu6's below 0, between and above 6; hsigmoid's below -3, between and above 3
PIECES = {"relu6": (0.0, 6.0), "hsigmoid": (-3.0, 3.0)}


def _models(source: str, cpu_kernels=None):
    """The graph as written and the training-optimised one, the same parameters (bn's scale large
    enough to cross relu6's upper clamp), float64."""
    net = netdsl.compile_source(source)
    fused = netdsl.optimise(net, "training")
    plain = Model(net, device="cpu", dtype="float64", seed=1)
    for name, value in plain.parameters().items():
        if name.startswith("bn"):
            value[...] = np.linspace(4, 6, value.size) if name.endswith("weight") else np.linspace(-1, 1, value.size)
    return net, fused, plain, Model(fused, device="cpu", dtype="float64", seed=1, params_from=plain)


@pytest.mark.parametrize("case", FUSED)
def test_fused_graph_keeps_the_loss_and_gradients_and_they_are_the_derivatives(case, cpu_kernels):
    source, producer, act = FUSED[case]
    net, fused, plain, model = _models(source)
    assert fused.graph.nodes[producer]["epilogue"] == act
    assert not any(d["op"] == act for _, d in fused.graph.nodes(data=True))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *net.input_shape)) * 6  # pre-activations on both sides of both clamps
    labels = [0, 1, 2]
    loss = model.loss(x, labels)
    assert loss == pytest.approx(plain.loss(x, labels), rel=1e-12)
    node = next(n for n in model.nodes if n.name == producer)
    lo, hi = PIECES[act]
    pre = {"relu6": lambda y: y, "hsigmoid": lambda y: y * 6 - 3}[act](node.epilogue_out)
    assert (pre <= lo).any() and (pre >= hi).any() and ((pre > lo) & (pre < hi)).any(), "a piece is not reached"
    grads, want = model.backward(input_grad=True), plain.backward(input_grad=True)
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # central differences of the fused model's loss, at a few coordinates of every tensor
    tensors = {**model.parameters(), "input": x}
    eps = 1e-6
    for name, arr in tensors.items():
        for flat in rng.choice(arr.size, size=min(4, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            plus = model.loss(x, labels)
            arr[idx] = old - eps
            minus = model.loss(x, labels)
            arr[idx] = old
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - grads[name][idx]) <= 1e-5 * max(1e-3, abs(numeric) + abs(grads[name][idx])), \
                f"{case} {name}{list(idx)}: analytic {grads[name][idx]:.10g}, numeric {numeric:.10g}"


@pytest.mark.parametrize("act", ["relu6", "hsigmoid"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["training", "inference"])
def test_native_batch_norm_with_the_clamp_matches_numpy(act, dtype, mode, monkeypatch, fine_grained_work):
    """bn + relu6 and bn + hsigmoid in one pass of native.c each way against the numpy kernels:
    outputs, every gradient, the running statistics."""
    source = f"input 3x4x5\nconv 5 3x3 pad 1 nobias\nbn\n{act}\n{TAIL}"
    x = np.random.default_rng(3).standard_normal((4, 3, 4, 5)) * 4
    results = []
    for numpy_only in (False, True):
        if numpy_only:
            monkeypatch.setattr(native, "available", lambda xp, dtype: False)
        net, fused, plain, _ = _models(source)
        model = Model(fused, device="cpu", dtype=dtype, seed=1)
        model.load_state_dict({k: v.astype(dtype) for k, v in plain.state_dict().items()})
        loss = model.loss(x.astype(dtype), [0, 1, 2, 0], training=mode == "training")
        bn = next(n for n in model.nodes if n.name == "bn1")
        assert bn.epilogue == act and bn.variant.name == ("reference" if numpy_only else "native")
        out = bn.epilogue_out.copy()
        grads = model.backward(input_grad=True)
        results.append((loss, out, grads, {k: v.copy() for k, v in model.buffers().items()}))
    (l0, o0, g0, b0), (l1, o1, g1, b1) = results
    rtol = 1e-5 if dtype == "float32" else 1e-11
    assert l0 == pytest.approx(l1, rel=rtol)
    np.testing.assert_allclose(o0, o1, rtol=rtol, atol=rtol)
    for name in g1:
        np.testing.assert_allclose(g0[name], g1[name], rtol=rtol * 10, atol=rtol, err_msg=name)
    for name in b1:
        np.testing.assert_allclose(b0[name], b1[name], rtol=rtol, err_msg=name)


# PyTorch 2.13's relu6 and hardsigmoid backward (hardtanh_backward, hardsigmoid_backward: the
# gradient passes where the input is strictly inside (0, 6) and (-3, 3)), at the kinks and around
# them, run once by hand: torch.nn.functional.relu6(x).sum().backward() and so on.
KINKS = {
    "relu6": ([-1.0, 0.0, 3.0, 6.0, 7.0], [0, 0, 1, 0, 0]),
    "hsigmoid": ([-4.0, -3.0, 0.0, 3.0, 4.0], [0, 0, 1 / 6, 0, 0]),
}


@pytest.mark.parametrize("act", KINKS)
def test_gradient_at_the_kinks_is_pytorchs(act):
    x, slope = (np.array(v) for v in KINKS[act])
    rule = ACTIVATIONS[act]
    y = rule.apply(np, x.copy())
    np.testing.assert_array_equal(rule.grad(np, np.ones(5), y), slope)
    # native.c's case (through the direct conv's backward, as a fused conv's gradient goes): the
    # activation's output holding exactly the kinks' values, against the rule's gradient applied first
    xin, w = np.random.default_rng(4).standard_normal((1, 1, 5, 5)), np.random.default_rng(5).standard_normal((1, 1, 1, 1))
    out, saved = direct.forward(np, xin, w, None, Geometry.of(xin.shape, (1, 1), (1, 1), (0, 0)))
    y5 = np.tile(y, (5, 1)).reshape(out.shape)
    dy = np.random.default_rng(6).standard_normal(out.shape)
    fused = direct.backward(np, saved, dy, w, True, (act, y5))
    ref = direct.backward(np, saved, dy * np.tile(slope, (5, 1)).reshape(out.shape), w, True)
    for got, want in zip(fused, ref):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_onnx_export_of_fused_clamps_runs_in_onnxruntime_and_imports_back(tmp_path):
    """The inference graph (bn folded into its conv, relu6 and hsigmoid fused into conv and add)
    exported as ONNX: Clip with its bounds as initializer inputs, HardSigmoid with alpha 1/6 and
    beta 1/2; onnxruntime's output equals netdsl's; the ordinary importer reads relu6 and
    hsigmoid back and the imported network computes the same."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from netdsl.init import initial_state
    from netdsl.interchange import import_model
    from netdsl.interchange.onnx_export import export_onnx

    source = ("input 3x8x8\nconv 6 3x3 pad 1 nobias\nbn\nrelu6\nadd {\n  { conv 6 3x3 pad 1 }\n  shortcut\n}\n"
              "relu6\nconv 4 1x1\nhsigmoid\nflatten\nfc 3")
    net = netdsl.compile_source(source)
    state = initial_state(net.graph, seed=7)
    state["bn1.weight"] = np.linspace(3, 9, 6).astype(np.float32)  # outputs past 6, so the clamp bites
    state["bn1.running_var"] = np.linspace(0.5, 2, 6).astype(np.float32)
    x = np.random.default_rng(8).standard_normal((2, 3, 8, 8)).astype(np.float32) * 3
    reference = Model(net, device="cpu")
    reference.load_state_dict(state)
    want = reference(x)

    model = export_onnx(net, tmp_path / "fused.onnx", state, optimised=True)
    onnx.checker.check_model(model, full_check=True)
    fused = {n.name: n for n in model.graph.node}
    assert "bn1" not in fused and fused["conv1/relu6"].op_type == "Clip"
    assert fused["add1/relu6"].op_type == "Clip" and fused["conv2/hsigmoid"].op_type == "HardSigmoid"
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for clip in ("conv1/relu6", "add1/relu6"):
        lo, hi = fused[clip].input[1:]
        assert (float(consts[lo]), float(consts[hi])) == (0.0, 6.0)
    hs = {a.name: onnx.helper.get_attribute_value(a) for a in fused["conv2/hsigmoid"].attribute}
    assert hs["alpha"] == pytest.approx(1 / 6) and hs["beta"] == pytest.approx(0.5)
    (got,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())

    text, imported_state = import_model(tmp_path / "fused.onnx")
    imported = netdsl.compile_source(text)
    ops = [layer.op for layer in imported.layers]
    assert ops.count("relu6") == 2 and ops.count("hsigmoid") == 1 and "bn" not in ops
    again = Model(imported, device="cpu")
    again.load_state_dict(imported_state)
    assert float(np.abs(again(x) - want).max()) <= 1e-4 * float(np.abs(want).max())
