"""The `netdsl` command line. The only place that formats errors for people.

Exit status: 0 ok, 1 a mistake in the input (file, data) or the environment (a library missing),
2 a usage mistake (flags: argparse's own checks, and UsageError), 3 a bug.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import NetError, render_error
from . import analyse, draw, execute, interchange, predict, runs, tune
from .args import Parser
from .paths import check_outputs
from .usage import UsageError, check_flags

# One module per group of subcommands, each with its own register(sub); the order is --help's.
GROUPS = (analyse, execute, predict, tune, draw, interchange, runs)
# What every command passes before it runs (a UsageError, exit 2, and nothing done otherwise).
CHECKS = (check_flags, check_outputs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="netdsl", description="Compile, explain, draw and run convolutional networks written "
                                               "in the netdsl language.")
    from ..version import __version__
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for group in GROUPS:
        group.register(sub)
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, by name."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # --ranks starts the same command again under mpiexec
    args.parser = parser  # netdsl completion writes a script from it
    try:
        for check in CHECKS:
            check(args, commands(parser)[args.command])
        return args.func(args)
    except NetError as err:  # every diagnostic it carries, each under its source line, then the count
        return _fail(render_error(err, _source_for), 2 if isinstance(err, UsageError) else 1)
    except KeyboardInterrupt:
        return _fail("netdsl: interrupted", 130)
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the operating system refused something: the user's to fix, not our bug
        place = f" {exc.filename}" if exc.filename else ""
        return _fail(f"error: cannot use{place}: {exc.strerror or exc}", 1)
    except Exception as exc:  # a bug of ours, not the user's mistake: say so, briefly
        return _fail(f"netdsl: internal error: {type(exc).__name__}: {exc}\n"
                     "  this is a bug in netdsl, not in your file; please report it with the file that caused it", 3)


def _fail(text: str, status: int) -> int:
    """Say what went wrong. As one of several MPI ranks: tagged with the rank, once for an error
    every rank finds, and every rank is stopped with it (the others would wait for this one in
    their next collective for ever)."""
    comm_module = sys.modules.get("netdsl.train.comm")
    comm = comm_module.active() if comm_module is not None else None
    if comm is None or comm.size == 1:
        print(text, file=sys.stderr)
        return status
    comm.abort_saying(text, status)
    return status


def _source_for(file: str) -> str | None:
    try:
        with open(file, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
