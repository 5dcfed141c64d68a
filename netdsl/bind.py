"""Evaluate argument expressions and bind a layer's arguments to its op's signature."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from . import syntax as S
from .errors import NetError
from .ops import OpSpec, ValueType, freeze

MAX_INT = 10**12  # far beyond any real layer; stops 9**9**9 from hanging the compiler


def evaluate(expr: S.Expr, env: Mapping[str, Any]) -> int | float:
    """Integer arithmetic over block parameters: `4*c`, `n-1`."""
    if isinstance(expr, S.Num):
        return expr.value
    if isinstance(expr, S.Var):
        if expr.name not in env:
            hint = did_you_mean(expr.name, env)
            raise NetError(f"unknown name '{expr.name}'", expr.span,
                           hint or ("names in arguments are block parameters" if env else
                                    "names can only be used inside a block, for its parameters"))
        return env[expr.name]
    if isinstance(expr, S.Neg):
        return -evaluate(expr.operand, env)
    if isinstance(expr, S.Paren):
        return evaluate(expr.inner, env)
    left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    if expr.op == "/" and right == 0:
        raise NetError("division by zero", expr.span)
    value = _OPERATORS[expr.op](left, right)
    if abs(value) > MAX_INT:
        raise NetError(f"the number {expr.op} gives is absurdly large", expr.span)
    return value


def _divide(left, right):
    """Exact: a whole number where the division comes out whole (`(c/2)` with c = 64 is 32), else
    a fraction, which a whole-number setting then refuses by its value."""
    if isinstance(left, int) and isinstance(right, int) and left % right == 0:
        return left // right
    return left / right


_OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": _divide}


def did_you_mean(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _convert(vtype: ValueType, arg: S.Arg, env, what: str) -> Any:
    """One argument to one attribute value; words and sizes where the type allows them."""
    if isinstance(arg, S.DimsArg):
        if not vtype.accepts_dims:
            raise NetError(f"{what} must be {vtype.name}, not a size", arg.span)
        raw: Any = arg.values
    elif isinstance(arg, S.ValueArg) and arg.word in vtype.accepts_word:
        raw = arg.word
    elif isinstance(arg, S.ValueArg) and vtype.accepts_word and not vtype.accepts_dims and arg.word not in env:
        raise NetError(f"{what} must be {vtype.name}, not '{arg.word or '...'}'", arg.span,
                       did_you_mean(arg.word or "", vtype.accepts_word))
    else:
        expr = arg.expr if isinstance(arg, S.ValueArg) else arg.value
        raw = evaluate(expr, env)
    try:
        return vtype.convert(raw)
    except (ValueError, TypeError) as exc:
        shown = "x".join(map(str, raw)) if isinstance(raw, tuple) else f"{raw:g}" if isinstance(raw, float) else raw
        raise NetError(f"{what} must be {exc.args[0] if exc.args else vtype.name}, not {shown}", arg.span,
                       vtype.hint) from None


def bind(op: OpSpec, call: S.Call, env: Mapping[str, Any]):
    """`conv 96 11x11 /4 pad 2` -> frozen attrs {'out': 96, 'kernel': (11, 11), ...}."""
    sig = op.signature
    attrs: dict[str, Any] = {}
    given: set[str] = set()
    positional = list(sig.positional)
    args = list(call.args)
    i = 0

    def once(name: str, arg):
        if name in given:
            raise NetError(f"'{name}' is given twice", arg.span)
        given.add(name)

    while i < len(args):
        arg = args[i]
        i += 1
        if isinstance(arg, S.StrideArg):
            if sig.slash is None:
                raise NetError(f"{op.name} takes no stride", arg.span, f"usage: {sig.usage or op.name}")
            once(sig.slash, arg)
            attrs[sig.slash] = _stride(arg, env)
        elif isinstance(arg, S.KwArg):
            if arg.name not in sig.keywords:
                hint = did_you_mean(arg.name, sig.keywords)
                known = ", ".join(f"{k}=" for k in sig.keywords) or "none"
                raise NetError(f"{op.name} has no setting '{arg.name}='", arg.span,
                               hint or f"its settings: {known}")
            once(arg.name, arg)
            attrs[arg.name] = _convert(sig.keywords[arg.name], S.ValueArg(arg.value, arg.span), env, f"{arg.name}")
        elif isinstance(arg, S.ValueArg) and arg.word in sig.options and arg.word not in env:
            if i >= len(args) or isinstance(args[i], (S.StrideArg, S.KwArg)):
                raise NetError(f"'{arg.word}' needs a value", arg.span, f"usage: {sig.usage}")
            once(arg.word, arg)
            attrs[arg.word] = _convert(sig.options[arg.word], args[i], env, arg.word)
            i += 1
        elif isinstance(arg, S.ValueArg) and arg.word in sig.flags and arg.word not in env:
            once(arg.word, arg)
            attr, value = sig.flags[arg.word]
            attrs[attr] = value
        else:
            if not positional:
                word = arg.word if isinstance(arg, S.ValueArg) else None
                words = list(sig.options) + list(sig.flags)
                hint = did_you_mean(word, words) if word else None
                if word == "x":
                    hint = "sizes are written without spaces, like 3x3"
                raise NetError(f"too many arguments for {op.name}", arg.span,
                               hint or (f"usage: {sig.usage}" if sig.usage else f"{op.name} takes no arguments"))
            name, vtype = positional.pop(0)
            once(name, arg)
            attrs[name] = _convert(vtype, arg, env, _describe(op, name))
    missing = [name for name, _ in sig.positional[: sig.required] if name not in attrs]
    if missing:
        end = call.span
        raise NetError(f"{op.name} needs {_describe(op, missing[0]).replace('the ', 'a ', 1)}", end,
                       f"usage: {sig.usage}")
    for key, value in sig.defaults.items():
        attrs.setdefault(key, value)
    return freeze(sig.finish(attrs))


def _stride(arg: S.StrideArg, env) -> tuple[int, int]:
    if isinstance(arg.value, S.DimsArg):
        vals = arg.value.values
        if len(vals) != 2:
            raise NetError("a stride is one number or two (like /2x1)", arg.span)
    else:
        v = evaluate(arg.value, env)
        vals = (v, v)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise NetError(f"the stride must be a positive whole number, not {v}", arg.span)
    return tuple(vals)


_DESCRIPTIONS = {"out": {"conv": "the filter count", "fc": "the unit count"}, "kernel": "the kernel size",
                 "mode": "the pooling mode", "size": "the window size", "p": "the drop probability"}


def _describe(op: OpSpec, attr: str) -> str:
    d = _DESCRIPTIONS.get(attr, attr)
    return d.get(op.name, attr) if isinstance(d, dict) else d
