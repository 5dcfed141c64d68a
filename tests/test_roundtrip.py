"""Round trips come back whole (issue 22): a netdsl export imported again is the network as it
was written (its source, labels, blocks and stages), with its weights under the original's
names, so that `diff` finds nothing and `train --resume` reads them; an edited export is read as
any other ONNX model; `--no-side-outputs` leaves out everything only the side heads use."""
from pathlib import Path

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backend.executor import Model
from netdsl.cli import main
from netdsl.init import initial_state
from netdsl.interchange import import_model
from netdsl.interchange.onnx_export import export_onnx, needed_state
from netdsl.interchange.roundtrip import restore_model
from netdsl.views.diff import compare

NETS = Path(__file__).resolve().parent.parent / "nets"
ALL = sorted(p.name for p in NETS.glob("*.net"))
RUN = {"lenet5.net", "googlenet.net", "resnet18.net"}  # cheap to run: one each of side outputs, shortcuts


def _weights(net, seed=0, runnable=False):
    """Stand-in trained weights, different in every tensor, so that one put under another's name,
    transposed or reshaped shows. `runnable`: netdsl's initialisation moved by a little, so the
    network computes finite outputs; else uniform values in [0, 1) (drawn 2x faster)."""
    rng = np.random.default_rng(seed)
    if not runnable:
        return {k: rng.random(shape, dtype=np.float32) for k, shape in needed_state(net).items()}
    state = initial_state(net.graph, seed)
    for value in state.values():
        value += 0.01 * rng.random(value.shape, dtype=np.float32)
    return state


def _outputs(net, state, x):
    model = Model(net, device="cpu")
    model.load_state_dict(state)
    return model.forward(x)


def test_the_twelve_nets_are_all_here():
    assert len(ALL) == 12


@pytest.mark.parametrize("file", ALL)
def test_an_export_comes_back_as_it_was_written(file):
    text = (NETS / file).read_text()
    net = netdsl.compile_source(text, str(NETS / file))
    state = _weights(net, runnable=file in RUN)
    restored = restore_model(export_onnx(net, None, state))
    assert restored is not None, "a netdsl export with its source must come back as that source"
    source, back_state = restored
    assert source == text  # the source itself: labels, blocks, stages, comments
    back = netdsl.compile_source(source, "back.net")
    assert compare(net, back) == []  # what `netdsl diff` reports: nothing changed, added or removed
    assert back_state.keys() == state.keys()  # keyed as the original: they load into it
    for name, value in state.items():
        assert back_state[name].dtype == np.float32 and np.array_equal(back_state[name], value), name
    if file in RUN:
        x = np.random.default_rng(1).random((2,) + net.input_shape, dtype=np.float32)
        want, got = _outputs(net, state, x), _outputs(back, back_state, x)
        assert want.keys() == got.keys()
        for name in want:
            assert np.array_equal(want[name], got[name]), name


def test_trained_lenet_exports_imports_and_resumes(tmp_path, capsys):
    """The issue's command sequence, with weights trained on the built-in digits."""
    lenet = str(NETS / "lenet5.net")
    ck, onnx_file, back_net, back_ck = (str(tmp_path / n) for n in ("ck.safetensors", "m.onnx", "back.net",
                                                                    "back.safetensors"))
    assert main(["train", lenet, "--data", "digits", "--epochs", "1", "--save", ck, "-q"]) == 0
    assert main(["export", lenet, "--weights", ck, "-o", onnx_file]) == 0
    assert main(["import", onnx_file, "-o", back_net, "--weights", back_ck]) == 0
    assert Path(back_net).read_text() == Path(lenet).read_text()
    capsys.readouterr()
    assert main(["diff", lenet, back_net]) == 0
    assert "0 changed, 0 added, 0 removed" in capsys.readouterr().out
    assert main(["train", lenet, "--data", "digits", "--epochs", "1", "--resume", back_ck]) == 0
    assert "another network" not in capsys.readouterr().err  # the checkpoint's source is lenet5.net's own

    net = netdsl.load(lenet)
    x = np.random.default_rng(2).random((3,) + net.input_shape, dtype=np.float32)
    trained, imported = Model(net, device="cpu"), Model(netdsl.load(back_net), device="cpu")
    trained.load(ck)
    imported.load(back_ck)
    assert np.array_equal(trained(x), imported(x))
    assert not np.array_equal(trained(x), Model(net, device="cpu")(x))  # the weights really travelled


def test_resnet50_diff_of_the_import_is_empty(tmp_path, capsys):
    out = tmp_path / "back.net"
    assert main(["export", str(NETS / "resnet50.net"), "--batch", "1", "-o", str(tmp_path / "r.onnx")]) == 0
    assert main(["import", str(tmp_path / "r.onnx"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["diff", str(NETS / "resnet50.net"), str(out)]) == 0
    report = capsys.readouterr().out
    assert "no differences" in report and "0 changed, 0 added, 0 removed" in report


def _lenet_model():
    net = netdsl.load(NETS / "lenet5.net")
    return net, export_onnx(net, None, _weights(net))


def _edit_source(model, old, new):
    for prop in model.metadata_props:
        if prop.key == "source":
            prop.value = prop.value.replace(old, new)


def _edit_attribute(model, node_name, attr, values):
    node = next(n for n in model.graph.node if n.name == node_name)
    a = next(a for a in node.attribute if a.name == attr)
    del a.ints[:]
    a.ints.extend(values)


EDITS = {
    "a stride changed in the graph": lambda m: _edit_attribute(m, "c1", "strides", [2, 2]),
    "a label changed in the source": lambda m: _edit_source(m, "c3: conv", "k3: conv"),
    "a width changed in the source": lambda m: _edit_source(m, "f6: fc 84", "f6: fc 85"),
    "the source damaged": lambda m: _edit_source(m, "input 1x32x32", "input 1x32x"),
    "a weight replaced by another shape": lambda m: m.graph.initializer[0].dims.__setitem__(0, 7),
    "a node renamed": lambda m: setattr(m.graph.node[0], "name", "first"),
    "a node removed": lambda m: m.graph.node.remove(m.graph.node[1]),
    "another producer": lambda m: setattr(m, "producer_name", "pytorch"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_export_is_not_taken_for_its_source(edit):
    _, model = _lenet_model()
    assert restore_model(model) is not None
    EDITS[edit](model)
    assert restore_model(model) is None


def test_an_edited_file_is_imported_by_the_ordinary_importer(tmp_path):
    """A layer renamed in the graph, not in the source: the file's graph wins."""
    net, model = _lenet_model()
    next(n for n in model.graph.node if n.name == "c1").name = "first"
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    text, state = import_model(path)
    assert text != net.source and "first" in text
    edited = netdsl.compile_source(text, "edited.net")
    assert [l.shape for l in edited.layers] == [l.shape for l in net.layers]


@pytest.mark.parametrize("variant", ["optimised", "no side outputs"])
def test_a_different_graph_of_the_same_source_is_not_taken_for_it(variant):
    net = netdsl.load(NETS / "googlenet.net")
    kwargs = {"optimised": True} if variant == "optimised" else {"side_outputs": False}
    assert restore_model(export_onnx(net, None, _weights(net), batch=1, **kwargs)) is None


def test_no_side_outputs_leaves_out_what_only_the_side_heads_use():
    import onnxruntime as ort
    net = netdsl.load(NETS / "googlenet.net")
    state = _weights(net, runnable=True)
    full = export_onnx(net, None, state, batch=1)
    trunk = export_onnx(net, None, state, batch=1, side_outputs=False)
    assert [o.name for o in trunk.graph.output] == ["output"]
    side_nodes = [n.name for n in trunk.graph.node if n.name.startswith(("aux1/", "aux2/"))]
    assert side_nodes == []
    # GoogLeNet without its auxiliary classifiers: 6,998,552 parameters (tests/test_nets.py's
    # published count), which is every value the file now holds but the dropout ratios
    values = sum(int(np.prod(t.dims)) for t in trunk.graph.initializer if not t.name.endswith(".ratio"))
    assert values == 6_998_552
    assert len(trunk.graph.node) < len(full.graph.node)
    onnx.checker.check_model(trunk)
    x = np.random.default_rng(3).random((1,) + net.input_shape, dtype=np.float32)
    run = {name: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           for name, m in (("full", full), ("trunk", trunk))}
    (want,) = run["full"].run(["output"], {"input": x})
    (got,) = run["trunk"].run(["output"], {"input": x})
    assert np.array_equal(want, got)
