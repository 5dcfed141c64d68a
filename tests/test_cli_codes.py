"""Issue 22: exit codes as stated (0 ok, 1 the input or the environment, 2 the flags), flags that
do nothing refused, and hints that name only commands and flags that exist."""
import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.cli.args import DATA_SETS
from netdsl.cli.main import build_parser, commands

ROOT = Path(__file__).resolve().parent.parent
NETS = ROOT / "nets"
TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
COMMANDS = commands(build_parser())


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "tiny.net"
    path.write_text(TINY)
    return path


# bad flag values: exit 2, the flag and the value named ------------------------------------------

BAD_VALUES = [  # argv after the file, what the message must hold
    (["train", "--data", "imagenet"], "argument --data: 'imagenet' is not a data set netdsl reads"),
    (["train", "--data", "mnsit:/tmp"], "did you mean 'mnist'?"),
    (["train", "--data", "mnist"], "argument --data: 'mnist' names no folder"),
    (["train", "--data", "digits:/tmp"], "'digits:/tmp': digits is built in and takes no folder"),
    (["train", "--device", "gpuu"], "argument --device: 'gpuu' is not one of the choices; did you mean 'gpu'?"),
    (["train", "--epochs", "0"], "argument --epochs: '0' must be 1 or more"),
    (["train", "--lr", "nan"], "argument --lr: 'nan' must be more than 0"),
    (["train", "--schedule", "cosin"], "did you mean 'cosine'?"),
    (["draw", "-o", "x.jpg"], "argument -o/--output: 'x.jpg': netdsl draws no '.jpg' files"),
    (["draw", "-o", "picture"], "'picture': no extension to pick the format by"),
    (["run", "--memory-limit", "lots"], "argument --memory-limit: 'lots' is not a size"),
    (["export", "-o", "m.onnx", "--opset", "99"], "argument --opset: '99' is not one of the choices"),
]


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_flag_value_is_a_usage_error_naming_flag_and_value(net, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main([argv[0], str(net), *argv[1:]])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_every_data_set_the_flag_accepts_is_one_the_loader_knows(tmp_path, monkeypatch):
    """DATA_SETS (cli/args.py) against train/data.py's loader: a name it accepts never meets
    'unknown data set' (its missing folder is another error)."""
    from netdsl import NetError
    from netdsl.train import data as datasets
    monkeypatch.setattr(datasets, "load_digits", lambda seed=0: "digits")  # known; no need to load it
    assert datasets.load("digits") == "digits"
    for name, folder in DATA_SETS.items():
        spec = name if folder is None else f"{name}:{tmp_path / 'absent'}"
        try:
            datasets.load(spec)
        except NetError as err:
            assert "unknown data set" not in err.message, spec


def test_a_misspelt_command_gets_did_you_mean():
    done = subprocess.run([sys.executable, "-m", "netdsl", "sumary", str(NETS / "lenet5.net")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'sumary' is not a command; did you mean 'summary'?" in done.stderr
    assert "Traceback" not in done.stderr


# flags that do nothing ----------------------------------------------------------------------------

NOTHING = [
    (["import", "M.prototxt", "-o", "out.net", "--caffemodel", "W.caffemodel"],
     "--caffemodel W.caffemodel does nothing without --weights"),
    (["import", "M.cfg", "-o", "out.net", "--darknet-weights", "W.weights"],
     "--darknet-weights W.weights does nothing without --weights"),
    (["import", "M.cfg", "-o", "out.net", "--weights", "o.st", "--caffemodel", "W.caffemodel"],
     "--caffemodel W.caffemodel: M.cfg is not a Caffe prototxt (.prototxt)"),
    (["import", "M.onnx", "-o", "out.net", "--weights", "o.st", "--darknet-weights", "W.weights"],
     "an ONNX model carries its weights in the file"),
    (["import", "M.prototxt", "-o", "out.net", "--weights", "o.st", "--caffemodel", "a", "--darknet-weights", "b"],
     "--caffemodel a does nothing with --darknet-weights b"),
    (["export", "NET", "-o", "m.onnx", "--weights", "ck.st", "--seed", "3"], "--seed 3 does nothing with --weights"),
    (["draw", "NET", "-o", "x.svg", "--collapse", "--depth", "2"], "--depth 2 does nothing with --collapse"),
    (["run", "NET", "--device", "cpu", "--tf32"], "--tf32 does nothing with --device cpu"),
    (["train", "NET", "--oversubscribe"], "--oversubscribe does nothing without --ranks"),
]


@pytest.mark.parametrize("argv, message", NOTHING, ids=[" ".join(a[:1] + a[4:]) for a, _ in NOTHING])
def test_a_flag_that_would_do_nothing_is_refused(tmp_path, monkeypatch, capsys, net, argv, message):
    monkeypatch.chdir(tmp_path)
    for name in ("M.prototxt", "M.cfg", "M.onnx"):
        (tmp_path / name).write_text("not read: the flags are checked first")
    assert main([str(net) if a == "NET" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out.net").exists()


def test_tf32_on_a_cpu_that_auto_chose_is_said_once(net, capsys):
    from netdsl.backend.device import get_device
    if get_device("auto").name != "cpu":
        pytest.skip("--device auto takes the GPU here, where --tf32 does something")
    assert main(["run", str(net), "--tf32", "--batch", "2", "--repeat", "1", "--device", "auto", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("--tf32 does nothing on the CPU") == 1


def test_save_into_a_folder_that_does_not_exist_makes_it(net, tmp_path, capsys):
    """The documented choice (docs/command-line.md): every writer makes the missing folders of its
    output, --save included; a path through a file is refused naming the flag."""
    target = tmp_path / "runs" / "a" / "ck.safetensors"
    assert main(["train", str(net), "--epochs", "1", "--batch", "256", "--save", str(target)]) == 0
    assert target.is_file()
    capsys.readouterr()
    assert main(["train", str(net), "--epochs", "1", "--save", str(net / "ck.safetensors")]) == 1
    assert f"--save {net / 'ck.safetensors'}: {net} is a file, not a folder" in capsys.readouterr().err


# the MPI library: an environment error, exit 1, naming it and the fix -----------------------------

def test_an_mpi_library_that_does_not_load_is_named_with_the_fix(tmp_path):
    import os
    env = {**os.environ, "MPI4PY_LIBMPI": str(tmp_path / "libmpi.so.12")}
    done = subprocess.run([sys.executable, "-m", "netdsl", "train", str(NETS / "lenet5.net"), "--dist", "mpi"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stderr
    assert "--dist mpi: mpi4py cannot load the MPI library" in done.stderr
    assert "libmpi.so.12" in done.stderr and ".venv/bin/pip install -e '.[mpi]'" in done.stderr
    assert "internal error" not in done.stderr


# hints and help name only commands and flags that exist --------------------------------------------

MENTION = re.compile(r"\bnetdsl ([a-z]+(?:/[a-z]+)*)((?:(?!netdsl )[^;,()\n`'\"])*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@functools.lru_cache(maxsize=1)
def _strings() -> tuple:
    return tuple(_read_strings())


def _read_strings():
    """(file, line, text) of every string constant in netdsl/, f-strings' fixed parts included,
    and whether it is a hint= or help= argument."""
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hints = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("hint", "help"):
                hints |= {id(c) for c in ast.walk(node.value)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield path.relative_to(ROOT), node.lineno, node.value, id(node) in hints


def test_every_netdsl_command_and_flag_a_text_names_exists():
    options = {name: {s for a in p._actions for s in a.option_strings} for name, p in COMMANDS.items()}
    every_flag = set().union(*options.values())
    wrong = []
    for path, line, text, is_hint in _strings():
        for m in MENTION.finditer(text):
            names, flags = m.group(1).split("/"), FLAG.findall(m.group(2))
            if not flags:
                continue  # prose ("netdsl reads .net files"), not a command line
            for name in names:
                if name not in options:
                    wrong.append(f"{path}:{line}: 'netdsl {name} {' '.join(flags)}': {name} is no command")
                    continue
                wrong += [f"{path}:{line}: netdsl {name} has no {f}" for f in flags if f not in options[name]]
        if is_hint:
            wrong += [f"{path}:{line}: no command has {f}" for f in FLAG.findall(text) if f not in every_flag]
    assert not wrong, "\n".join(wrong)


def test_no_text_tells_to_install_from_the_package_index():
    """netdsl installs from a clone: a hint says the extra's command as the README does."""
    said = [f"{p}:{line}" for p, line, text, _ in _strings() if "pip install 'netdsl[" in text]
    assert not said, said


def test_the_hint_checker_finds_a_flag_a_command_lacks():
    """The check above can fail: the import hint as it read before this issue is caught."""
    m = MENTION.search("netdsl run/train --resume, export --weights read it")
    names, flags = m.group(1).split("/"), FLAG.findall(m.group(2))
    assert names == ["run", "train"] and flags == ["--resume"]
    run_flags = {s for a in COMMANDS["run"]._actions for s in a.option_strings}
    assert "--resume" not in run_flags
