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
from ..ops import OPS
from .structure import NAME, Layer, stem_name, write_network

MAX_PROTOTXT = 16 << 20


class Msg:
    """A parsed message: its fields in order; repeated fields keep every value."""

    def __init__(self, fields: list, line: int = 0):
        self.fields = fields
        self.line = line

    def all(self, key: str) -> list:
        return [v for k, v in self.fields if k == key]

    def get(self, key: str, default=None):
        values = self.all(key)
        return values[0] if values else default

    def msg(self, key: str) -> "Msg":
        value = self.get(key)
        return value if isinstance(value, Msg) else Msg([])


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
        fields = []
        for child in node.children:
            if child.data == "scalar":
                key, value = child.children
                fields.append((str(key), _value(value)))
            else:
                key, *rest = child.children
                sub = Tree("m", [c for c in rest if isinstance(c, Tree)])
                msg = convert(sub)
                msg.line = key.line
                fields.append((str(key), msg))
        return Msg(fields)

    def _value(tree):
        tok: Token = tree.children[0]
        if tree.data == "string":
            return bytes(str(tok)[1:-1], "utf-8").decode("unicode_escape")
        if tree.data == "number":
            text = str(tok)
            return float(text) if any(c in text for c in ".eE") else int(text)
        return {"true": True, "false": False}.get(str(tok), str(tok))
    return convert(tree)


def _ints(m: Msg, key: str, axis: str, default):
    """A Caffe size: `kernel_size: 3` (or two values), or `kernel_h`/`kernel_w`."""
    h, w = m.get(f"{key}_h"), m.get(f"{key}_w")
    if h is not None or w is not None:
        return (int(h if h is not None else default), int(w if w is not None else default))
    values = m.all(f"{key}_size" if key == "kernel" else key)
    if not values:
        return (default, default)
    return (int(values[0]), int(values[-1] if len(values) > 1 else values[0]))


class _Net:
    def __init__(self, path: str):
        self.path = path
        self.layers: dict[str, Layer] = {}
        self.producer: dict[str, str] = {}  # blob -> layer id
        self.consumed: set[str] = set()
        self.input_shape: tuple | None = None
        self.last: str | None = None

    def refuse(self, layer: Msg, what: str, supported: str) -> NetError:
        return NetError(f"{self.path}: layer '{layer.get('name')}' ({layer.get('type')}) {what}",
                        Span(self.path, layer.line, 1, layer.line, 2) if layer.line else None,
                        f"netdsl supports {supported}")

    def source_of(self, layer: Msg, blob: str) -> str:
        if blob not in self.producer:
            raise self.refuse(layer, f"reads blob '{blob}', which no layer before it writes", "blobs written earlier")
        self.consumed.add(blob)
        return self.producer[blob]

    def add(self, layer: Msg, op: str, attrs: dict, inputs: list[str]) -> None:
        name = str(layer.get("name") or f"layer{len(self.layers)}")
        lid = name
        while lid in self.layers:
            lid += "_"
        self.layers[lid] = Layer(lid, op, attrs, inputs, name if NAME.match(name) else name)
        for top in layer.all("top"):
            self.producer[top] = lid
        self.last = lid

    def set_input(self, shape, blob: str, where: Msg | None = None) -> None:
        dims = [int(d) for d in shape]
        if len(dims) not in (2, 4) or any(d <= 0 for d in dims[1:]):
            raise NetError(f"{self.path}: the input '{blob}' is {dims}: netdsl reads N x C x H x W or N x features")
        if self.input_shape is None:
            self.input_shape = tuple(dims[1:])
            self.layers["input"] = Layer("input", "input", {"shape": self.input_shape}, [], blob)
        self.producer[blob] = "input"


def _conv(n: _Net, layer: Msg, p: Msg, x: str):
    if any(int(d) != 1 for d in p.all("dilation")):
        raise n.refuse(layer, f"has dilation {p.all('dilation')}", "dilation 1 only")
    kernel = _ints(p, "kernel", "", 1)
    attrs = {"out": int(p.get("num_output")), "kernel": kernel, "stride": _ints(p, "stride", "", 1),
             "pad": _ints(p, "pad", "", 0), "groups": int(p.get("group", 1)), "bias": bool(p.get("bias_term", True))}
    n.add(layer, "conv", attrs, [x])


def _pool(n: _Net, layer: Msg, p: Msg, x: str):
    mode = {"MAX": "max", "AVE": "avg", 0: "max", 1: "avg"}.get(p.get("pool", "MAX"))
    if mode is None:
        raise n.refuse(layer, f"pools by {p.get('pool')}", "MAX and AVE pooling")
    if p.get("global_pooling", False):
        attrs = {"mode": mode, "kernel": "global", "stride": (1, 1), "pad": (0, 0), "ceil": False, "count_pad": True}
    else:
        attrs = {"mode": mode, "kernel": _ints(p, "kernel", "", 1), "stride": _ints(p, "stride", "", 1),
                 "pad": _ints(p, "pad", "", 0), "ceil": True, "count_pad": True}
    n.add(layer, "pool", attrs, [x])


def _lrn(n: _Net, layer: Msg, p: Msg, x: str):
    if p.get("norm_region", "ACROSS_CHANNELS") not in ("ACROSS_CHANNELS", 0):
        raise n.refuse(layer, "normalises within a channel", "LRN across channels")
    n.add(layer, "lrn", {"size": int(p.get("local_size", 5)), "alpha": float(p.get("alpha", 1.0)),
                         "beta": float(p.get("beta", 0.75)), "k": float(p.get("k", 1.0))}, [x])


def _relu(n: _Net, layer: Msg, p: Msg, x: str):
    slope = float(p.get("negative_slope", 0))
    n.add(layer, "leaky" if slope else "relu", {"slope": slope} if slope else {}, [x])


def _fc(n: _Net, layer: Msg, p: Msg, x: str):
    n.add(layer, "fc", {"out": int(p.get("num_output")), "bias": bool(p.get("bias_term", True))}, [x])


def _bn(n: _Net, layer: Msg, p: Msg, x: str):
    # Caffe keeps its running statistics as sums with a scale factor, not as netdsl's (and
    # PyTorch's) moving average, so its moving_average_fraction has no exact momentum: training
    # an import uses netdsl's default; the statistics themselves (inference) are Caffe's.
    n.add(layer, "bn", {"eps": float(p.get("eps", 1e-5)), "momentum": 0.1}, [x])


def _scale(n: _Net, layer: Msg, p: Msg, x: str):
    if n.layers[x].op != "bn" or n.layers[x].attrs.get("scaled"):
        raise n.refuse(layer, "scales something that is not a BatchNorm", "Scale right after BatchNorm (folded into bn)")
    n.layers[x].attrs["scaled"] = str(layer.get("name"))  # the bn's own scale and shift (its blobs)
    for top in layer.all("top"):
        n.producer[top] = x


def _eltwise(n: _Net, layer: Msg, p: Msg, inputs: list[str]):
    op = p.get("operation", "SUM")
    if op not in ("SUM", 1):
        raise n.refuse(layer, f"combines by {op}", "Eltwise SUM (as add)")
    if any(float(c) != 1 for c in p.all("coeff")):
        raise n.refuse(layer, f"weighs its inputs by {p.all('coeff')}", "Eltwise SUM with coefficients 1")
    n.add(layer, "add", {}, inputs)


def _concat(n: _Net, layer: Msg, p: Msg, inputs: list[str]):
    if int(p.get("axis", p.get("concat_dim", 1))) != 1:
        raise n.refuse(layer, "concatenates along another axis", "concatenation of channels (axis 1)")
    n.add(layer, "concat", {}, inputs)


def _simple(op: str, attrs=lambda p: {}):
    return lambda n, layer, p, x: n.add(layer, op, attrs(p), [x])


# Caffe layer type -> (its parameter message, reader, whether it takes many inputs)
LAYERS = {
    "Convolution": ("convolution_param", _conv, False),
    "Pooling": ("pooling_param", _pool, False),
    "LRN": ("lrn_param", _lrn, False),
    "ReLU": ("relu_param", _relu, False),
    "TanH": ("", _simple("tanh"), False),
    "Sigmoid": ("", _simple("sigmoid"), False),
    "InnerProduct": ("inner_product_param", _fc, False),
    "Dropout": ("dropout_param", _simple("dropout", lambda p: {"p": float(p.get("dropout_ratio", 0.5))}), False),
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
    return any(inc.get("phase") in ("TEST", 1) for inc in layer.all("include"))


def read_caffe(path: str | os.PathLike) -> _Net:
    from ..files import read_text
    text = read_text(path, MAX_PROTOTXT, "a prototxt file")
    root = parse_prototxt(text, str(path))
    n = _Net(str(path))
    n.name = root.get("name")
    if root.all("layers"):
        raise NetError(f"{path} is in Caffe's legacy V1 format (`layers {{ }}` with enum types)",
                       hint="upgrade it with Caffe's upgrade_net_proto_text tool, then import the result")
    if root.get("input") is not None:
        dims = root.all("input_dim") or root.msg("input_shape").all("dim")
        n.set_input(dims, root.get("input"))
    for layer in root.all("layer"):
        kind = layer.get("type")
        if _phase_test_only(layer) or kind in SKIPPED:
            continue
        if kind == "Input":
            n.set_input(layer.msg("input_param").msg("shape").all("dim"), layer.get("top"))
            continue
        if kind in DATA:
            crop = layer.msg("transform_param").get("crop_size")
            if crop is None:
                raise n.refuse(layer, "declares no crop_size", "Data layers with transform_param { crop_size }")
            n.set_input([1, 3, crop, crop], layer.all("top")[0])
            continue
        if kind not in LAYERS:
            raise n.refuse(layer, f"is of type {kind}, which netdsl has no layer for",
                           ", ".join(sorted(set(LAYERS) | {"Input", "Data"})))
        if n.input_shape is None:
            raise n.refuse(layer, "comes before any input is declared", "an input, Input or Data layer first")
        param_key, read, many = LAYERS[kind]
        bottoms = [b for b in layer.all("bottom") if not (kind == "SoftmaxWithLoss" and b == "label")]
        if kind == "SoftmaxWithLoss":
            bottoms = bottoms[:1]
        sources = [n.source_of(layer, b) for b in bottoms]
        if not many and len(sources) != 1:
            raise n.refuse(layer, f"reads {len(sources)} blobs", "one input for this layer type")
        read(n, layer, layer.msg(param_key) if param_key else Msg([]), sources if many else sources[0])
    if n.input_shape is None:
        raise NetError(f"{path} declares no input", hint="an `input` with `input_dim`s, an Input layer or a Data layer")
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
        if len(got) < 3:
            raise NetError(f"{path}: BatchNorm '{layer.source}' has {len(got)} blobs, not mean, variance and scale factor")
        factor = float(got[2].reshape(-1)[0])
        scale = 0.0 if factor == 0 else 1.0 / factor  # Caffe's own rule for a zero factor
        channels = got[0].size
        layer.tensors.update(running_mean=got[0].reshape(-1) * scale, running_var=got[1].reshape(-1) * scale,
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
    from ..ops import ShapeContext
    from .caffemodel import read_caffemodel
    n = read_caffe(path)
    if caffemodel is not None:
        _weights(n, read_caffemodel(caffemodel), str(caffemodel))
    for layer in n.layers.values():
        layer.attrs.pop("scaled", None)
    shapes = {}
    for lid, layer in n.layers.items():
        try:
            shapes[lid] = OPS[layer.op].shape([shapes[i] for i in layer.inputs], layer.attrs,
                                             ShapeContext(None, lid)) if layer.inputs else n.input_shape
        except NetError as err:
            raise NetError(f"{path}: layer '{layer.source}': {err.message}", hint=err.hint) from None
    consumers = {src for layer in n.layers.values() for src in layer.inputs}
    ends = [lid for lid in n.layers if lid not in consumers and lid != "input"]
    trunk = n.last if n.last in ends else ends[-1]
    outputs = [("output", trunk)] + [(e if NAME.match(e) and e != "output" else f"aux{i + 1}", e)
                                    for i, e in enumerate(x for x in ends if x != trunk)]
    declared = n.name if isinstance(n.name, str) else ""
    name = declared if NAME.match(declared) else stem_name(str(path))
    comment = f"imported from {os.path.basename(str(path))} (Caffe prototxt) by netdsl import"
    return write_network(n.layers, shapes, outputs, n.input_shape, name, comment, str(path))
