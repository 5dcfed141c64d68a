"""Learning a real data set, checkpoints, and stopping on a non-finite loss."""
import io
import os
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import NetError
from netdsl import checkpoint
from netdsl.train import data as datasets
from netdsl.backend.executor import Model
from netdsl.train.loop import Progress, TrainConfig, train
from netdsl.cli import main

NETS = Path(__file__).resolve().parent.parent / "nets"
QUIET = dict(progress=Progress(io.StringIO()), log=lambda s: None)


def test_lenet5_learns_digits_to_97_percent():
    net = netdsl.load(NETS / "lenet5.net")
    ds = datasets.prepare(datasets.load("digits"), net.input_shape, 10)
    assert (len(ds.x_train), len(ds.x_test)) == (1438, 359)
    model = Model(net, device="cpu", seed=0)
    result = train(model, ds, TrainConfig(), **QUIET)
    assert result.test_accuracy >= 0.97, result.history[-1]


TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"


def tiny_setup(seed=0):
    net = netdsl.compile_source(TINY)
    ds = datasets.prepare(datasets.load("digits"), net.input_shape, 10)
    return net, ds, Model(net, device="cpu", seed=seed)


def test_same_seed_same_bits():
    _, ds, a = tiny_setup()
    _, _, b = tiny_setup()
    for model in (a, b):
        train(model, ds, TrainConfig(epochs=1, batch=64), **QUIET)
    for name, value in a.parameters().items():
        np.testing.assert_array_equal(value, b.parameters()[name])


def test_checkpoint_round_trip_and_resume(tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    _, ds, model = tiny_setup()
    real_save = Model.save

    def save_and_keep_epoch_1(m, p, opt=None, extra=None):  # what an interrupted run leaves behind
        real_save(m, p, opt, extra)
        if extra["epoch"] == 1:
            real_save(m, tmp_path / "e1.safetensors", opt, extra)
    monkeypatch.setattr(Model, "save", save_and_keep_epoch_1)
    train(model, ds, TrainConfig(epochs=2, batch=64, save=str(path)), **QUIET)
    monkeypatch.setattr(Model, "save", real_save)
    straight = {k: v.copy() for k, v in model.parameters().items()}
    _, _, resumed = tiny_setup(seed=5)  # different init: everything must come from the checkpoint
    train(resumed, ds, TrainConfig(epochs=2, batch=64, resume=str(tmp_path / "e1.safetensors")), **QUIET)
    for name, value in straight.items():
        np.testing.assert_array_equal(resumed.parameters()[name], value)
    _, meta = checkpoint.read(path)
    assert meta["source"] == TINY and meta["network"] == "tiny"
    fresh = Model(netdsl.compile_source(TINY), device="cpu", seed=9)
    fresh.load(path)
    np.testing.assert_array_equal(fresh.parameters()["conv1.weight"], straight["conv1.weight"])


def test_checkpoint_of_another_network_is_refused_by_tensor_name(tmp_path):
    path = tmp_path / "ck.safetensors"
    _, _, model = tiny_setup()
    model.save(path)
    other = Model(netdsl.compile_source(TINY.replace("conv 4", "conv 6")), device="cpu")
    with pytest.raises(NetError, match="tensor 'conv1.weight' is 4x1x3x3, this network needs 6x1x3x3"):
        other.load(path)
    renamed = Model(netdsl.compile_source(TINY.replace("conv 4", "c: conv 4")), device="cpu")
    with pytest.raises(NetError, match="no tensor 'c.weight'"):
        renamed.load(path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    _, _, model = tiny_setup()
    model.save(path)
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(NetError, match=r"cannot write .*ck.safetensors: disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temporary left behind


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf in, nan out: the point of the test
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ck.safetensors"
    net, ds, model = tiny_setup()
    train(model, ds, TrainConfig(epochs=1, batch=64, save=str(path)), **QUIET)
    good = path.read_bytes()
    ds.x_train[100:] = np.inf  # poison every batch but (perhaps) the first
    with pytest.raises(NetError, match=r"the loss became (nan|inf) at step \d+ \(epoch 1, batch \d+\).*untouched"):
        train(Model(net, device="cpu"), ds, TrainConfig(epochs=1, batch=64, save=str(path)), **QUIET)
    assert path.read_bytes() == good


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"hello")
    _, _, model = tiny_setup()
    with pytest.raises(NetError, match="not a readable safetensors checkpoint"):
        model.load(bad)


def test_train_command_states_test_accuracy(tmp_path, capsys):
    f = tmp_path / "tiny.net"
    f.write_text(TINY)
    assert main(["train", str(f), "--data", "digits", "--epochs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy ") and "digits test images after 2 epochs" in out


def test_train_command_bad_data_path(tmp_path, capsys):
    f = tmp_path / "tiny.net"
    f.write_text(TINY)
    assert main(["train", str(f), "--data", "mnist:/no/such/folder"]) == 1
    assert "--data mnist:/no/such/folder: no such folder" in capsys.readouterr().err


def test_sgd_update_matches_the_formula():
    """v = momentum*v + g + wd*w (weights only); w -= lr*v, against plain numpy here."""
    net = netdsl.compile_source("input 4\nfc 3\nsoftmax")
    for dtype in ("float32", "float64"):
        model = Model(net, device="cpu", dtype=dtype, seed=0)
        opt = netdsl.SGD(model, lr=0.1, momentum=0.9, weight_decay=0.01)
        w0 = {k: v.astype(np.float64).copy() for k, v in model.parameters().items()}
        vel = {k: np.zeros_like(v) for k, v in w0.items()}
        x = np.random.default_rng(0).standard_normal((5, 4))
        for _ in range(3):
            model.loss(x, [0, 1, 2, 0, 1])
            grads = {k: g.astype(np.float64) for k, g in model.backward().items()}
            opt.step()
            for k in w0:
                decay = 0.01 if k.endswith(".weight") else 0.0
                vel[k] = 0.9 * vel[k] + grads[k] + decay * w0[k]
                w0[k] = w0[k] - 0.1 * vel[k]
        for k, v in model.parameters().items():
            np.testing.assert_allclose(v, w0[k], rtol=1e-5 if dtype == "float32" else 1e-12)


def test_resume_from_a_network_of_other_layers_whose_tensors_fit_needs_a_flag(tmp_path, capsys):
    a, b = tmp_path / "a.net", tmp_path / "b.net"
    a.write_text(TINY)
    b.write_text("network other\n" + TINY.split("\n", 1)[1].replace("pool max", "pool avg"))  # same tensors
    ck = tmp_path / "a.safetensors"
    assert main(["train", str(a), "--epochs", "1", "--batch", "64", "--save", str(ck), "--quiet"]) == 0
    assert main(["train", str(b), "--epochs", "2", "--resume", str(ck), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "layer 'pool1' is 'pool max 2x2' in the checkpoint's network, and this one's layer 'pool1' is " \
           "'pool avg 2x2'" in err and "--other-network" in err
    assert main(["train", str(b), "--epochs", "2", "--resume", str(ck), "--other-network", "--no-log"]) == 0
    assert "its weights are loaded, as --other-network asks" in capsys.readouterr().err
    renamed = tmp_path / "c.net"
    renamed.write_text("# the same layers, another name and a comment\nnetwork renamed\n" + TINY.split("\n", 1)[1])
    assert main(["train", str(renamed), "--epochs", "2", "--resume", str(ck), "--no-log"]) == 0


def test_the_test_split_does_not_depend_on_the_seed(tmp_path, capsys):
    f = tmp_path / "t.net"
    f.write_text(TINY)
    ck = tmp_path / "s7.safetensors"
    assert main(["train", str(f), "--epochs", "2", "--batch", "64", "--seed", "7", "--save", str(ck), "--quiet"]) == 0
    with checkpoint.Checkpoint(ck) as c:
        saved = c.info["test_accuracy"]
    # evaluated again without --seed (nothing left to train): the same test images, the same figure
    assert main(["train", str(f), "--resume", str(ck), "--seed", "0", "--quiet", "--no-log"]) == 0
    assert f"test accuracy {100 * saved:.2f}% on 359 digits test images" in capsys.readouterr().out
