"""What every subcommand shares: the argument types (sizes, counts, rates), the common flags, and
compiling the FILE argument the way those flags say."""
from __future__ import annotations

import argparse
import math
import re
import sys

from ..errors import render_diagnostic
from ..passes.check_limits import DEFAULT_LIMIT

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgtpe]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtpe", 1):
    _UNITS.update({_p: 10 ** (3 * _i), _p + "b": 10 ** (3 * _i), _p + "ib": 2 ** (10 * _i)})
MAX_SIZE = 2**50  # 1 PiB: more than any machine this runs on has, so a larger size is a typo


def parse_size(text: str) -> int:
    """'8GiB', '512MB', '1e9' -> bytes."""
    m = _SIZE.match(text)
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 8GiB or 512MB")
    value = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be more than 0")
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"'{text}' is more than 1PiB: too large to mean anything here")
    return value


def _number(convert, ok, must: str, kind: str):
    """An argparse type: the flag's value converted, or a message naming the value."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {kind}") from None
        if not ok(value) or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"'{text}' must be {must}" + (
                ", and finite" if isinstance(value, float) and not math.isfinite(value) else ""))
        return value
    return parse


positive_int = _number(int, lambda v: v > 0, "1 or more", "a whole number")
nonneg_int = _number(int, lambda v: v >= 0, "0 or more", "a whole number")
positive_float = _number(float, lambda v: v > 0, "more than 0", "a number")
nonneg_float = _number(float, lambda v: v >= 0, "0 or more", "a number")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # name the flag and the value, exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"netdsl: error: {message}\n")


def common(p: argparse.ArgumentParser) -> None:
    """The flags of every subcommand that compiles one FILE."""
    p.add_argument("file", help="a .net file (or an .onnx or Caffe .prototxt model, imported on the fly)")
    p.add_argument("--memory-limit", type=parse_size, default=None, metavar="SIZE",
                   help="refuse a layer that needs more than this (default 8GiB) and, for run and train, "
                        "a step that plans more (default: the memory the device has free)")
    p.add_argument("--debug", action="store_true", help="verify the IR after every pass")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass (to stderr)")
    p.add_argument("-q", "--quiet", action="store_true", help="no warnings")


def printer(args):
    """The --print-after-all hook for the pass pipeline, or None."""
    if not getattr(args, "print_after_all", False):
        return None
    from ..views.ir_print import print_ir
    return lambda name, g: print(print_ir(g, f"IR after {name}"), file=sys.stderr)


def load_network(path: str, **options):
    """A .net file, or a model file another tool wrote (.onnx, .prototxt), imported on the fly."""
    from ..compiler import compile_source, load
    from ..interchange import can_import, import_model
    if can_import(path):
        text, _ = import_model(path)
        return compile_source(text, f"{path} (imported)", **options)
    return load(path, **options)


def compile_file(args, **extra):
    """The network in args.file, compiled as the common flags say."""
    hook = printer(args)
    return load_network(args.file, memory_limit=args.memory_limit or DEFAULT_LIMIT,
                        debug=args.debug or hook is not None, print_after=hook, **extra)


def warn(net, args, tag: str = "") -> None:
    """The network's warnings on stderr, unless --quiet; each line led by `tag` (a rank's)."""
    if getattr(args, "quiet", False):
        return
    for w in net.warnings:
        text = render_diagnostic(w, net.source, "warning")
        print("\n".join(tag + line for line in text.splitlines()), file=sys.stderr)
