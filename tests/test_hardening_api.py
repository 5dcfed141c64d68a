"""Issue 14, class 4: the Python API speaks as clearly as the command line."""
import numpy as np
import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main
from netdsl.errors import NetTypeError, NetValueError

SRC = "input 1x8x8\nconv 4 3x3\nrelu\nfc 3\nsoftmax\n"


@pytest.fixture(scope="module")
def net():
    return netdsl.compile_source(SRC)


@pytest.fixture
def model(net):
    return netdsl.Model(net, device="cpu", seed=0)


X = np.zeros((2, 1, 8, 8), np.float32)


@pytest.mark.parametrize("call, kind, words", [
    (lambda: netdsl.compile(b"input 1x8x8\nrelu"), TypeError, "not bytes; decode it first"),
    (lambda: netdsl.compile(None), TypeError, "compile takes .net text or a path (a str or os.PathLike), not None"),
    (lambda: netdsl.compile(3), TypeError, "not int"),
    (lambda: netdsl.compile_source(b"x"), TypeError, "compile_source takes .net text (a str), not bytes"),
    (lambda: netdsl.load(None), TypeError, "load takes a path"),
    (lambda: netdsl.Model("input 1x8x8\nrelu"), TypeError, "Model takes a compiled network"),
])
def test_wrong_kinds_of_value(call, kind, words):
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, NetError) and words in info.value.message


@pytest.mark.parametrize("make, kind, words", [
    (lambda m: m([[0.0] * 64, [0.0] * 64]), NetTypeError, "the input batch must be an array of shape Nx1x8x8, not list"),
    (lambda m: m(np.zeros((0, 1, 8, 8), np.float32)), NetValueError, "the input batch is empty (0 images)"),
    (lambda m: m(np.zeros((1, 8, 8), np.float32)), NetValueError, "one more axis: the batch"),
    (lambda m: m(np.zeros((2, 3, 8, 8), np.float32)), NetError, "the input batch is 2x3x8x8, but"),
    (lambda m: m.loss(X, [0, 3]), NetValueError, "label 3 is out of range: "),
    (lambda m: m.loss(X, [0, -1]), NetValueError, "label -1 is out of range"),
    (lambda m: m.loss(X, [0]), NetValueError, "labels must be 2 class indices, one per image, not an array of shape (1,)"),
    (lambda m: m.loss(X, [[0, 1]]), NetValueError, "not an array of shape (1, 2)"),
    (lambda m: m.loss(X, [0.5, 1]), NetValueError, "labels must be whole class indices, not float64 values like 0.5"),
    (lambda m: m.loss(X, [True, False]), NetValueError, "whole class indices, not bool"),
    (lambda m: netdsl.SGD(m, lr=-1), NetValueError, "SGD(lr=...) must be a finite number more than 0, not -1"),
    (lambda m: netdsl.SGD(m, lr=float("nan")), NetValueError, "not nan"),
    (lambda m: netdsl.SGD(m, lr=float("inf")), NetValueError, "not inf"),
    (lambda m: netdsl.SGD(m, momentum=1.0), NetValueError, "SGD(momentum=...) must be a finite number from 0 up to"),
    (lambda m: netdsl.SGD(m, weight_decay=-1e-4), NetValueError, "SGD(weight_decay=...)"),
    (lambda m: netdsl.Model(m.net, seed=-1), NetValueError, "Model(seed=...) takes a whole number, 0 or more, not -1"),
    (lambda m: netdsl.Model(m.net, seed=1.5), NetValueError, "not 1.5"),
    (lambda m: netdsl.Model(m.net, device="tpu"), NetError, "--device tpu: expected auto, cpu or gpu"),
])
def test_values_that_cannot_be_right(model, make, kind, words):
    with pytest.raises(kind) as info:
        make(model)
    assert words in info.value.message, info.value.message


def test_what_is_right_still_works(model):
    assert model.loss(X, np.array([0, 2])) > 0
    assert model.loss(X, np.array([0.0, 2.0])) > 0  # whole floats are class indices
    assert model.loss(X, (1, 1)) > 0
    netdsl.SGD(model, lr=1e-3, momentum=0.0, weight_decay=0.0)


@pytest.mark.parametrize("flags, words", [
    (["--lr", "inf"], "argument --lr: 'inf' must be more than 0, and finite"),
    (["--lr", "nan"], "argument --lr: 'nan' must be more than 0"),
    (["--lr", "-1"], "argument --lr: '-1' must be more than 0"),
    (["--seed", "-1"], "argument --seed: '-1' must be 0 or more"),
    (["--batch", "0"], "argument --batch: '0' must be 1 or more"),
    (["--memory-limit", "2PiB"], "argument --memory-limit: '2PiB' is more than 1PiB: too large to mean anything here"),
    (["--memory-limit", "lots"], "argument --memory-limit: 'lots' is not a size like 8GiB or 512MB"),
])
def test_usage_mistakes_exit_2_naming_the_flag(tmp_path, capsys, flags, words):
    f = tmp_path / "n.net"
    f.write_text(SRC)
    with pytest.raises(SystemExit) as info:
        main(["train", str(f), *flags])
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_a_petabyte_reads_as_a_size(tmp_path, capsys):
    f = tmp_path / "n.net"
    f.write_text(SRC)
    assert main(["check", str(f), "--memory-limit", "1PiB"]) == 0
    assert main(["check", str(f), "--memory-limit", "1e3GiB"]) == 0


# issue 21, left-over item 2: text through the API meets the files' bound ---------------------------

def test_text_through_the_api_meets_the_file_bound_before_anything_big_is_allocated():
    """100 MB of `relu` lines in a child under RLIMIT_DATA of 1 GiB: refused at once, where parsing
    them would exhaust the limit (MemoryError) long before an answer."""
    import resource
    import subprocess
    import sys
    limit = 1 << 30
    code = ("import netdsl\ntext = 'input 3x8x8\\n' + 'relu\\n' * 20_000_000\n"
            "for call in (netdsl.compile, netdsl.compile_source):\n"
            "    try:\n        call(text)\n    except netdsl.NetError as err:\n        print(type(err).__name__, err.message)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)))
    said = ("NetValueError <string>: .net text of more than 1 MiB (100,000,012 characters): too large for a network, "
            "as a .net file would be")
    assert done.stdout.splitlines() == [said] * 2, done.stdout + done.stderr[-2000:]


def test_the_api_bound_is_the_files_bound_in_utf8_bytes(tmp_path):
    from netdsl.compiler import MAX_SOURCE_BYTES
    head = "input 1x8x8\nrelu\n# "
    exact = head + "x" * (MAX_SOURCE_BYTES - len(head) - 1) + "\n"
    assert len(exact.encode()) == MAX_SOURCE_BYTES
    assert len(netdsl.compile_source(exact).layers) == 2
    (tmp_path / "exact.net").write_text(exact)
    assert len(netdsl.load(tmp_path / "exact.net").layers) == 2  # a file of the same size reads too
    with pytest.raises(NetValueError, match="more than 1 MiB"):
        netdsl.compile(exact + "\n")
    # characters are not bytes: 600,000 'é' are 1.2 MB of UTF-8, refused as the file would be
    accents = head + "é" * 600_000 + "\n"
    with pytest.raises(NetValueError, match="more than 1 MiB"):
        netdsl.compile_source(accents)
    (tmp_path / "accents.net").write_text(accents)
    with pytest.raises(NetError, match="larger than 1 MiB"):
        netdsl.load(tmp_path / "accents.net")
