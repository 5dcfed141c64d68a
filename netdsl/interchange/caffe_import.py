"""A Caffe .prototxt (deploy or train_val) as netdsl text (issue 16).

The text format is parsed with a real grammar (prototxt.lark, lark as for .net files), so a
syntax error points at its line and column. Layers go through one table keyed by Caffe's layer
type; their blobs (bottom/top, in-place where a layer's top is its bottom) give the data flow,
and structure.py writes the network, blocks recovered, as for ONNX.

The conventions that decide correctness, from Caffe's own layer code and caffe.proto:
- pooling rounds up (`ceil`), and drops a last window that would start in the padding;
  `stride` defaults to 1; average pooling divides by the window clipped to the padded input
  (netdsl's count_pad with ceil);
- LRN: x / (k + alpha/n * sum of squares)^beta over `local_size` channels, k default 1, alpha 1;
- BatchNorm has no scale and shift of its own: the Scale layer after it is folded into netdsl's
  bn; Caffe's running statistics are sums over a scale factor (its third blob), not a moving
  average, so `moving_average_fraction` has no exact netdsl momentum (the default is kept);
- a deploy file's input: `input` + `input_dim` x4, `input_shape { dim }`, or an `Input` layer;
  a train_val file's Data layer: 3 channels at `transform_param { crop_size }`;
- Eltwise SUM is add (PROD and MAX, and coefficients, are refused); ReLU with a
  `negative_slope` is leaky; train-only layers (Accuracy, Silence) are skipped, as are layers
  included in the TEST phase only.
Weights come from a .caffemodel (caffemodel.py) when one is given.
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import NetError, Span
from . import checks
from .checks import Place
from .labels import NAME, comment
from .structure import Layer, network_name, write_network

MAX_PROTOTXT = 16 << 20
# the escapes of protobuf's text format, besides octal (\123), hex (\x41) and Unicode (\u00e9)
_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}


class Msg:
    """A parsed message: its fields in order; repeated fields keep every value; `spans` holds
    where each value was written (the file, line and column), for messages about it."""

    def __init__(self, fields: list, line: int = 0, spans: list | None = None):
        self.fields = fields
        self.line = line
        self.spans: list[Span | None] = spans if spans is not None else [None] * len(fields)

    def all(self, key: str) -> list:
        return [v for k, v in self.fields if k == key]

    def get(self, key: str, default=None):
        values = self.all(key)
        return values[0] if values else default

    def span(self, key: str, last: bool = False) -> Span | None:
        """Where the field `key` (its first value, or its last) was written."""
        found = [sp for (k, _), sp in zip(self.fields, self.spans) if k == key]
        return (found[-1] if last else found[0]) if found else None

    def msg(self, key: str) -> "Msg":
        value = self.get(key)
        return value if isinstance(value, Msg) else Msg([])


def unescape(text: str, span: Span) -> str:
    """A quoted string's contents, its escapes decoded as protobuf's text format does, as UTF-8;
    an escape that does not decode is refused at the string."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        nxt = text[i + 1: i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt.isdigit() and nxt < "8":
            digits = text[i + 1: i + 4]
            digits = digits[: next((k for k, c in enumerate(digits) if not "0" <= c <= "7"), len(digits))]
            if int(digits, 8) > 255:
                raise NetError(f"the escape \\{digits} is more than one byte", span)
            out.append(int(digits, 8))
            i += 1 + len(digits)
        elif nxt in ("x", "X"):
            digits = text[i + 2: i + 4]
            digits = digits[: next((k for k, c in enumerate(digits) if c not in "0123456789abcdefABCDEF"), len(digits))]
            if not digits:
                raise NetError("the escape \\x needs hex digits after it", span)
            out.append(int(digits, 16))
            i += 2 + len(digits)
        elif nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            digits = text[i + 2: i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits) \
                    or int(digits, 16) > 0x10FFFF or 0xD800 <= int(digits, 16) <= 0xDFFF:
                raise NetError(f"the escape \\{nxt} needs {width} hex digits of a Unicode character", span)
            out += chr(int(digits, 16)).encode("utf-8")
            i += 2 + width
        else:
            raise NetError(f"'\\{nxt}' is not an escape of the prototxt format", span,
                           "escapes are \\n \\t \\\\ \\\" \\' \\NNN (octal) \\xHH and \\uHHHH")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise NetError("this string's escapes do not decode as UTF-8 text", span) from None


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark
    grammar = resources.files("netdsl.interchange").joinpath("prototxt.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True)


def parse_prototxt(text: str, path: str) -> Msg:
    from lark import Token, Tree
    from lark.exceptions import UnexpectedInput

    from ..errors import normalise_line_breaks
    try:
        tree = _parser().parse(normalise_line_breaks(text))
    except UnexpectedInput as exc:
        line, col = max(exc.line, 1), max(exc.column, 1)
        raise NetError("this is not Caffe's prototxt text format here", Span(path, line, col, line, col + 1),
                       "fields are `name: value`, messages `name { ... }`") from None

    def convert(node) -> Msg:
        fields, spans = [], []
        for child in node.children:
            if child.data == "scalar":
                key, value = child.children
                tok: Token = value.children[0]
                span = Span(path, tok.line, tok.column, tok.end_line, tok.end_column)
                fields.append((str(key), _value(value, span)))
                spans.append(span)
            else:
                key, *rest = child.children
                sub = Tree("m", [c for c in rest if isinstance(c, Tree)])
                msg = convert(sub)
                msg.line = key.line
                fields.append((str(key), msg))
                spans.append(Span(path, key.line, key.column, key.end_line, key.end_column))
        return Msg(fields, spans=spans)

    def _value(tree, span: Span):
        tok: Token = tree.children[0]
        if tree.data == "string":
            return unescape(str(tok)[1:-1], span)
        if tree.data == "number":
            text = str(tok)
            # (a whole number of thousands of digits is read as a float, infinite: Python's int() refuses it)
            return float(text) if any(c in text for c in ".eE") or len(text) > 4000 else int(text)
        return {"true": True, "false": False}.get(str(tok), str(tok))
    return convert(tree)


def _whole(n: "_Net", layer: Msg, p: Msg, key: str, default: int | None = None, low: int = 1) -> int:
    """A whole-number field of a layer's parameters, checked where it was written; `default` None:
    the field is required."""
    if p.get(key) is None:
        if default is None:
            raise n.place(layer).error(f"has no {key}", f"a {comment(str(layer.get('type')))} layer needs {key}")
        return default
    return checks.whole(p.get(key), key, n.place(layer), low=low, span=p.span(key))


def _real(n: "_Net", layer: Msg, p: Msg, key: str, default: float) -> float:
    return default if p.get(key) is None else checks.real(p.get(key), key, n.place(layer), span=p.span(key))


def _flag(n: "_Net", layer: Msg, p: Msg, key: str, default: bool) -> bool:
    return default if p.get(key) is None else checks.flag(p.get(key), key, n.place(layer), span=p.span(key))


def _pair(n: "_Net", layer: Msg, p: Msg, key: str, default: int | None, low: int = 1) -> tuple[int, int]:
    """A Caffe size: `kernel_size: 3` (or two values, rows then columns), or `kernel_h`/`kernel_w`."""
    if p.get(f"{key}_h") is not None or p.get(f"{key}_w") is not None:
        return (_whole(n, layer, p, f"{key}_h", default, low), _whole(n, layer, p, f"{key}_w", default, low))
    name = f"{key}_size" if key == "kernel" else key
    values = p.all(name)
    if not values:
        if default is None:
            raise n.place(layer).error(f"has no {name}", f"a {comment(str(layer.get('type')))} layer needs {name}")
        return (default, default)
    if len(values) > 2:
        raise n.refuse(layer, f"has {len(values)} values of {name}", "2-D windows (one or two values)")
    first = checks.whole(values[0], name, n.place(layer), low=low, span=p.span(name))
    return (first, checks.whole(values[-1], name, n.place(layer), low=low, span=p.span(name, last=True)))


def _blobs(n: "_Net", layer: Msg, key: str) -> list[str]:
    """A layer's `bottom` or `top` blob names (strings, as Caffe writes them)."""
    names = layer.all(key)
    for value in names:
        if not isinstance(value, str):
            raise n.place(layer).error(f"has a {key} that is not a blob name", span=layer.span(key))
    return names


class _Net:
    def __init__(self, path: str):
        self.path = path
        self.layers: dict[str, Layer] = {}
        self.places: dict[str, Place] = {}  # layer id -> where the source wrote it
        self.producer: dict[str, str] = {}  # blob -> layer id
        self.consumed: set[str] = set()
        self.input_shape: tuple | None = None
        self.last: str | None = None
        self.taken: dict[str, int] = {}

    def place(self, layer: Msg) -> Place:
        what = f"layer '{comment(str(layer.get('name')))}' ({comment(str(layer.get('type')))})"
        return Place(self.path, what, Span(self.path, layer.line, 1, layer.line, 2) if layer.line else None)

    def refuse(self, layer: Msg, what: str, supported: str) -> NetError:
        place = self.place(layer)
        return NetError((f"{self.path}: " if place.span is None else "") + f"{place.what} {what}", place.span,
                        f"netdsl supports {supported}")

    def source_of(self, layer: Msg, blob: str) -> str:
        if blob not in self.producer:
            raise self.refuse(layer, f"reads blob '{comment(blob)}', which no layer before it writes",
                              "blobs written earlier")
        self.consumed.add(blob)
        return self.producer[blob]

    def add(self, layer: Msg, op: str, attrs: dict, inputs: list[str]) -> None:
        name = layer.get("name")
        name = name if isinstance(name, str) and name else f"layer{len(self.layers)}"
        lid = name
        while lid in self.layers:  # the same name on many layers: numbered, in time linear in their count
            self.taken[name] = self.taken.get(name, 1) + 1
            lid = f"{name}_{self.taken[name]}"
        self.layers[lid] = Layer(lid, op, attrs, inputs, name)
        self.places[lid] = self.place(layer)
        for top in _blobs(self, layer, "top"):
            self.producer[top] = lid
        self.last = lid

    def set_input(self, shape: list, blob, line: int = 0) -> None:
        place = Place(self.path, f"the input '{comment(str(blob))}'", Span(self.path, line, 1, line, 2) if line else None)
        if not isinstance(blob, str):
            raise place.error("is not named by a blob name")
        if len(shape) not in (2, 4):
            raise place.error(f"has {len(shape)} dimensions: netdsl reads N x C x H x W or N x features")
        dims = checks.dims(shape[1:], "the input", place)
        if self.input_shape is None:
            self.input_shape = dims
            self.layers["input"] = Layer("input", "input", {"shape": self.input_shape}, [], blob)
        self.producer[blob] = "input"


def _conv(n: _Net, layer: Msg, p: Msg, x: str):
    for i, d in enumerate(p.all("dilation")):
        if checks.whole(d, "dilation", n.place(layer), span=p.span("dilation", last=i > 0)) != 1:
            raise n.refuse(layer, f"has dilation {p.all('dilation')}", "dilation 1 only")
    attrs = {"out": _whole(n, layer, p, "num_output"), "kernel": _pair(n, layer, p, "kernel", None),
             "stride": _pair(n, layer, p, "stride", 1), "pad": _pair(n, layer, p, "pad", 0, low=0),
             "groups": _whole(n, layer, p, "group", 1), "bias": _flag(n, layer, p, "bias_term", True)}
    n.add(layer, "conv", attrs, [x])


def _pool(n: _Net, layer: Msg, p: Msg, x: str):
    mode = {"MAX": "max", "AVE": "avg", 0: "max", 1: "avg"}.get(p.get("pool", "MAX")) \
        if isinstance(p.get("pool", "MAX"), (str, int)) else None
    if mode is None:
        raise n.refuse(layer, f"pools by {comment(str(p.get('pool')))}", "MAX and AVE pooling")
    if _flag(n, layer, p, "global_pooling", False):
        attrs = {"mode": mode, "kernel": "global", "stride": (1, 1), "pad": (0, 0), "ceil": False, "count_pad": True}
    else:
        attrs = {"mode": mode, "kernel": _pair(n, layer, p, "kernel", None), "stride": _pair(n, layer, p, "stride", 1),
                 "pad": _pair(n, layer, p, "pad", 0, low=0), "ceil": True, "count_pad": True}
    n.add(layer, "pool", attrs, [x])


def _lrn(n: _Net, layer: Msg, p: Msg, x: str):
    if p.get("norm_region", "ACROSS_CHANNELS") not in ("ACROSS_CHANNELS", 0):
        raise n.refuse(layer, "normalises within a channel", "LRN across channels")
    n.add(layer, "lrn", {"size": _whole(n, layer, p, "local_size", 5), "alpha": _real(n, layer, p, "alpha", 1.0),
                         "beta": _real(n, layer, p, "beta", 0.75), "k": _real(n, layer, p, "k", 1.0)}, [x])


def _relu(n: _Net, layer: Msg, p: Msg, x: str):
    slope = _real(n, layer, p, "negative_slope", 0.0)
    n.add(layer, "leaky" if slope else "relu", {"slope": slope} if slope else {}, [x])


def _fc(n: _Net, layer: Msg, p: Msg, x: str):
    n.add(layer, "fc", {"out": _whole(n, layer, p, "num_output"), "bias": _flag(n, layer, p, "bias_term", True)}, [x])


def _bn(n: _Net, layer: Msg, p: Msg, x: str):
    # Caffe keeps its running statistics as sums with a scale factor, not as netdsl's (and
    # PyTorch's) moving average, so its moving_average_fraction has no exact momentum: training
    # an import uses netdsl's default; the statistics themselves (inference) are Caffe's.
    n.add(layer, "bn", {"eps": _real(n, layer, p, "eps", 1e-5), "momentum": 0.1}, [x])


def _scale(n: _Net, layer: Msg, p: Msg, x: str):
    if n.layers[x].op != "bn" or n.layers[x].attrs.get("scaled"):
        raise n.refuse(layer, "scales something that is not a BatchNorm", "Scale right after BatchNorm (folded into bn)")
    n.layers[x].attrs["scaled"] = str(layer.get("name"))  # the bn's own scale and shift (its blobs)
    for top in _blobs(n, layer, "top"):
        n.producer[top] = x


def _eltwise(n: _Net, layer: Msg, p: Msg, inputs: list[str]):
    op = p.get("operation", "SUM")
    if op not in ("SUM", 1):
        raise n.refuse(layer, f"combines by {comment(str(op))}", "Eltwise SUM (as add)")
    if any(checks.real(c, "coeff", n.place(layer), span=p.span("coeff")) != 1 for c in p.all("coeff")):
        raise n.refuse(layer, f"weighs its inputs by {p.all('coeff')}", "Eltwise SUM with coefficients 1")
    n.add(layer, "add", {}, inputs)


def _concat(n: _Net, layer: Msg, p: Msg, inputs: list[str]):
    key = "axis" if p.get("axis") is not None else "concat_dim"
    if _whole(n, layer, p, key, 1, low=-4) != 1:
        raise n.refuse(layer, "concatenates along another axis", "concatenation of channels (axis 1)")
    n.add(layer, "concat", {}, inputs)


def _dropout(n: _Net, layer: Msg, p: Msg, x: str):
    n.add(layer, "dropout", {"p": _real(n, layer, p, "dropout_ratio", 0.5)}, [x])


def _simple(op: str):
    return lambda n, layer, p, x: n.add(layer, op, {}, [x])


# Caffe layer type -> (its parameter message, reader, whether it takes many inputs)
LAYERS = {
    "Convolution": ("convolution_param", _conv, False),
    "Pooling": ("pooling_param", _pool, False),
    "LRN": ("lrn_param", _lrn, False),
    "ReLU": ("relu_param", _relu, False),
    "TanH": ("", _simple("tanh"), False),
    "Sigmoid": ("", _simple("sigmoid"), False),
    "InnerProduct": ("inner_product_param", _fc, False),
    "Dropout": ("dropout_param", _dropout, False),
    "BatchNorm": ("batch_norm_param", _bn, False),
    "Scale": ("scale_param", _scale, False),
    "Flatten": ("", _simple("flatten"), False),
    "Softmax": ("", _simple("softmax"), False),
    "SoftmaxWithLoss": ("", _simple("softmax"), False),
    "Eltwise": ("eltwise_param", _eltwise, True),
    "Concat": ("concat_param", _concat, True),
}
SKIPPED = {"Accuracy", "Silence"}
DATA = {"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData"}


def _phase_test_only(layer: Msg) -> bool:
    return any(isinstance(inc, Msg) and inc.get("phase") in ("TEST", 1) for inc in layer.all("include"))


def read_caffe(path: str | os.PathLike) -> _Net:
    text = checks.read_text(path, MAX_PROTOTXT, "a prototxt file")
    root = parse_prototxt(text, str(path))
    n = _Net(str(path))
    n.name = root.get("name")
    if root.all("layers"):
        raise NetError(f"{path} is in Caffe's legacy V1 format (`layers {{ }}` with enum types)",
                       hint="upgrade it with Caffe's upgrade_net_proto_text tool, then import the result")
    if root.get("input") is not None:
        dims = root.all("input_dim") or root.msg("input_shape").all("dim")
        n.set_input(dims, root.get("input"), root.span("input").line)
    for layer in root.all("layer"):
        if not isinstance(layer, Msg):
            raise NetError("a layer is a message, `layer { ... }`", root.span("layer"))
        kind = layer.get("type")
        if not isinstance(kind, str):
            raise n.refuse(layer, "has no type", "layers with a `type: \"Convolution\"` and the like")
        if _phase_test_only(layer) or kind in SKIPPED:
            continue
        if kind == "Input":
            n.set_input(layer.msg("input_param").msg("shape").all("dim"), layer.get("top"), layer.line)
            continue
        if kind in DATA:
            crop = layer.msg("transform_param").get("crop_size")
            if crop is None:
                raise n.refuse(layer, "declares no crop_size", "Data layers with transform_param { crop_size }")
            crop = checks.whole(crop, "crop_size", n.place(layer), span=layer.msg("transform_param").span("crop_size"))
            n.set_input([1, 3, crop, crop], layer.get("top"), layer.line)
            continue
        if kind not in LAYERS:
            raise n.refuse(layer, f"is of type {kind}, which netdsl has no layer for",
                           ", ".join(sorted(set(LAYERS) | {"Input", "Data"})))
        if n.input_shape is None:
            raise n.refuse(layer, "comes before any input is declared", "an input, Input or Data layer first")
        param_key, read, many = LAYERS[kind]
        bottoms = [b for b in _blobs(n, layer, "bottom") if not (kind == "SoftmaxWithLoss" and b == "label")]
        if kind == "SoftmaxWithLoss":
            bottoms = bottoms[:1]
        sources = [n.source_of(layer, b) for b in bottoms]
        if not many and len(sources) != 1:
            raise n.refuse(layer, f"reads {len(sources)} blobs", "one input for this layer type")
        read(n, layer, layer.msg(param_key) if param_key else Msg([]), sources if many else sources[0])
    if n.input_shape is None:
        raise NetError(f"{path} declares no input", hint="an `input` with `input_dim`s, an Input layer or a Data layer")
    if len(n.layers) == 1:
        raise NetError(f"{path} declares an input and no layers netdsl reads")
    n.shapes = {"input": n.input_shape}
    for lid, layer in n.layers.items():
        if layer.inputs:
            n.shapes[lid] = checks.layer_shape(layer.op, layer.attrs, [n.shapes[i] for i in layer.inputs],
                                               n.places[lid], lid)
    return n


def _weights(n: _Net, blobs: dict[str, list], path: str) -> None:
    """Each layer's tensors from its .caffemodel blobs, in netdsl's terms: a BatchNorm's mean and
    variance divided by its third blob (the scale factor), the Scale after it as the bn's own
    scale and shift."""
    for lid, layer in n.layers.items():
        if layer.op not in ("conv", "fc", "bn"):
            continue
        got = blobs.get(layer.source)
        if got is None:
            raise NetError(f"{path} has no weights for layer '{layer.source}' ({layer.op})")
        if layer.op in ("conv", "fc"):
            layer.tensors["weight"] = got[0]
            if layer.attrs["bias"]:
                if len(got) < 2:
                    raise NetError(f"{path}: layer '{layer.source}' has no bias blob, and its prototxt says bias_term")
                layer.tensors["bias"] = got[1].reshape(-1)
            continue
        if len(got) < 3 or got[2].size != 1:
            raise NetError(f"{path}: BatchNorm '{layer.source}' has {len(got)} blobs, not mean, variance and scale factor "
                           "(one value)")
        factor = float(got[2].reshape(-1)[0])
        scale = 0.0 if factor == 0 else 1.0 / factor  # Caffe's own rule for a zero factor
        channels = got[0].size
        with np.errstate(over="ignore", invalid="ignore"):  # what overflows is refused by name (structure._state)
            mean, var = got[0].reshape(-1) * scale, got[1].reshape(-1) * scale
        layer.tensors.update(running_mean=mean, running_var=var,
                             weight=np.ones(channels, np.float32), bias=np.zeros(channels, np.float32))
        scale_layer = layer.attrs.get("scaled")
        if scale_layer:
            sb = blobs.get(scale_layer)
            if not sb:
                raise NetError(f"{path} has no weights for Scale layer '{scale_layer}'")
            layer.tensors["weight"] = sb[0].reshape(-1)
            if len(sb) > 1:
                layer.tensors["bias"] = sb[1].reshape(-1)


def import_caffe(path: str | os.PathLike, caffemodel: str | os.PathLike | None = None):
    """A Caffe prototxt as (.net text, state dict): the state from `caffemodel` when given
    (checked tensor by tensor against the layers), else empty (the network starts seeded)."""
    from .caffemodel import read_caffemodel
    n = read_caffe(path)
    if caffemodel is not None:
        _weights(n, read_caffemodel(caffemodel), str(caffemodel))
    for layer in n.layers.values():
        layer.attrs.pop("scaled", None)
    consumers = {src for layer in n.layers.values() for src in layer.inputs}
    ends = [lid for lid in n.layers if lid not in consumers and lid != "input"]
    trunk = n.last if n.last in ends else ends[-1]
    outputs = [("output", trunk)] + [(e if NAME.match(e) and e != "output" else f"aux{i + 1}", e)
                                    for i, e in enumerate(x for x in ends if x != trunk)]
    name = network_name(n.name if isinstance(n.name, str) else None, str(path))
    note = f"imported from {comment(os.path.basename(str(path)))} (Caffe prototxt) by netdsl import"
    return write_network(n.layers, n.shapes, outputs, n.input_shape, name, note, str(path))
