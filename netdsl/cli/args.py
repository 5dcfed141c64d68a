"""What every subcommand shares: the argument types (sizes, counts, rates), the common flags, and
compiling the FILE argument the way those flags say."""
from __future__ import annotations

import argparse
import math
import re
import sys

from ..errors import render_diagnostic
from ..passes.check_limits import DEFAULT_LIMIT
from .paths import reads

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


# --data: each data set's name, and what follows its colon (None: nothing may)
DATA_SETS = {"digits": None, "mnist": "FOLDER", "fashion": "FOLDER", "fashion-mnist": "FOLDER",
             "cifar10": "FOLDER", "folder": "DIR"}


def data_spec(text: str) -> str:
    """--data NAME or NAME:FOLDER, the name one netdsl knows and the folder there where it needs one."""
    from ..bind import did_you_mean
    name, colon, folder = text.partition(":")
    known = ", ".join(n + (f":{f}" if f else "") for n, f in DATA_SETS.items() if n != "fashion-mnist")
    if name not in DATA_SETS:
        close = did_you_mean(name, DATA_SETS)
        raise argparse.ArgumentTypeError(f"'{text}' is not a data set netdsl reads" + (f"; {close}" if close else "")
                                          + f" (use {known})")
    needs = DATA_SETS[name]
    if needs and not folder:
        raise argparse.ArgumentTypeError(f"'{text}' names no {needs.lower()}: e.g. {name}:~/data/{name}")
    if not needs and colon:
        raise argparse.ArgumentTypeError(f"'{text}': {name} is built in and takes no folder")
    return text


def diagram_file(text: str) -> str:
    """draw/diff -o: a file whose extension names a format netdsl draws."""
    from ..views.render import FORMATS
    suffix = text.rpartition(".")[2].lower() if "." in text.rpartition("/")[2] else ""
    if suffix not in FORMATS:
        raise argparse.ArgumentTypeError(f"'{text}': " + (f"netdsl draws no '.{suffix}' files" if suffix else
                                                           "no extension to pick the format by")
                                          + f" (use {', '.join('.' + f for f in FORMATS)})")
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # name the flag and the value, exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"netdsl: error: {message}\n")

    def _check_value(self, action, value):
        """A value outside a flag's choices (or a misspelt command), with the closest one suggested."""
        if action.choices is None or value in action.choices:
            return
        from ..bind import did_you_mean
        words = [str(c) for c in action.choices]
        close = did_you_mean(str(value), words) if all(isinstance(c, str) for c in action.choices) else None
        what = "a command" if isinstance(action, argparse._SubParsersAction) else "one of the choices"
        raise argparse.ArgumentError(action, f"'{value}' is not {what}" + (f"; {close}" if close else "")
                                     + f" (choose from {', '.join(words)})")


def common(p: argparse.ArgumentParser) -> None:
    """The flags of every subcommand that compiles one FILE."""
    reads(p.add_argument("file", help="a .net file (or an .onnx, Caffe .prototxt or Darknet .cfg model, imported on "
                                      "the fly)"))
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
