"""ONNX export (issue 15): valid models for every network in nets/ at every supported opset,
shapes as ONNX's own shape inference finds them, and onnxruntime's outputs equal netdsl's on
the same weights and input."""
import io
from pathlib import Path

import numpy as np
import pytest

import onnx  # noqa: E402  (a netdsl dependency)
import onnxruntime as ort  # noqa: E402  (a dev dependency)

import netdsl  # noqa: E402
from netdsl import NetError  # noqa: E402
from netdsl.backend.executor import Model  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.init import initial_state  # noqa: E402
from netdsl.interchange.onnx_export import DEFAULT_OPSET, EXPORTERS, LOWERED, OPSETS, export_onnx  # noqa: E402
from netdsl.ops import OPS  # noqa: E402

NETS = sorted((Path(__file__).resolve().parent.parent / "nets").glob("*.net"))


def test_every_op_has_an_onnx_mapping():
    missing = [op for op in OPS if op not in EXPORTERS and op not in LOWERED]
    assert not missing, f"add an ONNX mapping to interchange/onnx_export.py for: {missing}"


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _weights_as_inputs(model):
    """The same graph with its initializers declared as inputs instead (their bytes are the same
    at every opset): ONNX's checker and shape inference judge the nodes without copying weights."""
    from onnx import helper
    m = onnx.ModelProto()
    m.ir_version = model.ir_version
    m.opset_import.extend(model.opset_import)
    g = m.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for t in model.graph.initializer:
        g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def _shapes_from_onnx(model):
    """Every value's shape as onnx.shape_inference finds it, from the graph without value_info."""
    bare = _weights_as_inputs(model)
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        shapes[v.name] = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
    return shapes


@pytest.mark.parametrize("path", NETS, ids=[p.stem for p in NETS])
def test_every_network_exports_checks_and_runs_in_onnxruntime(path):
    net = netdsl.load(path)
    state = initial_state(net.graph, seed=1)
    model = export_onnx(net, None, state)
    onnx.checker.check_model(model, full_check=True)

    # the file as the issue describes it
    g = model.graph
    assert [i.name for i in g.input] == ["input"]
    assert [o.name for o in g.output] == [name for name, _ in net.outputs]
    nodes = {n.name for n in g.node}
    assert {l.name for l in net.layers if l.op != "input"} <= nodes | {n.name.rsplit("/", 1)[0] for n in g.node}
    assert {t.name for t in g.initializer} >= {k for k in state}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["network"] == net.name and props["source"] == net.source and props["netdsl_version"]
    first = next(n for n in g.node if n.name == net.layers[1].name)
    assert first.doc_string == net.source.splitlines()[net.layers[1].span.line - 1].strip()
    assert model.opset_import[0].version == DEFAULT_OPSET

    # ONNX's shape inference finds netdsl's shapes, layer by layer
    inferred = _shapes_from_onnx(model)
    names = {node: name for name, node in net.outputs}
    for layer in net.layers[1:]:
        value = names.get(layer.name, layer.name)
        if value in inferred:
            assert inferred[value] == ("N", *layer.shape), layer.name
    assert all(inferred[name] == ("N", *net.layer(node).shape) for name, node in net.outputs)

    # onnxruntime against netdsl's inference, same weights, batch 1 and 3 through the dynamic batch
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    session = _session(model)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        want = m.forward(x)
        got = session.run(None, {"input": x})
        for (name, _), value in zip(net.outputs, got):
            scale = float(np.abs(want[name]).max())
            assert float(np.abs(value - want[name]).max()) <= 1e-4 * scale, (name, batch)


@pytest.mark.parametrize("path", NETS, ids=[p.stem for p in NETS])
def test_every_opset_with_and_without_side_outputs_is_valid(path):
    net = netdsl.load(path)
    state = initial_state(net.graph, seed=1)
    for opset in OPSETS:
        for side in (True, False):
            model = export_onnx(net, None, state, opset=opset, side_outputs=side)
            assert model.opset_import[0].version == opset
            assert len(model.graph.output) == (len(net.outputs) if side else 1)
            onnx.checker.check_model(_weights_as_inputs(model), full_check=True)


def test_fixed_batch_and_the_optimised_graph_run_alike():
    net = netdsl.load(NETS[0].parent / "resnet18.net")
    state = initial_state(net.graph, seed=2)
    rng = np.random.default_rng(3)
    for name, node in [(n, d) for n, d in net.graph.nodes(data=True) if d["op"] == "bn"]:
        state[f"{name}.running_mean"] = rng.standard_normal(state[f"{name}.running_mean"].shape).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2, state[f"{name}.running_var"].shape).astype(np.float32)
    x = rng.standard_normal((2, *net.input_shape)).astype(np.float32)
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    want = m(x)
    plain = export_onnx(net, None, state, batch=2)
    folded = export_onnx(net, None, state, optimised=True)
    assert plain.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    assert sum(n.op_type == "BatchNormalization" for n in plain.graph.node) == 20
    onnx.checker.check_model(folded, full_check=True)
    for model in (plain, folded):
        (got,) = _session(model).run(None, {"input": x})
        assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())


def test_the_pool_modes_and_leaky_export():
    src = ("input 3x13x13\nconv 8 3x3 pad 1\nleaky 0.1\nconv 8 3x3 /2 padend 1\npool max 2x2 /1 padend 1\n"
           "pool max 3x3 /2 ceil\n"
           "pool avg 3x3 /2 pad 1 ceil exclude_pad\npool avg 2x2 /1 pad 1\nlrn 3\nfc 5\nsvm")
    net = netdsl.compile_source(src)
    state = initial_state(net.graph, seed=4)
    model = export_onnx(net, None, state)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.name: n for n in model.graph.node}
    def attrs(name):
        return {a.name: onnx.helper.get_attribute_value(a) for a in ops[name].attribute}
    assert attrs("conv2")["pads"] == [0, 0, 1, 1] and attrs("pool1")["pads"] == [0, 0, 1, 1]  # padend
    assert ops["pool2"].op_type == "MaxPool" and attrs("pool2")["ceil_mode"] == 1
    assert attrs("pool3")["count_include_pad"] == 0 and attrs("pool3")["ceil_mode"] == 1
    assert ops["leaky1"].op_type == "LeakyRelu" and ops["svm1"].op_type == "Identity"
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    x = np.random.default_rng(5).standard_normal((3, 3, 13, 13)).astype(np.float32)
    (got,) = _session(model).run(None, {"input": x})
    np.testing.assert_allclose(got, m(x), rtol=1e-4, atol=1e-5)


def test_a_trained_lenet_keeps_its_test_accuracy_exactly(tmp_path, capsys):
    from netdsl.train import data as datasets
    from netdsl.train.loop import Progress, TrainConfig, evaluate, train
    net = netdsl.load(NETS[0].parent / "lenet5.net")
    ds = datasets.prepare(datasets.load("digits"), net.input_shape, 10)
    model = Model(net, device="cpu", seed=0)
    ck = tmp_path / "lenet5.safetensors"
    train(model, ds, TrainConfig(epochs=2, batch=32, save=str(ck)), progress=Progress(io.StringIO()), log=lambda s: None)
    accuracy = evaluate(model, ds.x_test, ds.y_test)
    out = tmp_path / "lenet5.onnx"
    assert main(["export", str(NETS[0].parent / "lenet5.net"), "-o", str(out), "--weights", str(ck)]) == 0
    assert "seeded initialisation" not in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input": ds.x_test})
    assert (probs.argmax(axis=1) == ds.y_test).mean() == accuracy
    assert accuracy > 0.5


def test_the_command_says_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", str(NETS[0].parent / "googlenet.net"), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}: googlenet, opset {DEFAULT_OPSET}" in said
    assert "outputs output Nx1000, aux1 Nx1000, aux2 Nx1000" in said
    assert "the weights are netdsl's seeded initialisation (--seed 0)" in said
    assert main(["export", str(NETS[0].parent / "googlenet.net"), "-o", str(out), "--no-side-outputs",
                 "--batch", "4"]) == 0
    assert "outputs output 4x1000\n" in capsys.readouterr().out
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["output"]


TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"


@pytest.mark.parametrize("flags, code, words", [
    (["--opset", "9"], 2, "argument --opset: '9' is not one of the choices"),
    (["--batch", "0"], 2, "argument --batch: '0' must be 1 or more"),
    (["--batch", "lots"], 2, "argument --batch: 'lots' is not a whole number"),
])
def test_usage_mistakes(tmp_path, capsys, flags, code, words):
    (tmp_path / "tiny.net").write_text(TINY)
    with pytest.raises(SystemExit) as info:
        main(["export", str(tmp_path / "tiny.net"), "-o", str(tmp_path / "t.onnx"), *flags])
    assert info.value.code == code and words in capsys.readouterr().err


def test_bad_outputs_and_weights_leave_nothing_behind(tmp_path, capsys):
    net_file = tmp_path / "tiny.net"
    net_file.write_text(TINY)
    other = Model(netdsl.compile_source(TINY.replace("conv 4", "conv 6")), device="cpu")
    other.save(tmp_path / "other.safetensors")
    (tmp_path / "afile").write_text("notes")
    cases = [
        (["-o", str(tmp_path / "t.onnx"), "--weights", str(tmp_path / "other.safetensors")],
         "tensor 'conv1.weight' is 6x1x3x3, this network needs 4x1x3x3: a different network"),
        (["-o", str(tmp_path / "afile" / "t.onnx")], "afile is a file, not a folder"),
        (["-o", str(tmp_path)], "it is a folder"),
        (["-o", str(tmp_path / "t.onnx"), "--weights", str(net_file)], "is not a readable safetensors checkpoint"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for flags, words in cases:
        assert main(["export", str(net_file), *flags]) == 1
        assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_python_api_refusals():
    net = netdsl.compile_source(TINY)
    with pytest.raises(NetError, match="opset 12 is not supported: netdsl exports opsets 13 to 21"):
        netdsl.export_onnx(net, None, opset=12)
    bad = initial_state(net.graph)
    bad["conv1.weight"] = bad["conv1.weight"].astype(np.float64)
    with pytest.raises(NetError, match="tensor 'conv1.weight' is float64"):
        netdsl.export_onnx(net, None, bad)
    with pytest.raises(NetError, match="has no tensor 'fc2.bias'"):
        netdsl.export_onnx(net, None, {k: v for k, v in initial_state(net.graph).items() if k != "fc2.bias"})


def test_the_export_is_written_atomically(tmp_path, monkeypatch):
    import os
    net = netdsl.compile_source(TINY)
    out = tmp_path / "t.onnx"
    netdsl.export_onnx(net, out)
    before = out.read_bytes()

    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NetError, match="No space left on device"):
        netdsl.export_onnx(net, out, seed=5)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.onnx"]


def test_an_op_an_opset_cannot_express_is_refused_with_its_line(monkeypatch):
    from netdsl.interchange import onnx_export
    monkeypatch.setitem(onnx_export.EXPORTERS, "leaky", (onnx_export.EXPORTERS["leaky"][0], 99))
    net = netdsl.compile_source("input 2x4x4\nconv 2 1x1\nleaky 0.2\nflatten")
    with pytest.raises(NetError) as info:
        netdsl.export_onnx(net, None)
    assert "'leaky1' (leaky) needs opset 99 or later to export as netdsl computes it, not 17" in info.value.message
    assert info.value.span.line == 3
