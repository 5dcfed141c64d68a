"""Issue 21, "Nothing the user had is replaced": every command that writes refuses, before
anything is written, an output that is one of its inputs or another of its outputs (the same file
by path, symbolic link or hard link), naming both, exit 2.

The guard is one check (netdsl/cli/paths.py) over the roles each argument declares; the first
tests walk every subcommand of the real parser, so a new argument or command cannot slip past it."""
import argparse
import os
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.cli.args import nonneg_float, nonneg_int, parse_size, positive_float, positive_int
from netdsl.cli.interchange import batch_arg
from netdsl.cli.main import build_parser, commands
from netdsl.cli.paths import NOT_A_PATH, READS, REPLACES, WRITES, check_outputs, role, same_file
from netdsl.cli.usage import UsageError

TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
NUMBERS = {positive_int, nonneg_int, positive_float, nonneg_float, parse_size, batch_arg, int, float}
COMMANDS = commands(build_parser())


def takes_free_text(action: argparse.Action) -> bool:
    """An argument whose value could be a path: it takes a value, from no fixed list, not a number."""
    return action.nargs != 0 and action.choices is None and action.type not in NUMBERS \
        and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_free_text_argument_says_whether_it_is_read_written_or_no_path(name):
    undeclared = [a.dest for a in COMMANDS[name]._actions if takes_free_text(a) and role(a) is None]
    assert not undeclared, f"netdsl {name}: say reads(), writes() or not_a_path() for {undeclared}"
    assert all(role(a) in (None, READS, WRITES, NOT_A_PATH) for a in COMMANDS[name]._actions)


def _namespace(parser, name, paths):
    values = {a.dest: paths.get(a.dest) for a in parser._actions if role(a) in (READS, WRITES)}
    return argparse.Namespace(command=name, argv=[], **values)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_output_of_every_command_is_checked_against_every_input_and_output(name, tmp_path):
    """For each output and each other file argument of the command: the same path is refused
    (unless the output continues that input, as train --save does its --resume); distinct paths pass."""
    parser = COMMANDS[name]
    files = [a for a in parser._actions if role(a) in (READS, WRITES)]
    distinct = {a.dest: str(tmp_path / f"{a.dest}.file") for a in files}
    check_outputs(_namespace(parser, name, distinct), parser)  # all different: nothing to refuse
    for out in (a for a in files if role(a) == WRITES):
        for other in (a for a in files if a is not out):
            paths = {**distinct, other.dest: distinct[out.dest]}
            if other.dest in getattr(out, REPLACES):
                check_outputs(_namespace(parser, name, paths), parser)
                continue
            with pytest.raises(UsageError) as err:
                check_outputs(_namespace(parser, name, paths), parser)
            assert "same file" in str(err.value) or "would replace" in str(err.value)


def test_the_commands_that_write_declare_their_outputs():
    """What each command writes, from the commands' own help: the guard knows every one of them."""
    writes = {name: sorted(a.dest for a in p._actions if role(a) == WRITES) for name, p in COMMANDS.items()}
    assert writes["export"] == ["output"] and writes["draw"] == ["output"] and writes["diff"] == ["output"]
    assert writes["import"] == ["output", "weights"] and "save" in writes["train"]


# the same file, however it is named -----------------------------------------------------------

def test_same_file_by_path_link_and_hard_link(tmp_path):
    a = tmp_path / "a.net"
    a.write_text(TINY)
    (tmp_path / "sym.net").symlink_to(a)
    os.link(a, tmp_path / "hard.net")
    assert same_file(a, tmp_path / "sym.net") and same_file(a, tmp_path / "hard.net")
    assert same_file(a, tmp_path / "x" / ".." / "a.net")
    assert same_file(tmp_path / "new.onnx", tmp_path / "." / "new.onnx")  # neither exists yet
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "new.onnx")
    assert same_file(tmp_path / "dangling.onnx", tmp_path / "new.onnx")  # the link would write there
    assert not same_file(a, tmp_path / "b.net")


# through the command line: exit 2, both named, the file untouched ------------------------------

@pytest.fixture
def files(tmp_path):
    net = tmp_path / "net.net"
    net.write_text(TINY)
    ck = tmp_path / "ck.safetensors"
    netdsl.Model(netdsl.compile_source(TINY), device="cpu").save(ck)
    onnx_model = tmp_path / "m.onnx"
    assert main(["export", str(net), "-o", str(onnx_model)]) == 0
    for name, text in (("m.cfg", "[net]\nheight=8\nwidth=8\nchannels=1\n"), ("m.prototxt", "name: 'm'\n"),
                       ("w.caffemodel", "trained weights"), ("net.dot", TINY)):
        (tmp_path / name).write_text(text)
    (tmp_path / "link.net").symlink_to(net)
    os.link(net, tmp_path / "hard.onnx")
    return tmp_path


CASES = [  # argv (names in the fixture's folder), the two named in the message
    (["export", "net.net", "-o", "net.net"], "net.net", "-o net.net would replace the FILE argument net.net"),
    (["export", "net.net", "--weights", "ck.safetensors", "-o", "ck.safetensors"], "ck.safetensors",
     "-o ck.safetensors would replace --weights ck.safetensors"),
    (["export", "link.net", "--output", "net.net"], "net.net",
     "--output net.net would replace the FILE argument link.net (the same file, through a link)"),
    (["export", "net.net", "-o", "hard.onnx"], "net.net", "-o hard.onnx would replace the FILE argument net.net"),
    (["import", "m.onnx", "-o", "m.onnx"], "m.onnx", "-o m.onnx would replace the MODEL argument m.onnx"),
    (["import", "m.cfg", "-o", "m.cfg"], "m.cfg", "-o m.cfg would replace the MODEL argument m.cfg"),
    (["import", "m.prototxt", "-o", "out.net", "--caffemodel", "w.caffemodel", "--weights", "w.caffemodel"],
     "w.caffemodel", "--weights w.caffemodel would replace --caffemodel w.caffemodel"),
    (["import", "m.onnx", "-o", "both", "--weights", "both"], None, "-o both and --weights both are the same file"),
    (["draw", "net.dot", "-o", "net.dot"], "net.dot", "-o net.dot would replace the FILE argument net.dot"),
    (["diff", "net.net", "net.dot", "-o", "net.dot"], "net.dot", "-o net.dot would replace the B argument net.dot"),
    (["train", "net.net", "--save", "net.net", "--epochs", "1"], "net.net",
     "--save net.net would replace the FILE argument net.net"),
    (["train", "net.net", "--resume", "ck.safetensors", "--save", "hard.onnx"], "net.net",
     "--save hard.onnx would replace the FILE argument net.net"),
]


@pytest.mark.parametrize("argv, kept, message", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_an_output_onto_an_input_or_another_output_is_refused_and_nothing_is_written(
        files, monkeypatch, capsys, argv, kept, message):
    monkeypatch.chdir(files)
    before = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "netdsl never writes over one of its inputs" in err or "each output needs a file of its own" in err
    after = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing replaced, no temporary left
    if kept:
        assert (files / kept).read_bytes() == before[kept]


def test_save_onto_its_own_resume_continues_the_checkpoint(tmp_path, capsys):
    net = tmp_path / "net.net"
    net.write_text(TINY)
    ck = tmp_path / "ck.safetensors"
    netdsl.Model(netdsl.compile_source(TINY), device="cpu").save(ck)  # a checkpoint before any epoch
    assert main(["train", str(net), "--epochs", "1", "--batch", "64", "--resume", str(ck), "--save", str(ck)]) == 0
    assert "after 1 epoch" in capsys.readouterr().out
    with netdsl.checkpoint.Checkpoint(ck) as c:
        assert c.info["epoch"] == 1


def test_import_checks_both_outputs_before_writing_either(tmp_path, capsys):
    """An ONNX model without weights and --weights: refused before the .net is written."""
    net = tmp_path / "net.net"
    net.write_text(TINY)
    model = tmp_path / "m.onnx"
    assert main(["export", str(net), "-o", str(model)]) == 0
    folder_file = tmp_path / "taken"
    folder_file.write_text("a file where a folder would be")
    assert main(["import", str(model), "-o", str(tmp_path / "back.net"), "--weights", str(folder_file / "w.st")]) == 1
    assert "--weights" in capsys.readouterr().err
    assert not (tmp_path / "back.net").exists()
