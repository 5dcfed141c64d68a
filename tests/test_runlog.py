"""The run log (netdsl/runlog.py) and what train does with it and with its checkpoints' settings:
rows equal to the loop's figures, a resume that appends, a killed run that leaves a readable log,
the schedule over the planned total, settings kept and overridden, only rank 0 writing."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import NetError, runlog
from netdsl.backend.executor import Model
from netdsl.cli import main
from netdsl.train import data as datasets
from netdsl.train.loop import TrainConfig, train
from netdsl.train.progress import Progress

HERE = Path(__file__).resolve().parent
TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
QUIET = dict(progress=Progress(io.StringIO()), log=lambda s: None)


@pytest.fixture(scope="module")
def digits():
    net = netdsl.compile_source(TINY)
    return net, datasets.prepare(datasets.load("digits"), net.input_shape, 10)


def run(net, ds, seed=0, **cfg):
    model = Model(net, device="cpu", seed=seed)
    return model, train(model, ds, TrainConfig(batch=64, **cfg), **QUIET)


def test_the_log_holds_the_loops_own_figures(tmp_path, digits):
    net, ds = digits
    log = tmp_path / "r.log.jsonl"
    _, result = run(net, ds, epochs=2, log=str(log), log_every=7, command=("netdsl", "train"))
    back = runlog.read(log)
    assert [{k: v for k, v in e.items() if k != "kind"} for e in back.epochs] == result.history
    assert [s["step"] for s in back.steps] == [7, 14, 21, 28, 35, 42]  # 23 steps of 64 images an epoch, 2 epochs
    assert back.steps == result.step_rows
    assert back.header["network"]["source"] == TINY and back.header["data"] == \
        {"name": "digits", "train": 1438, "test": 359, "classes": 10}
    assert back.header["settings"]["batch"] == 64 and back.header["command"] == ["netdsl", "train"]
    assert back.header["netdsl"] == netdsl.__version__ and back.header["machine"]["ranks"] == 1


def test_planned_run_stopped_and_resumed_is_the_straight_run_bit_for_bit_and_one_log(tmp_path, digits):
    net, ds = digits
    straight, _ = run(net, ds, epochs=4, schedule="cosine")
    ck, log = tmp_path / "ck.safetensors", tmp_path / "ck.log.jsonl"
    run(net, ds, epochs=4, stop_after=2, save=str(ck), log=str(log))
    resumed, result = run(net, ds, seed=5, epochs=4, resume=str(ck), save=str(ck), log=str(log))
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)
    back = runlog.read(log)
    assert [e["epoch"] for e in back.epochs] == [1, 2, 3, 4] and len(back.resumes) == 1
    assert back.resumes[0]["from_epoch"] == 2 and log.read_text().count('"kind": "run"') == 1


def test_resume_continues_with_the_checkpoints_settings_and_says_each_override(tmp_path, capsys):
    f = tmp_path / "t.net"
    f.write_text(TINY)
    ck = tmp_path / "t.safetensors"
    assert main(["train", str(f), "--epochs", "2", "--stop-after", "1", "--lr", "0.02", "--batch", "32",
                 "--save", str(ck)]) == 0
    capsys.readouterr()
    assert main(["train", str(f), "--resume", str(ck), "--save", str(ck)]) == 0
    err = capsys.readouterr().err
    assert "batch 32*" in err and "cosine from 0.02 to 0 over 2 epochs*" in err and "overrides" not in err
    assert main(["train", str(f), "--resume", str(ck), "--epochs", "3", "--lr", "0.01"]) == 0
    err = capsys.readouterr().err
    assert "--epochs 3 overrides 2 from" in err and "now spans 3 epochs" in err
    assert "--lr 0.01 overrides 0.02 from" in err
    # the peak after 2 of 3 planned epochs: 0.01 * (1 + cos(2 pi / 3)) / 2 = 0.0025; the old plan had ended at 0
    assert "the learning rate from here is 0.0025 (it would have been 0)" in err


def test_a_run_killed_mid_epoch_leaves_a_log_that_reads_back(tmp_path):
    f = tmp_path / "t.net"
    f.write_text(TINY)
    log = tmp_path / "k.log.jsonl"
    child = subprocess.Popen([sys.executable, "-m", "netdsl", "train", str(f), "--epochs", "50", "--batch", "1",
                              "--log", str(log), "--log-every", "1", "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"kind": "step"') < 200):
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-epoch: 1,438 steps an epoch
    finally:
        child.wait(timeout=30)
    back = runlog.read(log)
    assert len(back.steps) >= 200 and not back.epochs
    assert [s["step"] for s in back.steps] == list(range(1, len(back.steps) + 1))


def test_a_cut_last_row_is_left_out_with_a_note_and_other_damage_is_refused(tmp_path):
    good = tmp_path / "g.log.jsonl"
    header = json.dumps({"kind": "run", "format": runlog.FORMAT})
    row = json.dumps({"kind": "epoch", "epoch": 1, "loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.7})
    good.write_text(header + "\n" + row + "\n" + row[:17])
    back = runlog.read(good)
    assert len(back.epochs) == 1 and "last row (line 3) is cut short" in back.notes[0]
    bad = tmp_path / "b.log.jsonl"
    bad.write_text(header + "\n" + row[:17] + "\n" + row + "\n")
    with pytest.raises(NetError, match="b.log.jsonl:2: not a JSON record"):
        runlog.read(bad)
    other = tmp_path / "o.csv"
    other.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(NetError, match="o.csv is not a netdsl run log"):
        runlog.read(other)


def test_the_log_never_replaces_a_file_that_is_not_a_log(tmp_path, capsys):
    f = tmp_path / "t.net"
    f.write_text(TINY)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["train", str(f), "--epochs", "1", "--log", str(notes)]) == 1
    assert "--log " + str(notes) + ": that file is not a netdsl run log" in capsys.readouterr().err
    assert notes.read_text() == "mine"
    assert main(["train", str(f), "--epochs", "1", "--log", str(f)]) == 2
    assert "would replace the FILE argument" in capsys.readouterr().err
    assert f.read_text() == TINY


def test_under_mpi_only_rank_0_writes_the_log(tmp_path):
    from tests.test_distributed import MPIEXEC, mpi_ready
    assert mpi_ready(), "data-parallel tests need the mpi extra: pip install -e '.[mpi]'"
    f = tmp_path / "t.net"
    f.write_text(TINY)
    log = tmp_path / "m.log.jsonl"
    done = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "netdsl", "train", str(f), "--epochs", "2",
                           "--batch", "64", "--log", str(log), "--log-every", "10", "--dist", "mpi"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = log.read_text()
    assert text.count('"kind": "run"') == 1 and text.count('"kind": "epoch"') == 2
    assert text.count('"kind": "step"') == 4  # steps 10, 20, 30, 40 of 46: rank 0's rows alone
    assert runlog.read(log).header["machine"]["ranks"] == 2
