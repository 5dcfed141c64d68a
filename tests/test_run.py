"""`netdsl run` and the executor on every network in nets/ (CPU, batch 1)."""
import json
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli import main

NETS = Path(__file__).resolve().parent.parent / "nets"


@pytest.mark.parametrize("file", sorted(p.name for p in NETS.glob("*.net")))
def test_every_net_runs_forward_and_backward_on_the_cpu(file):
    net = netdsl.load(NETS / file)
    model = netdsl.Model(net, device="cpu", seed=0)
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape)).astype(np.float32)
    outs = model.forward(x)
    for name, node in net.outputs:
        assert outs[name].shape == (1, *net.layer(node).shape)
        assert np.isfinite(outs[name]).all()
    loss = model.loss(x, [3])
    assert np.isfinite(loss)
    grads = model.backward()
    assert set(grads) == set(model.parameters())
    assert all(np.isfinite(g).all() for g in grads.values())
    assert model.num_parameters() == net.totals().params


def test_run_json_keys(capsys):
    assert main(["run", str(NETS / "lenet5.net"), "--json", "--device", "cpu", "--batch", "4", "--repeat", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("device", "batch", "forward_ms", "backward_ms", "images_per_s", "gflops", "peak_bytes"):
        assert key in data
    assert data["batch"] == 4 and data["device"].startswith("cpu")
    assert data["forward_ms"] > 0 and data["peak_bytes"] > 0


def test_run_prints_summary_and_timings(capsys):
    assert main(["run", str(NETS / "lenet5.net"), "--device", "cpu", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out and "forward" in out and "images/s" in out and "GFLOP/s" in out


def test_gpu_where_there_is_none_is_a_clear_error(capsys, monkeypatch):
    from netdsl.backend import device
    monkeypatch.setattr(device, "_gpu", lambda local_rank=0: None)  # as on a machine without CuPy or a GPU
    assert main(["run", str(NETS / "lenet5.net"), "--device", "gpu"]) == 1
    assert "--device gpu: no GPU is usable here" in capsys.readouterr().err


def test_wrong_input_shape_is_an_error():
    model = netdsl.Model(netdsl.load(NETS / "lenet5.net"), device="cpu")
    with pytest.raises(netdsl.NetError, match="the input batch is 2x1x28x28, but lenet5 takes Nx1x32x32"):
        model.forward(np.zeros((2, 1, 28, 28), np.float32))


def test_batch_split_gives_the_same_answer():
    net = netdsl.compile_source("input 3x16x16\nconv 8 3x3 pad 1\nrelu\nconv 4 5x5 /2 pad 2\nflatten")
    x = np.random.default_rng(1).standard_normal((6, 3, 16, 16))
    whole = netdsl.Model(net, device="cpu", dtype="float64")
    split = netdsl.Model(net, device="cpu", dtype="float64", col_budget=1)  # one image per chunk
    np.testing.assert_allclose(whole(x), split(x), rtol=1e-12)
    whole.loss(x, [0] * 6)
    split.loss(x, [0] * 6)
    gw, gs = whole.backward(input_grad=True), split.backward(input_grad=True)
    for name in gw:
        np.testing.assert_allclose(gw[name], gs[name], rtol=1e-10, atol=1e-12)
