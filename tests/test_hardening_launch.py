"""Issue 21, "Launches and data folders", and issue 22's errors under MPI.

--ranks N is checked before any rank starts (cores, the batch split, the network, the MPI
library), an error every rank finds is printed once, by rank 0, and ranks started with different
settings are told which (that the result line comes after the epoch lines: test_distributed.py).
--data folder: reads regular files only and refuses a decompression bomb by its pixel count
before decoding.

The cases that could hang run in a child under a timeout; those that could allocate under
RLIMIT_DATA, so a regression fails instead of taking the machine down."""
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from netdsl.cli import launch, main
# The training loop's Progress binds sys.stderr as its default when train/loop.py is first imported:
# imported here, at collection, rather than inside a capsys test (whose stream is closed after it)
import netdsl.train.loop  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
NETS = ROOT / "nets"
MPIEXEC = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, as in test_distributed.py
if not MPIEXEC.is_file() and shutil.which("mpiexec"):
    MPIEXEC = Path(shutil.which("mpiexec"))
TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
GiB = 2**30


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "tiny.net"
    path.write_text(TINY)
    return path


@pytest.fixture
def no_mpiexec(monkeypatch):
    """The launcher must refuse before it starts anything: starting mpiexec fails the test."""
    def started(*args, **kwargs):
        raise AssertionError(f"mpiexec was started: {args}")
    monkeypatch.setattr(launch.subprocess, "call", started)


# before the ranks start ------------------------------------------------------------------------

def test_more_ranks_than_cores_are_refused_with_the_core_count(net, capsys, monkeypatch, no_mpiexec):
    monkeypatch.setattr(launch, "cores", lambda: 2)
    assert main(["train", str(net), "--ranks", "64"]) == 2
    err = capsys.readouterr().err
    assert "--ranks 64: this machine has 2 cores" in err and "add --oversubscribe" in err
    assert err.count("error:") == 1


def test_one_rank_more_than_this_machine_has_cores_is_refused(net, capsys, no_mpiexec):
    too_many = launch.cores() + 1
    assert main(["train", str(net), "--ranks", str(too_many)]) == 2
    assert f"--ranks {too_many}: this machine has {launch.cores()} core" in capsys.readouterr().err


def test_oversubscribe_lets_more_ranks_start(net, monkeypatch):
    monkeypatch.setattr(launch, "cores", lambda: 1)
    started = []
    monkeypatch.setattr(launch, "check_mpi", lambda ranks: None)
    monkeypatch.setattr(launch.subprocess, "call", lambda command: started.append(command) or 0)
    assert main(["train", str(net), "--ranks", "2", "--oversubscribe", "--epochs", "1"]) == 0
    (command,) = started
    assert command[command.index("-n") + 1] == "2" and "--oversubscribe" not in command[command.index("-m"):]
    assert command[-2:] == ["--dist", "mpi"] and "--ranks" not in command


@pytest.mark.parametrize("argv, message", [
    (["--batch", "15"], "--batch 15 does not split over 2 ranks"),
    (["--ranks", "2", "--dist", "none"], "--ranks 2 and --dist none"),
])
def test_a_batch_the_ranks_cannot_split_is_refused_once_before_they_start(net, capsys, monkeypatch, no_mpiexec,
                                                                          argv, message):
    monkeypatch.setattr(launch, "cores", lambda: 2)
    assert main(["train", str(net), "--ranks", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count(message) == 1, err


def test_a_mistake_in_the_network_is_said_once_before_the_ranks_start(tmp_path, capsys, monkeypatch, no_mpiexec):
    monkeypatch.setattr(launch, "cores", lambda: 2)
    bad = tmp_path / "bad.net"
    bad.write_text("input 1x8x8\nconv 4 3x3\nrelu\nfcc 10\n")
    assert main(["train", str(bad), "--ranks", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("bad.net:4:1: error") == 1 and "^^^" in err


def test_a_missing_mpi_library_is_said_once_with_the_fix(net, capsys, monkeypatch, no_mpiexec, tmp_path):
    monkeypatch.setattr(launch, "cores", lambda: 2)
    monkeypatch.setenv("MPI4PY_LIBMPI", str(tmp_path / "libmpi.so.12"))
    assert main(["train", str(net), "--ranks", "2"]) == 1
    err = capsys.readouterr().err
    assert "--ranks 2: mpi4py cannot load the MPI library" in err and "libmpi.so.12" in err
    assert ".venv/bin/pip install -e '.[mpi]'" in err and err.count("error:") == 1


# under mpiexec -----------------------------------------------------------------------------------

def mpiexec(*parts, timeout=90):
    assert MPIEXEC.is_file(), "data-parallel tests need the mpi extra: pip install -e '.[mpi]'"
    return subprocess.run([str(MPIEXEC), *map(str, parts)], capture_output=True, text=True, timeout=timeout)


def test_an_error_every_rank_finds_is_printed_once_by_rank_0(net):
    done = mpiexec("-n", "2", sys.executable, "-m", "netdsl", "train", net, "--batch", "15", "--dist", "mpi")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("does not split over 2 ranks") == 1, done.stderr
    assert "[rank 0] error: --batch 15 does not split" in done.stderr and "[rank 1]" not in done.stderr


def test_ranks_started_with_different_settings_are_told_which(net):
    rank = [sys.executable, "-m", "netdsl", "train", net, "--dist", "mpi", "--epochs", "1", "-q"]
    done = mpiexec("-n", "1", *rank, "--lr", "0.1", ":", "-n", "1", *rank, "--lr", "0.05")
    assert done.returncode != 0
    assert "have different settings (--lr 0.1 on rank 0, 0.05 on rank 1)" in done.stderr, done.stderr[-2000:]
    assert done.stderr.count("have different settings") == 1


# --data folder: ---------------------------------------------------------------------------------

def _folder(root: Path) -> Path:
    from PIL import Image
    for split in ("train", "val"):
        folder = root / split / "a"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 10), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _child(code: str, timeout=60, limit=None):
    """Python `code` in a child process (under a timeout, and RLIMIT_DATA where `limit` is given)."""
    pre = (lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))) if limit else None
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pre, cwd=ROOT)


LOAD = ("import netdsl\nfrom netdsl import NetError\nfrom netdsl.train import data\n"
        "for root in {roots!r}:\n"
        "    try:\n        ds = data.prepare(data.load('folder:' + root), (1, 8, 8), 10)\n{more}"
        "    except NetError as err:\n        print('refused:', err.message, flush=True)\n")


def test_fifos_and_sockets_named_like_images_are_refused_not_waited_on(tmp_path):
    """A FIFO in the listing, a socket in the listing, and a file that became a FIFO after the
    listing (read without blocking, then refused): three folders in one child, under a timeout."""
    import socket
    fifo, sock, later = (_folder(tmp_path / name) for name in ("fifo", "sock", "later"))
    os.mkfifo(fifo / "train" / "a" / "9.png")
    victim = later / "train" / "a" / "1.png"
    more = (f"        if root == '{later}':\n            import os\n            os.unlink('{victim}')\n"
            f"            os.mkfifo('{victim}')\n            list(ds.train_batches([[0, 1]], epoch=0))\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock / "val" / "a" / "7.jpg"))
        done = _child(LOAD.format(roots=[str(fifo), str(sock), str(later)], more=more), timeout=90)
    said = done.stdout.splitlines()
    assert said == [
        f"refused: --data folder:{fifo}: {fifo}/train/a/9.png is a FIFO (named pipe), not an image file",
        f"refused: --data folder:{sock}: {sock}/val/a/7.jpg is a socket, not an image file",
        f"refused: {victim} is a FIFO (named pipe), not an image file"], done.stdout + done.stderr


def _png(width: int, height: int) -> bytes:
    """A real 1-bit grey PNG of width x height zeros: a few tens of KB that decode to much more."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_by_their_pixels_before_decoding(tmp_path):
    """20,000 x 20,000 is beyond Pillow's own error; 10,000 x 10,000 within the window where Pillow
    only warns (on stderr): both refused by netdsl's bound, by name, with no warning, under 1 GiB."""
    roots, bombs = [], []
    for side in (20000, 10000):
        roots.append(_folder(tmp_path / f"d{side}"))
        bombs.append(roots[-1] / "train" / "a" / "bomb.png")
        bombs[-1].write_bytes(_png(side, side))
        assert bombs[-1].stat().st_size < 200_000  # small on disk: the bomb is in the decoding
    done = _child(LOAD.format(roots=list(map(str, roots)), more=""), timeout=90, limit=1 * GiB)
    assert done.stdout.splitlines() == [f"refused: {bomb}: {side} x {side} pixels is more than netdsl decodes "
                                        f"({1 << 26:,} pixels): a decompression bomb, or an image to shrink first"
                                        for bomb, side in zip(bombs, (20000, 10000))], done.stdout + done.stderr
    assert "Warning" not in done.stderr and "MemoryError" not in done.stderr, done.stderr


def test_an_image_within_the_bound_still_trains(tmp_path):
    from netdsl.train import data as datasets
    from netdsl.train.folder import MAX_IMAGE_PIXELS
    root = _folder(tmp_path / "d")
    (root / "train" / "a" / "wide.png").write_bytes(_png(4000, 1000))
    assert 4000 * 1000 <= MAX_IMAGE_PIXELS
    ds = datasets.prepare(datasets.load(f"folder:{root}"), (1, 8, 8), 10)
    (x, y), = list(ds.train_batches([np.arange(ds.n_train)], epoch=0))
    assert x.shape == (3, 1, 8, 8) and np.isfinite(x).all()
