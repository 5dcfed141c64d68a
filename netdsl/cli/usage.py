"""Usage mistakes the argument parser alone cannot see: flags that do nothing without another
(`--caffemodel` without `--weights`) or that another makes pointless (`--tf32` with `--device
cpu`). One table of rules, checked by main.py for every command before it runs; a broken rule is a
UsageError, exit status 2, naming both flags.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..errors import NetError


class UsageError(NetError):
    """A mistake in how a command was called (its flags), not in the files it reads: exit 2."""


@contextmanager
def as_usage() -> Iterator[None]:
    """A check that lives outside the command line (the batch split in train/) raises a NetError;
    where its cause is the flags alone, it is a usage mistake."""
    try:
        yield
    except UsageError:
        raise
    except NetError as err:
        raise UsageError(err.message, err.span, err.hint) from None


ANY = object()  # a rule's `value`: whatever the other flag was given


@dataclass(frozen=True)
class Needs:
    """`flag` does nothing unless `other` is given too."""

    command: str
    flag: str       # the argparse dest
    other: str
    why: str


@dataclass(frozen=True)
class Excludes:
    """`flag` does nothing (or contradicts) when `other` is given (with `value`, where not ANY)."""

    command: str
    flag: str
    other: str
    why: str
    value: Any = ANY


RULES: tuple[Needs | Excludes, ...] = (
    Needs("import", "caffemodel", "weights", "the weights it reads go only into the checkpoint --weights writes"),
    Needs("import", "darknet_weights", "weights", "the weights it reads go only into the checkpoint --weights writes"),
    Excludes("import", "caffemodel", "darknet_weights", "a model has one weights file: Caffe's or Darknet's"),
    Excludes("export", "seed", "weights", "--seed picks the initial weights, and --weights replaces them all"),
    Excludes("draw", "depth", "collapse", "--collapse draws every block as one node, which is --depth 0"),
    *(Excludes("draw", flag, "style", "it shapes the graphviz diagram; a volume drawing has its own layout "
                                      "(--collapse and --focus apply to both)", value="volumes")
      for flag in ("shapes", "rankdir", "depth", "highlight", "no_fold", "no_legend")),
    Excludes("run", "tf32", "device", "TF32 is a GPU's matmul mode; the CPU computes in float32", value="cpu"),
    Excludes("run", "infer", "no_optimise", "--infer runs the inference-optimised graph, which --no-optimise turns off"),
    Needs("train", "oversubscribe", "ranks", "it lets --ranks start more ranks than this machine has cores"),
)


def given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the user gave the flag: flags whose default is None or False are unset otherwise."""
    value = getattr(args, dest, None)
    return value is not None and value is not False


def label(parser: argparse.ArgumentParser, dest: str, argv: Sequence[str] = ()) -> str:
    """How the user names an argument: the option string they typed (-o or --output), the longest
    one otherwise, or a positional's metavar."""
    for action in parser._actions:
        if action.dest != dest:
            continue
        if not action.option_strings:
            return action.metavar or dest.upper()
        typed = [s for s in action.option_strings if any(a == s or a.startswith(s + "=") for a in argv)]
        return (typed or sorted(action.option_strings, key=len, reverse=True))[0]
    return "--" + dest.replace("_", "-")


def check_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Every rule of RULES for this command; the first broken one is a UsageError."""
    argv = getattr(args, "argv", ())
    for rule in RULES:
        if rule.command != args.command or not given(args, rule.flag):
            continue
        flag, other = label(parser, rule.flag, argv), label(parser, rule.other, argv)
        shown = f"{flag} {getattr(args, rule.flag)}" if getattr(args, rule.flag) is not True else flag
        if isinstance(rule, Needs) and not given(args, rule.other):
            raise UsageError(f"{shown} does nothing without {other}: {rule.why}", hint=f"add {other}, or drop {flag}")
        if isinstance(rule, Excludes) and given(args, rule.other) and (
                rule.value is ANY or getattr(args, rule.other) == rule.value):
            value = getattr(args, rule.other)
            said = f"{other} {value}" if value is not True else other
            raise UsageError(f"{shown} does nothing with {said}: {rule.why}", hint=f"drop {flag}")
