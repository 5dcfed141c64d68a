"""The `netdsl` command line. The only place that formats errors for people.

Exit status: 0 ok, 1 a mistake in the input (file, data), 2 a usage mistake (flags), 3 a bug.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Callable, Sequence

from .errors import NetError, render_diagnostic

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """'8GiB', '512MB', '1e9' -> bytes."""
    m = _SIZE.match(text)
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 8GiB or 512MB")
    value = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be more than 0")
    return value


def _number(convert, ok, must: str, kind: str):
    """An argparse type: the flag's value converted, or a message naming the value."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"'{text}' must be {must}")
        return value
    return parse


positive_int = _number(int, lambda v: v > 0, "1 or more", "a whole number")
nonneg_int = _number(int, lambda v: v >= 0, "0 or more", "a whole number")
positive_float = _number(float, lambda v: v > 0, "more than 0", "a number")
nonneg_float = _number(float, lambda v: v >= 0, "0 or more", "a number")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # name the flag and the value, exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"netdsl: error: {message}\n")


def _printer(args):
    if not getattr(args, "print_after_all", False):
        return None
    from .ir_print import print_ir
    return lambda name, g: print(print_ir(g, f"IR after {name}"), file=sys.stderr)


def _compile(args, **extra):
    from .compiler import load
    printer = _printer(args)
    return load(args.file, memory_limit=args.memory_limit, debug=args.debug or printer is not None,
                print_after=printer, **extra)


def _warn(net, args) -> None:
    if getattr(args, "quiet", False):
        return
    for w in net.warnings:
        print(render_diagnostic(w, net.source, "warning"), file=sys.stderr)


def cmd_check(args) -> int:
    net = _compile(args)
    _warn(net, args)
    t = net.totals()
    print(f"{args.file}: ok: {net.name}, {len(net.layers)} layers, {t.params:,} parameters, {t.macs:,} MACs")
    return 0


def cmd_summary(args) -> int:
    from .report import summary_dict, summary_table
    net = _compile(args)
    if args.optimised:
        from .compiler import optimise
        net = optimise(net, "inference", debug=args.debug or args.print_after_all,
                       print_after=_printer(args))
    if args.json:
        print(json.dumps(summary_dict(net), indent=1))
    else:
        _warn(net, args)
        print(summary_table(net))
    return 0


def cmd_explain(args) -> int:
    net = _compile(args)
    print(net.explain(args.layer))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .net file")
    p.add_argument("--memory-limit", type=parse_size, default=None, metavar="SIZE",
                   help="refuse layers that would need more memory than this (default 8GiB)")
    p.add_argument("--debug", action="store_true", help="verify the IR after every pass")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass (to stderr)")
    p.add_argument("-q", "--quiet", action="store_true", help="no warnings")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netdsl", description="Compile, explain, draw and run convolutional networks written "
                                                "in the netdsl language.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="check a network: ok, or every error")
    _common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON object (stable keys) instead of the table")
    p.add_argument("--optimised", "--optimized", action="store_true",
                   help="the table after the inference passes (bn folding, fusion, dropout and dead outputs removed)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("explain", help="the arithmetic behind one layer")
    _common(p)
    p.add_argument("layer", help="the layer's name, e.g. conv1 or inception3a/b2/conv2")
    p.set_defaults(func=cmd_explain)

    for register in _EXTENSIONS:
        register(sub, _common)
    return parser


# Other modules add their subcommands here (run, train, draw, diff), keeping this file small.
_EXTENSIONS: list[Callable] = []


def _load_extensions() -> None:
    from . import cli_extensions  # noqa: F401  (registers into _EXTENSIONS)


def main(argv: Sequence[str] | None = None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "memory_limit", 0) is None:
        from .passes.check_limits import DEFAULT_LIMIT
        args.memory_limit = DEFAULT_LIMIT
    source = None
    try:
        return args.func(args)
    except NetError as err:
        if err.span is not None:
            source = _source_for(err.span.file)
        print(render_diagnostic(err.diagnostic, source, "error"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netdsl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug of ours, not the user's mistake: say so, briefly
        print(f"netdsl: internal error: {type(exc).__name__}: {exc}\n"
              "  this is a bug in netdsl, not in your file; please report it with the file that caused it",
              file=sys.stderr)
        return 3


def _source_for(file: str) -> str | None:
    try:
        with open(file, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
