"""Which arguments of a command name files it reads, which name files it writes, and the one check
every command passes before it runs: no output is one of the command's inputs, or another of its
outputs. `netdsl export net.net -o net.net` would replace the network with ONNX bytes; `import
M.prototxt --caffemodel W --weights W` the trained weights with a checkpoint of them.

Each argument says its role where it is defined (`reads(...)`, `writes(...)`, `not_a_path(...)`
around `add_argument`); main.py calls `check_outputs` for every command, so a new command that
writes is guarded as soon as its output says `writes`, and tests/test_hardening_outputs.py fails
for a string argument that says no role at all.

The same file is the same by its resolved path (symbolic links followed) or by os.path.samefile
(hard links, and a path spelt differently on a case-insensitive disk).
"""
from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from .usage import UsageError, label

ROLE = "netdsl_role"   # the attribute an argparse action carries its role in
READS, WRITES, NOT_A_PATH = "reads", "writes", "not a path"
REPLACES = "netdsl_may_replace"  # the inputs an output may be (train --save onto its own --resume)


def reads(action: argparse.Action) -> argparse.Action:
    """Mark an argument as a file the command reads."""
    setattr(action, ROLE, READS)
    return action


def writes(action: argparse.Action, may_replace: tuple[str, ...] = ()) -> argparse.Action:
    """Mark an argument as a file the command writes; `may_replace`: the dests of inputs it may
    be (a checkpoint that continues the one it resumed from)."""
    setattr(action, ROLE, WRITES)
    setattr(action, REPLACES, may_replace)
    return action


def not_a_path(action: argparse.Action) -> argparse.Action:
    """Mark a free-text argument as naming no file (a layer's name, a data set's spec)."""
    setattr(action, ROLE, NOT_A_PATH)
    return action


def role(action: argparse.Action) -> str | None:
    return getattr(action, ROLE, None)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file, existing or still to be written."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    with contextlib.suppress(OSError, ValueError):  # one may not exist yet: then where the paths lead
        if os.path.samefile(pa, pb):
            return True
    try:
        return pa.resolve() == pb.resolve()
    except (OSError, RuntimeError):  # a loop of links: no file either could be
        return os.path.abspath(pa) == os.path.abspath(pb)


def _shown(parser: argparse.ArgumentParser, action: argparse.Action, path, argv) -> str:
    """`-o out.svg`, or `the FILE argument net.net` for a positional."""
    name = label(parser, action.dest, argv)
    return f"{name} {path}" if action.option_strings else f"the {name} argument {path}"


def _how(a, b) -> str:
    """What makes two differently written paths one file: said, since the user cannot see it."""
    if os.path.abspath(Path(a).expanduser()) == os.path.abspath(Path(b).expanduser()):
        return ""
    return " (the same file, through a link)"


def check_outputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A UsageError, before anything is written, for an output that is an input or another output."""
    argv = getattr(args, "argv", ())
    files = [(a, getattr(args, a.dest, None)) for a in parser._actions if role(a) in (READS, WRITES)]
    files = [(a, v) for a, value in files for v in (value if isinstance(value, list) else [value])  # nargs="+"
             if isinstance(v, (str, os.PathLike))]
    inputs = [(a, v) for a, v in files if role(a) == READS]
    outputs = [(a, v) for a, v in files if role(a) == WRITES]
    for k, (out, path) in enumerate(outputs):
        flag = label(parser, out.dest, argv)
        for src, src_path in inputs:
            if src.dest not in getattr(out, REPLACES, ()) and same_file(path, src_path):
                raise UsageError(f"{flag} {path} would replace {_shown(parser, src, src_path, argv)}"
                                 f"{_how(path, src_path)}, which this command reads: netdsl never writes over one "
                                 f"of its inputs", hint=f"name another file for {flag}")
        for other, other_path in outputs[:k]:
            if same_file(path, other_path):
                raise UsageError(f"{_shown(parser, other, other_path, argv)} and {flag} {path} are the same file"
                                 f"{_how(path, other_path)}: each output needs a file of its own",
                                 hint=f"name another file for {flag}")
