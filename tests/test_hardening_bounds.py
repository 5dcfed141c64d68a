"""Issue 14, class 2: nothing hangs, nothing exhausts memory.

The cases that could allocate run in a child process under resource.setrlimit(RLIMIT_DATA), so a
regression fails there (a MemoryError, a refused step) instead of taking the machine down; the
cases that could loop run under a subprocess timeout."""
import json
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main
from netdsl.train.budget import plan_step

ROOT = Path(__file__).resolve().parent.parent
NETS = ROOT / "nets"
GiB = 2**30


def _limited(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
    return apply


def netdsl_cli(*args, limit=4 * GiB, timeout=120, cwd=None):
    """The command line in a child process whose heap may not pass `limit`."""
    return subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limited(limit), cwd=cwd or ROOT)


def test_repeats_that_add_no_layers_hit_a_bound_quickly(tmp_path):
    f = tmp_path / "r.net"
    f.write_text("input 1x8x8\nrepeat 200000 repeat 200000 { }\nrelu\n")
    result = netdsl_cli("check", f, timeout=60)
    assert result.returncode == 1
    assert f"{f}:2:15: error: expanding the network takes more than 1,000,000 steps" in result.stderr


def test_a_huge_file_is_refused_without_being_read(tmp_path):
    f = tmp_path / "huge.net"
    with open(f, "wb") as out:
        out.truncate(50 * 2**20)  # sparse: 50 MB of zeros that take no disk
    for path in (f, "/dev/zero"):
        result = netdsl_cli("check", path, limit=1 * GiB, timeout=60)
        assert result.returncode == 1, result.stderr
        assert f"error: {path} is larger than 1 MiB: too large for a .net file" in result.stderr


@pytest.mark.parametrize("batch", [3000, 10**12])
def test_an_impossible_batch_is_refused_with_the_batch_that_fits(batch):
    net = netdsl.load(NETS / "alexnet.net")
    plan = plan_step(net, optimiser=False)
    result = netdsl_cli("run", NETS / "alexnet.net", "--batch", batch, "--device", "cpu", limit=3 * GiB)
    assert result.returncode == 1, result.stderr
    assert f"error: --batch {batch}: one training step of alexnet plans" in result.stderr
    assert "over the memory this machine has free" in result.stderr
    fits = int(result.stderr.split("hint: --batch ")[1].split()[0])
    assert 1 <= fits < 3 * GiB / plan.per_image_bytes  # what 3 GiB less the process itself leaves
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr


def test_the_memory_limit_bounds_the_whole_step():
    result = netdsl_cli("run", NETS / "alexnet.net", "--batch", 64, "--device", "cpu", "--memory-limit", "1GiB")
    assert result.returncode == 1
    assert "--batch 64: one training step of alexnet plans" in result.stderr
    assert "over the --memory-limit (1.0 GiB)" in result.stderr
    assert "hint: --batch 10 fits" in result.stderr  # (1 GiB - 714 MiB fixed) / 29.4 MiB per image


def test_training_is_refused_before_the_data_is_loaded(tmp_path):
    result = netdsl_cli("train", NETS / "lenet5.net", "--data", f"mnist:{tmp_path}/missing", "--batch", 10**12)
    assert result.returncode == 1
    assert "--batch 1000000000000: one training step of lenet5 plans" in result.stderr


def test_a_batch_that_fits_still_runs_under_the_limit():
    result = netdsl_cli("run", NETS / "lenet5.net", "--batch", 8, "--repeat", 1, "--device", "cpu", "--json",
                        limit=2 * GiB)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["batch"] == 8


def test_the_plan_bounds_a_measured_step():
    """The plan is an upper estimate: never under what one step measures (tracemalloc)."""
    from netdsl.backend.device import get_device
    from netdsl.train.timing import run
    for name, batch in (("lenet5", 16), ("alexnet", 2)):
        net = netdsl.load(NETS / f"{name}.net")
        report = run(net, get_device("cpu"), batch=batch, repeat=1)
        planned = plan_step(net, optimiser=False).at(batch)
        assert report.peak_bytes <= planned <= 4 * report.peak_bytes, (name, report.peak_bytes, planned)


TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"


def _checkpoint(tmp_path, epoch):
    net = netdsl.compile_source(TINY)
    model = netdsl.Model(net, device="cpu")
    path = tmp_path / "ck.safetensors"
    model.save(path, None, {"epoch": epoch, "step": 5})
    (tmp_path / "tiny.net").write_text(TINY)
    return path


def test_a_checkpoint_at_epoch_a_billion_replays_nothing(tmp_path):
    path = _checkpoint(tmp_path, 10**9)
    result = netdsl_cli("train", tmp_path / "tiny.net", "--resume", path, "--epochs", 2, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{path} already holds 1000000000 epoch(s), and --epochs is 2: nothing to train" in result.stderr
    assert "(no epoch trained in this run)" in result.stdout


def test_a_checkpoint_with_a_nonsense_epoch_is_refused(tmp_path, capsys):
    path = _checkpoint(tmp_path, "ten")
    assert main(["train", str(tmp_path / "tiny.net"), "--resume", str(path), "--epochs", "1"]) == 1
    assert f"{path}: its info says epoch 'ten', not a whole number of epochs" in capsys.readouterr().err


def _safetensors_header(tensors: dict, meta: dict) -> bytes:
    header = {"__metadata__": meta}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob, offset


def test_a_4gb_tensor_of_the_wrong_shape_is_refused_from_its_header(tmp_path):
    """A sparse file whose header promises a 4 GiB conv1.weight: refused by shape, unread (the
    child may not allocate 1 GiB, so reading it would fail otherwise)."""
    net = netdsl.compile_source(TINY)
    model = netdsl.Model(net, device="cpu")
    tensors = {name: ("F32", list(v.shape), v.nbytes) for name, v in model.state_dict().items()}
    tensors["conv1.weight"] = ("F32", [1024, 1024, 1024], 4 * GiB)
    head, size = _safetensors_header(tensors, {"format": "netdsl-checkpoint-2", "network": "tiny",
                                               "source": TINY, "info": "{}"})
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + size)
    (tmp_path / "tiny.net").write_text(TINY)
    result = netdsl_cli("train", tmp_path / "tiny.net", "--resume", path, "--epochs", 1, limit=1 * GiB)
    assert result.returncode == 1, result.stderr
    assert f"{path}: tensor 'conv1.weight' is 1024x1024x1024, this network needs 4x1x3x3" in result.stderr


def test_every_error_line_is_bounded(tmp_path):
    f = tmp_path / "long.net"
    f.write_text("input 3x8x8\n" + "conv 4 3x3 " + "pad 1 " * 100_000 + "\n")
    result = netdsl_cli("check", f)
    assert result.returncode == 1
    assert max(len(line) for line in result.stderr.splitlines()) < 500
    assert "(600,011 characters)" in result.stderr
