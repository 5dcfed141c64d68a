"""The syntax tree of a .net file: what the person wrote, with where they wrote it.

Built by `netdsl.parser`, read only by `netdsl.expand`; nothing past expansion sees it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import Span

# --- integer / float expressions in arguments (`4*c`, `n-1`) -------------------------------


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # '+', '-', '*', and '/' (inside parentheses only)
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Paren:
    """`( ... )`: where spaces are free and '/' divides."""

    inner: "Expr"
    span: Span


Expr = Union[Num, Var, BinOp, Neg, Paren]

# --- layer arguments, bound to an op's signature later ------------------------------------


@dataclass(frozen=True)
class DimsArg:
    """`11x11` or `3x227x227`."""

    values: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class StrideArg:
    """`/4`, `/s` or `/2x1`."""

    value: Union[Expr, DimsArg]
    span: Span


@dataclass(frozen=True)
class KwArg:
    """`alpha=0.0001`, `s=2`."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class ValueArg:
    """A number, an expression, or a bare word (`max`, `nobias`, `same`, `pad`)."""

    expr: Expr
    span: Span

    @property
    def word(self) -> str | None:
        return self.expr.name if isinstance(self.expr, Var) else None


Arg = Union[DimsArg, StrideArg, KwArg, ValueArg]

# --- statements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """An op (`conv 96 11x11 /4`) or a block instance (`inception 64 96 128 16 32 32`)."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Branch:
    label: str | None
    body: tuple["Layer", ...] | None  # None: the `shortcut` branch
    span: Span
    shortcut: str = "project"  # how a `shortcut` meets a different shape: project | zeropad


@dataclass(frozen=True)
class Merge:
    """`concat { {..} {..} }` or `add { {..} shortcut }`."""

    kind: str  # 'concat' | 'add' | 'gate'
    branches: tuple[Branch, ...]
    span: Span


@dataclass(frozen=True)
class Side:
    """A side output (GoogLeNet's auxiliary classifiers): runs off the trunk, trunk unchanged."""

    body: tuple["Layer", ...]
    span: Span


@dataclass(frozen=True)
class Repeat:
    count: Expr
    item: "Item"
    span: Span


@dataclass(frozen=True)
class Group:
    """A braced sequence of layers; labelled, it becomes a named scope (`stage2: { ... }`)."""

    body: tuple["Layer", ...]
    span: Span


Item = Union[Call, Merge, Side, Repeat, Group]


@dataclass(frozen=True)
class Layer:
    label: str | None
    label_span: Span | None
    item: Item
    span: Span


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Layer, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Program:
    name: str | None
    name_span: Span | None
    input_shape: tuple[int, ...] | None
    input_span: Span | None
    blocks: tuple[BlockDef, ...]
    layers: tuple[Layer, ...]
    source: str
    file: str
