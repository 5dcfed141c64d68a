"""Issue 14, class 3: no data is lost, and errors about files name the file."""
import gzip
import io
import json
import os
import struct

import numpy as np
import pytest

import netdsl
from netdsl import NetError, checkpoint
from netdsl.cli import main
from netdsl.train import data as datasets
from netdsl.train import loop
from netdsl.train.loop import Progress, TrainConfig, train

TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
QUIET = dict(progress=Progress(io.StringIO()), log=lambda s: None)


@pytest.fixture(scope="module")
def digits():
    return datasets.prepare(datasets.load("digits"), (1, 8, 8), 10)


def model(seed=0):
    return netdsl.Model(netdsl.compile_source(TINY), device="cpu", seed=seed)


# --- the last good checkpoint ------------------------------------------------------------------

def test_divergence_names_the_last_good_checkpoint_which_resumes(tmp_path, digits):
    path = tmp_path / "ck.safetensors"
    train(model(), digits, TrainConfig(epochs=1, batch=64, save=str(path)), **QUIET)
    good = path.read_bytes()
    with pytest.raises(NetError, match=rf"training stopped; the last good state is {path} \(after epoch 1\), "
                                       rf"untouched: --resume {path} continues from it"):
        train(model(), digits, TrainConfig(epochs=3, batch=64, lr=1e30, save=str(path), resume=str(path)), **QUIET)
    assert path.read_bytes() == good
    result = train(model(seed=4), digits, TrainConfig(epochs=2, batch=64, save=str(path), resume=str(path)), **QUIET)
    assert np.isfinite(result.final_loss) and result.epochs == 2 and len(result.history) == 1


def test_weights_that_give_nan_outputs_are_never_saved(tmp_path, digits, monkeypatch):
    """Weights of 1e29 are finite, but the outputs they give are not: the state after such an
    epoch is not saved, and the message says no checkpoint holds a good state."""
    path = tmp_path / "ck.safetensors"
    m = model()
    real = loop._evaluate

    def blow_up(mdl, x, y, batch=256):
        for w in mdl.parameters().values():
            w *= 1e29
        return real(mdl, x, y, batch)
    monkeypatch.setattr(loop, "_evaluate", blow_up)
    with pytest.raises(NetError, match=r"after epoch 1 the weights give NaN or inf outputs: training stopped$"):
        train(m, digits, TrainConfig(epochs=2, batch=64, save=str(path)), **QUIET)
    assert not path.exists()


def test_a_save_of_non_finite_state_is_refused_and_leaves_the_file(tmp_path):
    path = tmp_path / "ck.safetensors"
    m = model()
    m.save(path)
    before = path.read_bytes()
    m.parameters()["fc2.weight"][0, 0] = np.nan
    with pytest.raises(NetError, match="not saving .*tensor 'fc2.weight' holds non-finite values"):
        m.save(path)
    assert path.read_bytes() == before


def test_save_onto_the_net_file_is_refused_before_training(tmp_path, capsys):
    net_file = tmp_path / "tiny.net"
    net_file.write_text(TINY)
    assert main(["train", str(net_file), "--save", str(net_file), "--epochs", "1"]) == 2  # an input: a usage mistake
    assert f"--save {net_file} would replace the FILE argument {net_file}, which this command reads" \
        in capsys.readouterr().err
    assert net_file.read_text() == TINY
    notes = tmp_path / "notes.txt"  # not an input, but not a checkpoint either
    notes.write_text("mine")
    assert main(["train", str(net_file), "--save", str(notes), "--epochs", "1"]) == 1
    assert f"--save {notes}: that file is not a netdsl checkpoint, and saving would replace it" in capsys.readouterr().err
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("where, words", [
    ("afile/ck.safetensors", "afile is a file, not a folder"),
    (".", "it is a folder"),
])
def test_save_path_is_checked_before_the_first_epoch(tmp_path, capsys, monkeypatch, where, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.net").write_text(TINY)
    (tmp_path / "afile").write_text("notes")
    started = []
    monkeypatch.setattr(loop, "epoch_order", lambda *a: started.append(a))
    assert main(["train", "tiny.net", "--save", where, "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert f"error: --save {where}: {words}" in err
    assert not started


@pytest.mark.parametrize("command", [["draw", "tiny.net", "-o", "afile/out.svg"],
                                     ["diff", "tiny.net", "tiny.net", "-o", "afile/out.svg"]])
def test_draw_and_diff_outputs_name_the_path(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.net").write_text(TINY)
    (tmp_path / "afile").write_text("notes")
    assert main(command) == 1
    assert "error: cannot write afile/out.svg: afile is a file, not a folder" in capsys.readouterr().err


def test_a_full_disk_is_the_users_error_naming_the_path(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.net").write_text(TINY)

    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    assert main(["draw", str(tmp_path / "tiny.net"), "-o", str(tmp_path / "x.dot")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'x.dot'}: No space left on device" in err and "the disk is full" in err
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.net"]


def test_a_killed_saves_temporary_is_cleaned_by_the_next(tmp_path):
    path = tmp_path / "ck.safetensors"
    stale = tmp_path / ".ck.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    model().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


def test_resuming_a_finished_run_says_so(tmp_path, digits, capsys):
    path = tmp_path / "ck.safetensors"
    train(model(), digits, TrainConfig(epochs=1, batch=64, save=str(path)), **QUIET)
    said = []
    result = train(model(), digits, TrainConfig(epochs=1, batch=64, resume=str(path)), progress=Progress(io.StringIO()),
                   log=said.append)
    assert said == [f"{path} already holds 1 epoch(s), and --epochs is 1: nothing to train (raise --epochs to go on)"]
    assert result.history == [] and result.epochs == 1


# --- checkpoints checked as they are read ---------------------------------------------------------

def _tampered(tmp_path, change):
    path = tmp_path / "ck.safetensors"
    m = model()
    m.save(path)
    tensors, meta = checkpoint.read(path)
    change(tensors, meta)
    from safetensors.numpy import save_file
    save_file(tensors, str(path), metadata=meta)
    return path


def test_a_nan_weight_is_refused_naming_the_tensor(tmp_path):
    path = _tampered(tmp_path, lambda t, m: t["conv1.weight"].__setitem__((0, 0, 0, 0), np.nan))
    with pytest.raises(NetError, match="tensor 'conv1.weight' holds NaN or inf values"):
        model().load(path)


def test_a_tensor_of_another_dtype_is_refused_not_cast(tmp_path):
    path = _tampered(tmp_path, lambda t, m: t.__setitem__("conv1.bias", t["conv1.bias"].astype(np.int8)))
    with pytest.raises(NetError, match="tensor 'conv1.bias' is int8, netdsl's tensors are float32; it is not converted"):
        model().load(path)


def test_another_network_that_fits_loads_with_the_first_differing_line(tmp_path):
    path = tmp_path / "ck.safetensors"
    model().save(path)
    other = netdsl.Model(netdsl.compile_source(TINY.replace("pool max 2x2", "pool avg 2x2")), device="cpu")
    said = []
    other.load(path, warn=said.append)
    assert said == [f"{path} was saved from another network whose tensors fit this one (line 5: the "
                    "checkpoint's network has 'pool max 2x2', this one 'pool avg 2x2'); its weights are loaded"]
    with pytest.warns(UserWarning, match="line 5"):
        other.load(path)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    """Written before optimiser keys moved to 'optim:': 'optim.velocity.NAME'."""
    m = model()
    opt = netdsl.SGD(m)
    m.loss(np.ones((2, 1, 8, 8), np.float32), [0, 1])
    m.backward()
    opt.step()
    tensors = {k: v for k, v in m.state_dict().items()}
    tensors.update({f"optim.velocity.{k}": v for k, v in opt.velocity.items()})
    from safetensors.numpy import save_file
    path = tmp_path / "old.safetensors"
    save_file(tensors, str(path), metadata={"format": "netdsl-checkpoint-1", "network": "tiny", "source": TINY,
                                            "info": json.dumps({"epoch": 1})})
    fresh, opt2 = model(seed=3), None
    opt2 = netdsl.SGD(fresh)
    assert fresh.load(path, opt2) == {"epoch": 1}
    np.testing.assert_array_equal(opt2.velocity["conv1.weight"], opt.velocity["conv1.weight"])


# --- data set files that lie ----------------------------------------------------------------------

def _idx(dims, body=b"", gz=False):
    raw = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body
    return gzip.compress(raw) if gz else raw


@pytest.mark.parametrize("content, words", [
    (_idx([2**32 - 1] * 4), "its header promises 4294967295x4294967295x4294967295x4294967295 = "),
    (_idx([0, 28, 28]), "holds no items (its header says 0x28x28)"),
    (_idx([5, 0, 0]), "its items are 0x0, an empty size"),
    (_idx([2, 2, 2], b"\x00" * 7), "the header promises 2x2x2 = 8 bytes, the file holds 7"),
    (_idx([2, 2, 2], b"\x00" * 9), "the header promises 2x2x2 = 8 bytes, the file holds more"),
    (b"\x00\x00\x0d\x03", "is not an IDX file of unsigned bytes (its header is 00000d03)"),
    (b"\x00\x00\x08\x03\x00\x00", "is cut short inside its header"),
])
def test_idx_files_that_lie_are_refused_naming_the_file(tmp_path, content, words):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(NetError) as info:
        datasets.read_idx(path)
    assert str(path) in info.value.message and words in info.value.message


def test_a_corrupt_gzip_stream_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = _idx([2, 2, 2], b"\x01" * 8, gz=True)
    path.write_bytes(good[:12] + bytes(b ^ 0x5A for b in good[12:]))
    with pytest.raises(NetError, match=rf"{path} is not a readable gzip file"):
        datasets.read_idx(path)


def test_a_cifar_batch_of_the_wrong_size_is_refused(tmp_path, capsys):
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (tmp_path / name).write_bytes(b"\x01" * 3073)
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x01" * 3000)
    with pytest.raises(NetError, match=r"data_batch_3.bin: 3,000 bytes is not a whole number of 3,073-byte records"):
        datasets.load_cifar10(str(tmp_path))
