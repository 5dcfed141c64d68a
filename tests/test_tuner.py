"""The convolution tuner (backend/tuner.py): its cache round-trips and shrugs off a damaged or
foreign file with a note; every algorithm it may choose agrees with float64 im2col within the
error budget it claims; NETDSL_TUNE=off makes exactly the choices netdsl made before the tuner on
every conv layer of the 12 nets (tests/data/conv_choices_before_tuner.json, recorded from that
commit's own runs); and ResNet-50's float32 output keeps within 2x of plain float32 im2col's error."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backend import tuner
from netdsl.backend.accuracy import float32_error
from netdsl.backend.cpu import native
from netdsl.backend.algorithms import plan
from netdsl.backend.conv import Conv
from netdsl.backend.im2col import Geometry

HERE = Path(__file__).parent
NETS = HERE.parent / "nets"


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """Tuning on, with a cache folder of the test's own and nothing remembered from before (the
    compiled kernels stay where they were built)."""
    from netdsl.backend.cpu import native
    monkeypatch.setenv("NETDSL_CACHE", str(native._cache_dir()))
    monkeypatch.setenv("NETDSL_TUNE", "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    notes = []
    tuner.on_note(notes.append)
    tuner.forget()
    yield notes
    tuner.on_note(None)
    tuner.forget()


def _run(source: str, batch: int = 2, training: bool = True, precision: str = "default"):
    net = netdsl.compile_source(source)
    model = netdsl.Model(net, device="cpu", precision=precision)
    x = np.random.default_rng(0).standard_normal((batch, *net.input_shape)).astype(np.float32)
    if training:
        model.loss(x, [0] * batch)
        model.backward()
    else:
        model.forward(x, keep=True)
    return [node.saved.conv for node in model.nodes if node.op == "conv"]


# the candidates and the recorded choices are those of the compiled kernels (native.c)
needs_native = pytest.mark.usefixtures("compiled_kernels")

LAYER = "input 32x16x16\nconv 32 3x3 pad 1\nrelu\nconv 16 3x3 pad 1\nflatten"


@needs_native
def test_cache_round_trips(tuning):
    first = _run(LAYER)
    assert [s["source"] for s in first] == ["measured", "measured"]
    path = tuner.cache_path()
    data = json.loads(path.read_text())
    assert data["machine"] == tuner.machine()
    # the first conv needs no input gradient, the second does: two keys, each direction timed
    keys = sorted(data["entries"])
    assert keys[0].startswith("forward+backward_filter n2 c32 16x16 o32")
    assert keys[1].startswith("forward+backward_filter+data n2 c32 16x16 o16")
    for entry in data["entries"].values():
        assert {"batch_major", "winograd_f2", "direct"} <= set(entry)  # every candidate the budget admits
        assert "winograd_f4" not in entry  # outside the default float32 budget: never timed
    tuner.forget()  # a later process: everything from the file, the same winners
    again = _run(LAYER)
    assert [s["source"] for s in again] == ["cache", "cache"]
    assert [s["algorithm"] for s in again] == [s["algorithm"] for s in first]
    assert not tuning  # no notes


def test_fresh_measures_again_and_off_never_reads(tuning, monkeypatch):
    _run(LAYER)
    tuner.forget()  # a later process
    monkeypatch.setenv("NETDSL_TUNE", "fresh")
    assert {s["source"] for s in _run(LAYER)} == {"measured"}
    assert {s["source"] for s in _run(LAYER)} == {"cache"}  # measured once a process
    monkeypatch.setenv("NETDSL_TUNE", "off")
    assert {s["source"] for s in _run(LAYER)} == {"thresholds"}
    monkeypatch.setenv("NETDSL_TUNE", "sometimes")
    with pytest.raises(netdsl.NetError, match="NETDSL_TUNE='sometimes' is not a tuning mode"):
        _run(LAYER)


@pytest.mark.parametrize("damage", [b"{not json", b'{"format": 1, "machine": {}, "entries": {"k": {"a": 3}}}',
                                    b"\xff\xfe"])
def test_damaged_cache_is_ignored_with_a_note(tuning, damage):
    path = tuner.cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    saved = _run(LAYER)
    assert [s["source"] for s in saved] == ["measured", "measured"]
    assert len(tuning) == 1 and "is damaged: ignored" in tuning[0] and str(path) in tuning[0]
    assert json.loads(path.read_text())["machine"] == tuner.machine()  # rewritten whole


def test_foreign_cache_is_ignored_with_a_note(tuning):
    _run(LAYER)
    path = tuner.cache_path()
    data = json.loads(path.read_text())
    data["machine"] = {"cpu": "Some Other CPU", "cores": 64, "kernels": data["machine"]["kernels"]}
    path.write_text(json.dumps(data))
    tuner.forget()
    saved = _run(LAYER)
    assert [s["source"] for s in saved] == ["measured", "measured"]
    assert len(tuning) == 1 and "another machine" in tuning[0] and "Some Other CPU, 64 cores" in tuning[0]


def test_cache_choice_is_the_fastest_recorded(tuning):
    """The winner is read from the recorded times: make im2col the fastest by hand and it runs."""
    _run(LAYER)
    path = tuner.cache_path()
    data = json.loads(path.read_text())
    for key, entry in data["entries"].items():
        ways = key.split(" ")[0].split("+", 1)  # the key opens with the directions it was timed
        for name in entry:  # a loser pruned before its backward holds {}: every one gets times here
            entry[name] = {d: 0.001 if name == "batch_major" else 1.0 for d in ways}
    path.write_text(json.dumps(data))
    tuner.forget()
    assert [s["algorithm"] for s in _run(LAYER)] == ["batch_major", "batch_major"]


def _relative_error(y, ref) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


# (input C, H, O, kernel, stride, pad): 3x3 (all three Winograd-able ones), 5x5 pad 2, strided 7x7
# and a 1x1 stride-2 projection (ResNet's shortcuts)
CANDIDATE_LAYERS = [(16, 12, 16, 3, 1, 1), (8, 11, 12, 5, 1, 2), (3, 17, 8, 7, 2, 3), (12, 9, 8, 3, 1, 0),
                    (20, 13, 24, 1, 2, 0)]


class _Workspace:
    def __init__(self):
        self.buffers = {}

    def get(self, key, make):
        return self.buffers.setdefault(key, make())


@needs_native
@pytest.mark.parametrize("c,h,o,k,s,p", CANDIDATE_LAYERS)
def test_every_candidate_agrees_with_im2col_within_its_budget(c, h, o, k, s, p):
    """Each algorithm the tuner may choose, in float32, against im2col in float64 (a reference
    computed in another precision): within its claimed error growth times plain float32 im2col's
    (with 2x headroom for one draw), and so within the budget of every precision that admits it."""
    rng = np.random.default_rng(1)
    x64 = np.maximum(rng.standard_normal((2, c, h, h)), 0)
    w64 = rng.standard_normal((o, c, k, k)) * np.sqrt(2 / (c * k * k))
    geo = Geometry.of(x64.shape, (k, k), (s, s), (p, p))
    conv = lambda: Conv(np, _Workspace(), 1 << 40, "c", precision="fast")  # noqa: E731
    ref, _ = conv().run("batch_major", x64, w64, None, geo, 1)
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    plain = _relative_error(conv().run("batch_major", x32, w32, None, geo, 1)[0], ref)
    names = tuner.candidates(conv(), x32, geo, 1, o)
    assert len(names) >= 2
    from netdsl.backend.cpu import native
    if native.library() is not None:  # inference's (conv() runs no backward): float32, compiled kernels
        assert "blocked" in names
    assert "blocked" not in tuner.candidates(replace(conv(), training=True), x32, geo, 1, o)  # no backward
    for name in names:
        got = _relative_error(conv().run(name, x32, w32, None, geo, 1)[0], ref)
        assert got <= 2 * tuner.ERROR_GROWTH[name] * plain + 1e-7, name
    for precision, ceiling in tuner.PRECISIONS.items():
        admitted = tuner.candidates(Conv(np, _Workspace(), 1 << 40, "c", precision=precision), x32, geo, 1, o)
        assert all(tuner.ERROR_GROWTH[n] <= ceiling for n in admitted)
    exact = tuner.candidates(Conv(np, _Workspace(), 1 << 40, "c", precision="exact"), x32, geo, 1, o)
    assert not any(n.startswith("winograd") or n == "direct" for n in exact)


def _choices_before_tuner() -> dict:
    table = json.loads((HERE / "data" / "conv_choices_before_tuner.json").read_text())
    by = defaultdict(dict)
    for key, algorithm in table.items():
        net, batch, layer = key.split()
        by[net, int(batch)][layer] = algorithm
    return by


@needs_native
def test_off_reproduces_the_thresholds_choice_on_every_layer_of_the_12_nets():
    """NETDSL_TUNE=off (set for every test by conftest.py) with every algorithm admitted: the
    choices recorded from the runs of the commit before the tuner, layer by layer (analysed)."""
    from netdsl.backend.cpu import native
    assert native.library() is not None, "the recorded choices are those of the compiled kernels"
    recorded = _choices_before_tuner()
    assert {net for net, _ in recorded} == {p.stem for p in NETS.glob("*.net")}
    compiled = {}
    for (name, batch), want in sorted(recorded.items()):
        net = compiled.setdefault(name, netdsl.load(str(NETS / f"{name}.net")))
        got = {c.layer: c.algorithm for c in plan(net, batch, training=True, precision="fast")}
        assert got == want, (name, batch)
        assert all(c.source == "thresholds" for c in plan(net, batch, training=True, precision="fast"))


@needs_native
def test_default_precision_trades_f4_for_f2_under_off():
    """Under the default budget F(4x4)'s layers run F(2x2), F(2x2, 5x5)'s the next rule's."""
    vgg = netdsl.load(str(NETS / "vgg16.net"))
    fast = {c.layer: c.algorithm for c in plan(vgg, 8, True, "fast")}
    default = {c.layer: c.algorithm for c in plan(vgg, 8, True, "default")}
    assert "winograd_f4" in fast.values() and "winograd_f4" not in default.values()
    assert all(default[k] == "winograd_f2" for k, v in fast.items() if v == "winograd_f4")
    alexnet = netdsl.load(str(NETS / "alexnet.net"))
    assert {c.layer: c.algorithm for c in plan(alexnet, 8, True, "default")}["conv2"] == "batch_major"


RESNET50_SMALL = (NETS / "resnet50.net").read_text().replace("input 3x224x224", "input 3x64x64")


def test_resnet50_forward_error_within_twice_plain_float32():
    """ResNet-50 (on 64x64 inputs, batch 1, its own weights) in float32 at the default precision,
    against the same network in float64: within 2x the error of float32 convolutions by numpy's
    plain im2col (the GEMMs PyTorch's CPU convolutions also are)."""
    assert "input 3x64x64" in RESNET50_SMALL
    net = netdsl.compile_source(RESNET50_SMALL)
    error = float32_error(net, np.random.default_rng(0).standard_normal((1, *net.input_shape)))

    plain = error(winograd=False, precision="exact")
    assert error() <= 2 * plain
    assert error(precision="exact") == pytest.approx(plain)


def test_a_challenger_must_beat_the_thresholds_choice_by_the_margin():
    from netdsl.backend.tuner import MARGIN, pick
    entry = {"winograd_f2": {"forward": 1.0}, "direct": {"forward": 0.95}, "batch_major": {}}
    assert pick(["winograd_f2", "direct", "batch_major"], entry, "winograd_f2") == "winograd_f2"  # 5%: noise
    entry["direct"] = {"forward": 1.0 / MARGIN - 0.01}
    assert pick(["winograd_f2", "direct", "batch_major"], entry, "winograd_f2") == "direct"
    assert pick(["direct"], {}, "direct") == "direct"  # nothing measured: the thresholds' choice


class _TimedConv:
    """A stand-in convolution whose algorithms take the given seconds forward and backward; it
    records what ran (the tuner asks only prepare, run, backward, need_dx, key and workspace of a Conv)."""

    def __init__(self, seconds: dict[str, tuple[float, float]]):
        self.seconds, self.ran, self.key, self.workspace, self.need_dx = seconds, [], "layer", None, True

    def prepare(self, algorithm, w, b, geo):
        return None

    def run(self, algorithm, x, w, b, geo, groups):
        import time
        self.ran.append((algorithm, "forward"))
        time.sleep(self.seconds[algorithm][0])
        return None, algorithm

    def backward(self, saved, out, w, need_dx):
        import time
        self.ran.append((saved, "backward"))
        time.sleep(self.seconds[saved][1])


def test_a_challenger_whose_forward_already_loses_is_not_run_backward(monkeypatch):
    """Training tunes forward and backward together; a challenger whose forward alone is longer
    than half the best's whole cannot win (its backward is at least as long) and is cut short."""
    # wide margins: a loaded machine oversleeps (direct: 3 x 5 ms forward against the cut at 1.5 x 30 ms)
    conv = _TimedConv({"winograd_f2": (0.01, 0.02), "batch_major": (0.2, 0.4), "direct": (0.005, 0.03)})
    monkeypatch.setattr(tuner, "replace", lambda c, **changes: c)  # measure on the stand-in itself
    found = tuner.measure(conv, None, None, None, None, 1, ["winograd_f2", "direct", "batch_major"],
                          ("forward", "backward_filter+data"))
    assert found["batch_major"] == {}  # lost on its forward: never run backward
    assert ("batch_major", "backward") not in conv.ran and ("direct", "backward") in conv.ran
    assert tuner.pick(["winograd_f2", "batch_major", "direct"], found, "winograd_f2") == "winograd_f2"
    # inference times only the forward: nothing to cut short
    conv.ran.clear()
    found = tuner.measure(conv, None, None, None, None, 1, ["winograd_f2", "batch_major"], ("forward",))
    assert set(found["batch_major"]) == {"forward"}
