"""The op table: every layer kind netdsl knows, each defined once.

An entry holds the language-level facts of one op: the arguments it accepts (bound from the
generic argument list the grammar produces), its shape rule, its parameter shapes, its
multiply-add count, its receptive-field rule, its fusion kind, its counting conventions and its
diagram style. Passes and back ends ask this table; they never branch on op names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .errors import Diagnostic, NetError, Span

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (N,) for vectors
Attrs = Mapping[str, Any]


def freeze(d: dict) -> Attrs:
    """Attributes are read-only: graph copies share them."""
    return MappingProxyType(dict(d))


class ShapeContext:
    """What a shape rule may use besides its inputs: where the layer was written, and a sink for
    warnings (the floor-division notes)."""

    def __init__(self, span: Span | None, name: str):
        self.span = span
        self.name = name
        self.warnings: list[Diagnostic] = []

    def error(self, message: str, hint: str | None = None) -> NetError:
        return NetError(message, self.span, hint)

    def warn(self, message: str, hint: str | None = None) -> None:
        self.warnings.append(Diagnostic(message, self.span, hint))


# --- argument signatures ---------------------------------------------------------------------
# A value type converts an evaluated argument into an attribute value or raises ValueError with
# the words a person needs ("a positive whole number").


@dataclass(frozen=True)
class ValueType:
    name: str  # what to call it in messages
    accepts_word: tuple[str, ...] = ()  # bare words taken literally (`max`, `same`, `global`)
    accepts_dims: bool = False
    convert: Callable[[Any], Any] = lambda v: v
    hint: str | None = None  # why the range is what it is, shown when a value falls outside it


def _positive_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("a positive whole number")
    return v


def _nonneg_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError("a whole number, 0 or more")
    return v


def _pair(v, positive=True):
    """An int (square) or a 2-tuple of ints (rows x cols)."""
    vals = (v, v) if isinstance(v, int) else tuple(v)
    if len(vals) != 2:
        raise ValueError("a size like 3 or 3x3")
    for x in vals:
        (_positive_int if positive else _nonneg_int)(x)
    return vals


# Real-valued settings are finite and at most this: anything larger overflows float32 arithmetic
# (alpha * x^2 in LRN) long before it could mean something.
MAX_SETTING = 1e6


def _real(v, low: float, low_open: bool, high: float, high_open: bool, words: str) -> float:
    """A finite number in [low, high] (open ends where told), or ValueError with `words`."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(words)
    if v < low or (low_open and v == low) or v > high or (high_open and v == high):
        raise ValueError(words)
    return float(v)


def _probability(v):
    return _real(v, 0, False, 1, True, "from 0 up to (not including) 1")


def _positive_float(v):
    return _real(v, 0, True, MAX_SETTING, False, f"a positive number, at most {MAX_SETTING:,.0f}")


def _nonneg_float(v):
    return _real(v, 0, False, MAX_SETTING, False, f"a number from 0 to {MAX_SETTING:,.0f}")


POS_INT = ValueType("a positive whole number", convert=_positive_int)
SIZE = ValueType("a size like 3 or 3x3", accepts_dims=True, convert=_pair)
KERNEL_OR_GLOBAL = ValueType("a size like 3x3, or 'global'", accepts_word=("global",), accepts_dims=True,
                             convert=lambda v: v if v == "global" else _pair(v))
PAD = ValueType("a padding like 1, 0x3 or 'same'", accepts_word=("same",), accepts_dims=True,
                convert=lambda v: v if v == "same" else _pair(v, positive=False))
PAD_END = ValueType("a padding like 1 or 0x1", accepts_dims=True, convert=lambda v: _pair(v, positive=False))
POOL_MODE = ValueType("'max' or 'avg'", accepts_word=("max", "avg"))
PROB = ValueType("a probability like 0.5", convert=_probability)
POS_FLOAT = ValueType("a positive number", convert=_positive_float)
NONNEG_FLOAT = ValueType("a number, 0 or more", convert=_nonneg_float)
NOBIAS = {"nobias": ("bias", False)}
LEAKY_SLOPE = ValueType("a slope like 0.1", convert=lambda v: _real(v, 0, False, 1, True, "from 0 up to (not including) 1"),
                        hint="the slope multiplies negative inputs; 0 is relu")
LRN_K = ValueType("a positive number", convert=_positive_float,
                  hint="with k=0 a window of zeros (as after a ReLU) divides 0 by 0: the output is NaN; "
                       "AlexNet uses k=2")


@dataclass(frozen=True)
class Signature:
    """How `conv 96 11x11 /4 pad 2 groups 2 nobias` binds to attributes."""

    positional: tuple[tuple[str, ValueType], ...] = ()
    required: int = 0  # how many positionals must be given
    slash: str | None = None  # attribute set by `/N`
    options: Mapping[str, ValueType] = field(default_factory=dict)  # `pad 2`: word then value
    flags: Mapping[str, tuple[str, Any]] = field(default_factory=dict)  # `nobias` -> ("bias", False)
    keywords: Mapping[str, ValueType] = field(default_factory=dict)  # `alpha=0.0001`
    defaults: Mapping[str, Any] = field(default_factory=dict)
    usage: str = ""
    finish: Callable[[dict], dict] = lambda attrs: attrs  # defaults that depend on other attributes


# --- the op entry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str  # fusion kind: opaque | elementwise | reduction | injective | merge | head | source
    doc: str
    signature: Signature = Signature()
    shape: Callable[[list[Shape], Attrs, ShapeContext], Shape] = lambda ins, a, ctx: ins[0]
    params: Callable[[Shape, Attrs], dict[str, Shape]] = lambda s, a: {}
    buffers: Callable[[Shape, Attrs], dict[str, Shape]] = lambda s, a: {}
    macs: Callable[[list[Shape], Shape, Attrs], int] = lambda ins, out, a: 0
    # receptive field: ((kh, kw), (sh, sw), (ph, pw)) of the window this op applies, or None
    # for ops that look at one position only (elementwise) or merge their inputs.
    window: Callable[[list[Shape], Attrs], tuple | None] = lambda ins, a: None
    stores_output: bool = True  # activation-memory convention: in-place/views store nothing new
    arity: str = "one"  # one | many | none
    counter: str = ""  # default-name counter; conv and fc share 'layer' (conv1..conv5, fc6..)
    prefix: str = ""  # default-name prefix
    style: str = "other"  # diagram category (colour in the legend)
    written: Callable[[Attrs], str] = lambda a: ""  # the layer as a person writes it
    # may an activation run in place on this op's output (its backward never reads its output)?
    epilogue_ok: bool = False
    # How views explain a layer of this op: facts keyed by line ("output": how the output size
    # arises, "params": why the parameter count is what it is, "detail": a line more, "join": how a
    # merge makes its output). Missing keys get the generic text (views/explain.py).
    explain: Callable[[list[Shape], Shape, Attrs], dict[str, str]] = lambda ins, out, a: {}
    weighted: bool = False  # counts toward a network's depth (the lecture's "layers": conv and fc)
    # may this activation run as the epilogue of its producer (passes/fuse.py)? Only where it has
    # no parameters and its gradient is a function of its output alone (relu: y > 0; tanh:
    # 1 - y^2; sigmoid: y(1 - y); relu6: 0 < y < 6; hsigmoid: 1/6 where 0 < y < 1), so the fused
    # node keeps one array for the backward pass. Every form of it derives from this flag;
    # tests/test_epilogue_table.py asks each back end for one.
    epilogue: bool = False
    # rewritten by a pass before any back end or export sees it (passes/lower_shortcuts.py)
    lowered: bool = False

    @property
    def is_head(self) -> bool:
        return self.kind == "head"


def spatial(ins: list[Shape], ctx: ShapeContext, what: str) -> Shape:
    (s,) = ins
    if len(s) != 3:
        raise ctx.error(f"{what} needs a CxHxW feature map, but its input is a vector of {s[0]} values",
                        "put it before the first fc/flatten layer")
    return s


def ceil_size(n: int, k: int, s: int, p: int, e: int = 0) -> int:
    """Ceil rounding (Caffe, ONNX ceil_mode, PyTorch): ceil((n + 2p + e - k)/s) + 1 windows, less a
    last one that would start in the right padding (it would see no input). e: padend."""
    out = -(-(n + 2 * p + e - k) // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def out_size(n: int, k: int, s: int, p: int, ceil: bool = False, e: int = 0) -> int:
    """How many windows fit along one axis: floored (the default) or ceiled; e more padding at the end."""
    return ceil_size(n, k, s, p, e) if ceil else (n + 2 * p + e - k) // s + 1


def pad_end(attrs: Attrs) -> tuple[int, int]:
    """`padend E`: padding after the input only (bottom, right), beyond `pad`'s on both sides."""
    return tuple(attrs.get("padend", (0, 0)))


def end_extension(ins: list[Shape], attrs: Attrs) -> tuple[int, int]:
    """Rows and columns the windows read past the symmetrically padded input (bottom, right): the
    layer's padend and a ceil-mode pool's overhang. The kernels extend the input by this much
    (zeros, or -inf for max pooling) and run as if the padding were symmetric."""
    if attrs.get("kernel") == "global":
        return (0, 0)
    (kh, kw), (sh, sw), (ph, pw) = window_geometry(ins, attrs)
    _, h, w = ins[0]
    ceil = bool(attrs.get("ceil"))
    return tuple(max(0, (out_size(n, k, st, p, ceil, e) - 1) * st + k - (n + 2 * p))
                 for n, k, st, p, e in ((h, kh, sh, ph, pad_end(attrs)[0]), (w, kw, sw, pw, pad_end(attrs)[1])))


def size_arithmetic(n: int, k: int, s: int, p: int, out: int, ceil: bool = False, e: int = 0) -> str:
    """The output-size rule along one axis as the lecture writes it, `(227 - 11)/4 + 1 = 55`, with
    every term that enters the value (pad on both sides, padend after) and how it was rounded.
    The floor warning and `netdsl explain` both print this, so text and value cannot part."""
    pad = (f" + 2*{p}" if p else "") + (f" + {e}" if e else "")
    formula = f"({n}{pad} - {k})/{s} + 1"
    exact = (n + 2 * p + e - k) / s + 1
    if exact == out:
        return f"{formula} = {out}"
    if not ceil:
        return f"{formula} = {exact:g}, floored to {out}"
    up = math.ceil(exact)
    if up == out:
        return f"{formula} = {exact:g}, ceiled to {out}"
    return (f"{formula} = {exact:g}, ceiled to {up}; window {up} would start at {(up - 1) * s - p} in the right "
            f"padding (input ends at {n - 1}), so it is dropped: {out}")


def _out_size(n: int, k: int, s: int, p: int, axis: str, ctx: ShapeContext, what: str, ceil: bool = False,
              e: int = 0):
    """Floor((n + 2p + e - k)/s) + 1 (or the ceil rule), and the note to show when real input goes unseen."""
    padded = n + 2 * p + e
    if k > padded:
        pad_txt = f" + 2*{p} padding" if p else ""
        raise ctx.error(f"{what} window {k} is larger than its padded input {padded} ({axis}: {n}{pad_txt})",
                        f"pad {(k - n + 1) // 2} would make it fit" if p == 0 else None)
    if ceil:  # every row is seen: no note
        return ceil_size(n, k, s, p, e), None
    out = (padded - k) // s + 1
    left_over = (padded - k) % s - e
    # Note it only when real input (not padding) goes unseen, and only for windows that touch or
    # overlap (k >= s): a 1x1 /2 conv skips every other row by design.
    note = None
    if left_over > p and k >= s:
        note = (size_arithmetic(n, k, s, p, out, False, e), left_over - p)
    return out, note


def _resolve_pad(attrs: Attrs, kernel, ctx: ShapeContext):
    pad = attrs.get("pad", (0, 0))
    if pad != "same":
        return pad
    if attrs.get("stride", (1, 1)) != (1, 1):
        raise ctx.error("pad same keeps the size only at stride 1",
                        f"write the padding as a number, e.g. pad {(kernel[0] - 1) // 2}")
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ctx.error(f"pad same needs an odd kernel, not {kernel[0]}x{kernel[1]}")
    return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)


def window_geometry(ins: list[Shape], attrs: Attrs) -> tuple:
    """((kh, kw), (sh, sw), (ph, pw)) with 'global' and 'same' resolved; shared by the shape,
    receptive-field and kernel code so the three can never disagree."""
    _, h, w = ins[0]
    kernel = attrs["kernel"]
    if kernel == "global":
        return (h, w), (1, 1), (0, 0)
    pad = attrs.get("pad", (0, 0))
    if pad == "same":
        pad = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return kernel, attrs["stride"], pad


def _window_shape(ins, attrs, ctx, what, channels_out):
    c, h, w = spatial(ins, ctx, what)
    if attrs["kernel"] == "global":
        return (channels_out or c, 1, 1)
    kernel = attrs["kernel"]
    pad = _resolve_pad(attrs, kernel, ctx)
    stride = attrs["stride"]
    ceil = bool(attrs.get("ceil"))
    eh, ew = pad_end(attrs)
    if (eh or ew) and attrs.get("pad") == "same":
        raise ctx.error("padend goes with a pad written as a number, not pad same")
    oh, note_h = _out_size(h, kernel[0], stride[0], pad[0], "height", ctx, what, ceil, eh)
    ow, note_w = _out_size(w, kernel[1], stride[1], pad[1], "width", ctx, what, ceil, ew)
    notes = [(axis, note) for axis, note in (("height", note_h), ("width", note_w)) if note]
    if notes and note_h == note_w:
        notes = [("height and width", note_h)]
    for axis, (arithmetic, unseen) in notes:
        ctx.warn(f"{what} output {axis}: {arithmetic}",
                 f"the window does not tile the input: its last {unseen} row(s)/column(s) are never seen; "
                 "a size that tiles exactly avoids this (AlexNet's 224 vs 227)")
    return (channels_out or c, oh, ow)


# conv ------------------------------------------------------------------------------------------


def _conv_shape(ins, a, ctx):
    c = spatial(ins, ctx, "conv")[0]
    g = a["groups"]
    if c % g:
        raise ctx.error(f"groups {g} does not divide the {c} input channels",
                        f"choose groups from {_divisors(c)}")
    if a["out"] % g:
        raise ctx.error(f"groups {g} does not divide the {a['out']} filters",
                        f"choose groups from {_divisors(math.gcd(a['out'], c))}")
    return _window_shape(ins, a, ctx, "conv", a["out"])


def _divisors(n: int) -> str:
    ds = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, ds))


def _conv_params(s, a):
    p = {"weight": (a["out"], s[0] // a["groups"], *a["kernel"])}
    if a["bias"]:
        p["bias"] = (a["out"],)
    return p


def _conv_macs(ins, out, a):
    kh, kw = a["kernel"]
    return out[0] * out[1] * out[2] * (ins[0][0] // a["groups"]) * kh * kw


def _dims_text(d) -> str:
    return f"{d[0]}x{d[1]}" if isinstance(d, tuple) else str(d)


def _window_text(a, default_stride) -> list[str]:
    """`/S pad P padend E` as a person writes them, each left out where it has its default."""
    parts = []
    if a["stride"] != default_stride:
        parts.append(f"/{a['stride'][0]}" if a["stride"][0] == a["stride"][1] else f"/{_dims_text(a['stride'])}")
    if a["pad"] != (0, 0):
        p = a["pad"]
        parts.append("pad same" if p == "same" else f"pad {p[0]}" if p[0] == p[1] else f"pad {_dims_text(p)}")
    return parts + _padend_text(a)


def _conv_written(a):
    parts = [f"conv {a['out']} {_dims_text(a['kernel'])}"] + _window_text(a, (1, 1))
    if a["groups"] != 1:
        parts.append(f"groups {a['groups']}")
    if not a["bias"]:
        parts.append("nobias")
    return " ".join(parts)


# pool ------------------------------------------------------------------------------------------


def _pool_stride(a: dict) -> dict:
    """Pooling steps by its own size unless told otherwise (PyTorch's default too)."""
    if "stride" not in a:
        a["stride"] = (1, 1) if a["kernel"] == "global" else a["kernel"]
    return a


def _pool_shape(ins, a, ctx):
    """A window has to see some input: a global pool takes no pad or stride, and a pad as wide as
    the window makes the edge windows lie wholly in the padding, where max pooling gives -inf
    and average pooling 0 (or 0/0 with exclude_pad). Narrower pads are fine, as in ONNX and
    Caffe (PyTorch asks for at most half the window)."""
    if a["kernel"] == "global":
        if a["pad"] != (0, 0) or a["stride"] != (1, 1) or a["ceil"] or not a["count_pad"] or pad_end(a) != (0, 0):
            raise ctx.error("a global pool covers the whole map: it takes no pad, stride, ceil or exclude_pad",
                            f"write pool {a['mode']} global")
        return _window_shape(ins, a, ctx, "pool", None)
    spatial(ins, ctx, "pool")
    if a["mode"] == "max" and not a["count_pad"]:
        raise ctx.error("exclude_pad is for average pooling: max pooling never counts its padding",
                        "drop exclude_pad")
    kernel = a["kernel"]
    pad = _resolve_pad(a, kernel, ctx)
    for axis, k, p, e in (("height", kernel[0], pad[0], pad_end(a)[0]), ("width", kernel[1], pad[1], pad_end(a)[1])):
        if e and p < k <= p + e:
            raise ctx.error(f"pool pad {p} and padend {e} make the last {k}-wide window ({axis}) lie wholly in "
                            "the padding after the input, so it sees no input at all", f"keep pad + padend under {k}")
        if p >= k:
            raise ctx.error(f"pool pad {p} is not less than its {k}-wide window ({axis}): the first window "
                            f"covers padding rows -{p}..{k - p - 1} only, so it sees no input at all",
                            f"use pad {k - 1} or less (PyTorch allows at most {k // 2})")
    return _window_shape(ins, a, ctx, "pool", None)


def _padend_text(a) -> list[str]:
    e = tuple(a.get("padend", (0, 0)))
    if e == (0, 0):
        return []
    return [f"padend {e[0]}" if e[0] == e[1] else f"padend {_dims_text(e)}"]


def _pool_written(a):
    if a["kernel"] == "global":
        return f"pool {a['mode']} global"
    parts = [f"pool {a['mode']} {_dims_text(a['kernel'])}"] + _window_text(a, a["kernel"])
    if a.get("ceil"):
        parts.append("ceil")
    if not a.get("count_pad", True):
        parts.append("exclude_pad")
    return " ".join(parts)


def _flat(s: Shape) -> int:
    return math.prod(s)


def _concat_shape(ins, a, ctx):
    if all(len(s) == 1 for s in ins):
        return (sum(s[0] for s in ins),)
    if any(len(s) != 3 for s in ins):
        raise ctx.error("concat mixes feature maps and vectors: " + ", ".join(shape_text(s) for s in ins))
    sizes = {s[1:] for s in ins}
    if len(sizes) > 1:
        raise ctx.error("concat needs the same height and width in every branch, got "
                        + ", ".join(shape_text(s) for s in ins))
    return (sum(s[0] for s in ins), *ins[0][1:])


def _add_shape(ins, a, ctx):
    if len(set(ins)) > 1:
        raise ctx.error("add needs the same shape in every branch, got " + ", ".join(shape_text(s) for s in ins))
    return ins[0]


def _shortcut_shape(ins, a, ctx):
    """Identity when the other branch keeps the shape; else a 1x1 projection with the stride that
    makes the sizes meet (option B), or with `shortcut zeropad` the identity subsampled by that
    stride and padded with zero channels (option A); lowered by passes/lower_shortcuts."""
    src, like = ins
    if src == like:
        return like
    if len(src) != 3 or len(like) != 3:
        raise ctx.error(f"the shortcut cannot turn {shape_text(src)} into {shape_text(like)}")
    stride = shortcut_stride(src, like)
    zeropad = a.get("mode") == "zeropad"
    if stride is None:
        how = "subsampling" if zeropad else "1x1 projection"
        raise ctx.error(f"no {how} with a whole-number stride turns {shape_text(src)} into {shape_text(like)}",
                        "write the shortcut branch out, e.g. { conv C 1x1 /2 nobias; bn }")
    if zeropad and like[0] < src[0]:
        raise ctx.error(f"shortcut zeropad adds zero channels, but the other branch has fewer channels "
                        f"({like[0]}) than the input ({src[0]})", "write 'shortcut' for a 1x1 projection")
    return like


def shortcut_stride(src: Shape, like: Shape) -> tuple[int, int] | None:
    out = []
    for n, m in zip(src[1:], like[1:]):
        s = max(1, -(-n // m))
        if (n - 1) // s + 1 != m:
            return None
        out.append(s)
    return tuple(out)


def shape_text(s: Shape) -> str:
    return "x".join(map(str, s))


def _bn_written(a):
    """`bn`, with the settings that differ from the defaults (an imported model's eps)."""
    parts = ["bn"] + [f"{k}={a[k]:g}" for k, default in (("eps", 1e-5), ("momentum", 0.1)) if a.get(k, default) != default]
    return " ".join(parts)


def _lrn_written(a):
    return f"lrn {a['size']} alpha={a['alpha']:g} beta={a['beta']:g} k={a['k']:g}"


# explanations: each op's own words, beside its shape rule ------------------------------------


def _window_output(ins, out, a) -> str:
    """The output size of a windowed op, each axis's arithmetic (one line when both agree)."""
    (kh, kw), (sh, sw), (ph, pw) = window_geometry(ins, a)
    _, h, w = ins[0]
    ceil = bool(a.get("ceil"))
    eh, ew = pad_end(a)
    hs = size_arithmetic(h, kh, sh, ph, out[1], ceil, eh)
    ws = size_arithmetic(w, kw, sw, pw, out[2], ceil, ew)
    return (hs if hs == ws else f"height {hs}; width {ws}") + f" -> {shape_text(out)}"


def _conv_explain(ins, out, a) -> dict[str, str]:
    facts = {"output": _window_output(ins, out, a)}
    c = ins[0][0]
    if a["groups"] == c and c > 1:
        kh, kw = a["kernel"]
        per = a["out"] // c
        facts["params"] = (f"(depthwise: one {kh}x{kw} filter per channel, {kh * kw} weights each"
                           + (f"; {per} filters per channel" if per != 1 else "") + ")")
    elif a["groups"] != 1:
        facts["params"] = f"(groups {a['groups']}: each filter sees {c // a['groups']} of {c} channels)"
    return facts


def _pool_explain(ins, out, a) -> dict[str, str]:
    facts = {"output": _window_output(ins, out, a), "params": "(pooling applies a fixed rule: nothing is learnt)"}
    if a["mode"] == "avg":
        (kh, kw), _, _ = window_geometry(ins, a)
        if a["count_pad"]:
            facts["detail"] = (f"average: each window's sum divided by its {kh}*{kw} = {kh * kw} positions, padding "
                               "counted" + (" (a ceil window past the padding divides by what it covers of input and "
                                            "padding)" if a.get("ceil") else ""))
        else:
            facts["detail"] = ("average: each window's sum divided by the input values it covers (exclude_pad: "
                               "padding not counted)")
    return facts


def _fc_explain(ins, out, a) -> dict[str, str]:
    if len(ins[0]) != 3:
        return {}
    return {"output": f"{out[0]} units; the {shape_text(ins[0])} input is flattened to {_flat(ins[0]):,} values"}


def _concat_explain(ins, out, a) -> dict[str, str]:
    if len(out) == 3:
        parts = " + ".join(str(s[0]) for s in ins)
        return {"output": f"channels {parts} = {out[0]} -> {shape_text(out)}",
                "join": f"concat: {parts} = {out[0]} channels -> {shape_text(out)}"}
    return {"output": f"{' + '.join(str(s[0]) for s in ins)} = {out[0]} values",
            "join": f"concat: {' + '.join(str(s[0]) for s in ins)} = {out[0]} values"}


def _add_explain(ins, out, a) -> dict[str, str]:
    return {"output": f"elementwise sum of {len(ins)} inputs of {shape_text(out)}",
            "join": "add: " + " + ".join(shape_text(s) for s in ins) + f" -> {shape_text(out)}"}


_ACT = dict(kind="elementwise", stores_output=False, style="activation")

OPS: dict[str, OpSpec] = {op.name: op for op in [
    OpSpec(
        "input", "source", "the network's input", arity="none", style="input",
        shape=lambda ins, a, ctx: a["shape"], written=lambda a: "input " + shape_text(a["shape"])),
    OpSpec(
        "conv", "opaque", "2-D convolution: filters, kernel, /stride, pad, groups, nobias",
        Signature(positional=(("out", POS_INT), ("kernel", SIZE)), required=2, slash="stride",
                  options={"pad": PAD, "padend": PAD_END, "groups": POS_INT}, flags=NOBIAS,
                  defaults={"stride": (1, 1), "pad": (0, 0), "padend": (0, 0), "groups": 1, "bias": True},
                  usage="conv FILTERS KxK [/STRIDE] [pad P|same] [groups G] [nobias], e.g. conv 96 11x11 /4"),
        shape=_conv_shape, params=_conv_params, macs=_conv_macs,
        explain=_conv_explain, weighted=True,
        window=lambda ins, a: window_geometry(ins, a),
        counter="layer", prefix="conv", style="conv", written=_conv_written, epilogue_ok=True),
    OpSpec(
        "pool", "reduction", "max or average pooling over a window, or global",
        Signature(positional=(("mode", POOL_MODE), ("kernel", KERNEL_OR_GLOBAL)), required=2, slash="stride",
                  options={"pad": PAD, "padend": PAD_END},
                  flags={"ceil": ("ceil", True), "exclude_pad": ("count_pad", False)},
                  defaults={"pad": (0, 0), "padend": (0, 0), "ceil": False, "count_pad": True}, finish=_pool_stride,
                  usage="pool max|avg KxK [/STRIDE] [pad P] [ceil] [exclude_pad], or pool avg global, "
                        "e.g. pool max 3x3 /2"),
        shape=_pool_shape, explain=_pool_explain,
        window=lambda ins, a: window_geometry(ins, a),
        counter="pool", prefix="pool", style="pool", written=_pool_written, epilogue_ok=True),
    OpSpec(
        "fc", "opaque", "fully connected layer (flattens a feature map first)",
        Signature(positional=(("out", POS_INT),), required=1, flags=NOBIAS, defaults={"bias": True},
                  usage="fc UNITS [nobias], e.g. fc 4096"),
        shape=lambda ins, a, ctx: (a["out"],), explain=_fc_explain, weighted=True,
        params=lambda s, a: {"weight": (a["out"], _flat(s)), **({"bias": (a["out"],)} if a["bias"] else {})},
        macs=lambda ins, out, a: _flat(ins[0]) * a["out"],
        window=lambda ins, a: (tuple(ins[0][1:]), (1, 1), (0, 0)) if len(ins[0]) == 3 else None,
        counter="layer", prefix="fc", style="fc", epilogue_ok=True,
        written=lambda a: f"fc {a['out']}" + ("" if a["bias"] else " nobias")),
    OpSpec("relu", doc="rectified linear unit, max(0, x)", prefix="relu", counter="relu",
           written=lambda a: "relu", epilogue=True, **_ACT),
    OpSpec("leaky", doc="leaky ReLU: x where x > 0, else slope * x (Darknet's slope is 0.1)",
           signature=Signature(positional=(("slope", LEAKY_SLOPE),), defaults={"slope": 0.1},
                               usage="leaky [SLOPE], e.g. leaky 0.1"),
           prefix="leaky", counter="leaky", written=lambda a: f"leaky {a['slope']:g}", **_ACT),
    OpSpec("tanh", doc="hyperbolic tangent", prefix="tanh", counter="tanh", written=lambda a: "tanh",
           epilogue=True, **_ACT),
    OpSpec("sigmoid", doc="logistic sigmoid", prefix="sigmoid", counter="sigmoid",
           written=lambda a: "sigmoid", epilogue=True, **_ACT),
    OpSpec(
        "lrn", "opaque", "local response normalisation across channels (AlexNet)",
        Signature(positional=(("size", POS_INT),), required=0,
                  keywords={"alpha": NONNEG_FLOAT, "beta": NONNEG_FLOAT, "k": LRN_K},
                  defaults={"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
                  usage="lrn [SIZE] [alpha=A] [beta=B] [k=K], e.g. lrn 5 alpha=0.0001 beta=0.75 k=2"),
        shape=lambda ins, a, ctx: spatial(ins, ctx, "lrn"),
        counter="norm", prefix="norm", style="norm", written=_lrn_written),
    OpSpec(
        "bn", "elementwise", "batch normalisation with a learnt scale and shift per channel",
        Signature(keywords={"eps": POS_FLOAT, "momentum": PROB}, defaults={"eps": 1e-5, "momentum": 0.1},
                  usage="bn [eps=E] [momentum=M]"),
        params=lambda s, a: {"weight": (s[0],), "bias": (s[0],)},
        buffers=lambda s, a: {"running_mean": (s[0],), "running_var": (s[0],)},
        counter="bn", prefix="bn", style="norm", written=_bn_written, epilogue_ok=True),
    OpSpec(
        "dropout", "elementwise", "inverted dropout while training, identity in evaluation",
        Signature(positional=(("p", PROB),), defaults={"p": 0.5}, usage="dropout [P], e.g. dropout 0.5"),
        stores_output=False, counter="dropout", prefix="dropout", style="regularise",
        written=lambda a: f"dropout {a['p']:g}"),
    OpSpec("flatten", "injective", "a feature map as one vector (a view: stores nothing)",
           shape=lambda ins, a, ctx: (_flat(ins[0]),), stores_output=False,
           window=lambda ins, a: (tuple(ins[0][1:]), (1, 1), (0, 0)) if len(ins[0]) == 3 else None,
           counter="flatten", prefix="flatten", style="shape", written=lambda a: "flatten"),
    OpSpec("concat", "merge", "channel concatenation of parallel branches", arity="many",
           shape=_concat_shape, explain=_concat_explain,
           stores_output=False, counter="concat", prefix="concat", style="merge",
           written=lambda a: "concat"),
    OpSpec("add", "merge", "elementwise sum of parallel branches (residual join)", arity="many",
           shape=_add_shape, explain=_add_explain,
           counter="add", prefix="add", style="merge", written=lambda a: "add", epilogue_ok=True),
    OpSpec("shortcut", "merge", "identity, or 1x1 projection (or with zeropad: zero channels) where the shapes differ",
           arity="many",
           shape=_shortcut_shape, stores_output=False, counter="shortcut", prefix="shortcut", style="merge",
           written=lambda a: "shortcut" if a.get("mode", "project") == "project" else f"shortcut {a['mode']}",
           lowered=True),
    OpSpec("softmax", "head", "softmax classifier head (cross-entropy loss)", stores_output=False,
           counter="softmax", prefix="softmax", style="head", written=lambda a: "softmax"),
    OpSpec("svm", "head", "multiclass SVM head (hinge loss)",
           Signature(keywords={"margin": POS_FLOAT}, defaults={"margin": 1.0}, usage="svm [margin=M]"),
           stores_output=False, counter="svm", prefix="svm", style="head",
           written=lambda a: "svm" if a["margin"] == 1.0 else f"svm margin={a['margin']:g}"),
]}


# --- the zoo's ops (issue 26): MobileNet's and EfficientNet's activations, squeeze-and-excitation's
# gate, option A's zero-padded identity, ShuffleNet v2's split and shuffle. Kernels in
# backend/zoo_kernels.py, ONNX mappings in interchange/onnx_export.py's zoo block.


def _activation_explain(formula: str, note: str = ""):
    return lambda ins, out, a: {"detail": formula + (f" ({note})" if note else "")}


def _gate_shape(ins, a, ctx):
    """x (CxHxW) times a per-channel gate: the gate is C values (an fc's output) or Cx1x1 (a
    1x1 conv after a global pool), one factor per channel of x."""
    if len(ins) != 2:
        raise ctx.error(f"gate joins two branches (the map and its gate), got {len(ins)}",
                        "gate { shortcut; { pool avg global; conv R 1x1; relu; conv C 1x1; sigmoid } }")
    x, g = ins
    if len(x) != 3:
        raise ctx.error(f"gate's first branch must be a CxHxW feature map, got {shape_text(x)}")
    if g not in ((x[0],), (x[0], 1, 1)):
        raise ctx.error(f"gate needs one factor per channel of the {shape_text(x)} map ({x[0]} or {x[0]}x1x1), "
                        f"but its gate branch gives {shape_text(g)}",
                        f"end the gate branch in a global pool and a 1x1 conv (or fc) of {x[0]}")
    return x


def _gate_explain(ins, out, a) -> dict[str, str]:
    x, g = ins
    text = (f"gate: each of the {x[0]} channels of {shape_text(x)} times its own factor from the "
            f"{shape_text(g)} gate -> {shape_text(out)}")
    return {"output": text, "join": text}


def _zeropad_shape(ins, a, ctx):
    c, h, w = spatial(ins, ctx, "zeropad")
    if a["out"] < c:
        raise ctx.error(f"zeropad pads channels up: {a['out']} is fewer than the {c} input channels")
    sh, sw = a["stride"]
    return (a["out"], (h - 1) // sh + 1, (w - 1) // sw + 1)


def _zeropad_explain(ins, out, a) -> dict[str, str]:
    c, h, w = ins[0]
    sh, sw = a["stride"]
    sample = f"one row in {sh} and one column in {sw} kept, " if (sh, sw) != (1, 1) else ""
    return {"output": f"{sample}{c} channels + {out[0] - c} of zeros = {out[0]} -> {shape_text(out)}",
            "params": "(option A: the identity, subsampled and padded with zero channels; nothing is learnt)"}


def _split_shape(ins, a, ctx):
    c = ins[0][0]
    if not a["take"]:
        raise ctx.error("split needs the part to keep", "e.g. split 2 take 1 (the first half of the channels)")
    if a["take"] > a["parts"]:
        raise ctx.error(f"split {a['parts']} has no part {a['take']}", f"take 1 to {a['parts']}")
    if len(ins[0]) != 3 or c % a["parts"]:
        raise ctx.error(f"split {a['parts']} needs a feature map whose channels divide into {a['parts']} equal "
                        f"parts, not {shape_text(ins[0])}")
    return (c // a["parts"], *ins[0][1:])


def _split_explain(ins, out, a) -> dict[str, str]:
    k, n = a["take"], out[0]
    return {"output": f"channels {(k - 1) * n}..{k * n - 1} of {ins[0][0]} (part {k} of {a['parts']}) "
                      f"-> {shape_text(out)}"}


def _shuffle_shape(ins, a, ctx):
    c = spatial(ins, ctx, "shuffle")[0]
    if c % a["groups"]:
        raise ctx.error(f"shuffle {a['groups']} needs channels that divide into {a['groups']} groups, not {c}",
                        f"choose from {_divisors(c)}")
    return ins[0]


def _shuffle_explain(ins, out, a) -> dict[str, str]:
    g, c = a["groups"], ins[0][0]
    return {"detail": f"shuffle: the {c} channels as {g} groups of {c // g}, interleaved: output channel "
                      f"i*{g} + j is channel j*{c // g} + i (ShuffleNet's transpose)"}


_ZOO_ACT = dict(kind="elementwise", style="activation")
_ZOO_OPS = [
    OpSpec("relu6", doc="ReLU capped at 6, min(max(0, x), 6) (MobileNet)", prefix="relu6_", counter="relu6",
           written=lambda a: "relu6", stores_output=False, epilogue=True,
           explain=_activation_explain("relu6: min(max(0, x), 6)", "MobileNet v1/v2: robust in low precision"),
           **_ZOO_ACT),
    OpSpec("hsigmoid", doc="hard sigmoid, relu6(x + 3)/6 (MobileNet v3's gate)", prefix="hsigmoid",
           counter="hsigmoid", written=lambda a: "hsigmoid", stores_output=False, epilogue=True,
           explain=_activation_explain("hsigmoid: relu6(x + 3)/6, a piecewise-linear sigmoid"), **_ZOO_ACT),
    # hswish and silu need their input for the gradient: they store their output
    OpSpec("hswish", doc="hard swish, x * relu6(x + 3)/6 (MobileNet v3)", prefix="hswish", counter="hswish",
           written=lambda a: "hswish",
           explain=_activation_explain("hswish: x * relu6(x + 3)/6, swish without the exponential"), **_ZOO_ACT),
    OpSpec("silu", doc="SiLU (swish), x * sigmoid(x) (EfficientNet)", prefix="silu", counter="silu",
           written=lambda a: "silu", explain=_activation_explain("silu: x * sigmoid(x) = x/(1 + e^-x)"), **_ZOO_ACT),
    OpSpec("gate", "merge", "squeeze-and-excitation join: a map times a per-channel gate from its side branch",
           arity="many", shape=_gate_shape, explain=_gate_explain,
           macs=lambda ins, out, a: 0, counter="gate", prefix="gate", style="merge", written=lambda a: "gate"),
    OpSpec("zeropad", "injective", "identity with zero channels added and a stride taken by sampling (option A)",
           Signature(positional=(("out", POS_INT),), required=1, slash="stride", defaults={"stride": (1, 1)},
                     usage="zeropad CHANNELS [/STRIDE], e.g. zeropad 32 /2"),
           shape=_zeropad_shape, explain=_zeropad_explain,
           window=lambda ins, a: ((1, 1), a["stride"], (0, 0)),
           counter="zeropad", prefix="zeropad", style="shape",
           written=lambda a: f"zeropad {a['out']}" + ("" if a["stride"] == (1, 1) else
                                                     f" /{a['stride'][0]}" if a["stride"][0] == a["stride"][1]
                                                     else f" /{_dims_text(a['stride'])}")),
    OpSpec("split", "injective", "one of N equal parts of the channels (ShuffleNet v2's channel split)",
           Signature(positional=(("parts", POS_INT),), options={"take": POS_INT}, defaults={"parts": 2, "take": 0},
                     usage="split PARTS take K, e.g. split 2 take 1 (the first half)"),
           shape=_split_shape, explain=_split_explain, stores_output=False,
           counter="split", prefix="split", style="shape", written=lambda a: f"split {a['parts']}" + (f" take {a['take']}" if a["take"] else "")),
    OpSpec("shuffle", "injective", "channel shuffle: G groups of channels interleaved (ShuffleNet)",
           Signature(positional=(("groups", POS_INT),), required=1, usage="shuffle GROUPS, e.g. shuffle 2"),
           shape=_shuffle_shape, explain=_shuffle_explain,
           counter="shuffle", prefix="shuffle", style="shape", written=lambda a: f"shuffle {a['groups']}"),
]
OPS.update({op.name: op for op in _ZOO_OPS})

# The activations that may run as their producer's epilogue, in the table's order (native.c's
# codes for them count from 1 in this order), and the ops no back end or export ever sees.
EPILOGUES = tuple(name for name, op in OPS.items() if op.epilogue)
LOWERED = frozenset(name for name, op in OPS.items() if op.lowered)

# Ops a person may write as a layer line (the others come from syntax: input, concat, add, shortcut).
WRITABLE = tuple(name for name, op in OPS.items() if op.kind not in ("source", "merge"))

STYLES = {  # diagram category -> (fill colour, legend text)
    "input": ("#eeeeee", "input"),
    "conv": ("#aed6f1", "convolution"),
    "pool": ("#f9e79f", "pooling"),
    "fc": ("#d7bde2", "fully connected"),
    "activation": ("#abebc6", "activation"),
    "norm": ("#fad7a0", "normalisation"),
    "regularise": ("#e5e8e8", "dropout"),
    "shape": ("#e5e8e8", "reshape"),
    "merge": ("#f5b7b1", "merge (concat / add)"),
    "head": ("#f1948a", "classifier head"),
}
