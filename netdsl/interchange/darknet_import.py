"""A Darknet .cfg as netdsl text (issue 16).

Sections `[name]` of `key=value` lines; each section is one layer, numbered from 0 after
`[net]`, and `[route]`/`[shortcut]` name earlier layers by index (negative: counted back). The
conventions, from Darknet's parser (parser.c) and layer code:
- [net]: width, height, channels;
- [convolutional]: filters, size, stride (1), `pad=1` means size/2 (else `padding`), groups,
  `batch_normalize=1` means no bias of the conv's own (netdsl: nobias + bn, eps 1e-5 as the
  maintained fork's normalize_cpu), activation (default logistic): linear, leaky (slope 0.1),
  relu, logistic (sigmoid), tanh;
- [maxpool]: size (default stride), stride (1), padding (default size - 1) split floor(p/2)
  before and the rest after: netdsl's pad and padend (left out where the extra half is never read);
- [avgpool] is a global average; [connected]: output, activation (default logistic);
  [dropout]: probability; [softmax];
- [route] layers=a,b: the concatenation of those layers' outputs (one layer: reading it again);
  [shortcut] from=-k: the sum of the previous layer and that one, then its activation; a
  shortcut between different shapes is refused.
Weights come from a .weights file when one is given (read_weights).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import NetError, Span
from ..ops import OPS, ShapeContext
from .structure import NAME, Layer, stem_name, write_network

MAX_CFG = 4 << 20
ACTIVATIONS = {"linear": None, "leaky": ("leaky", {"slope": 0.1}), "relu": ("relu", {}),
               "logistic": ("sigmoid", {}), "tanh": ("tanh", {})}
# sections that hold a layer index of their own but compute nothing for inference: training's loss
INDEX_ONLY = {"cost"}


def _sections(text: str, path: str) -> list[tuple[str, dict, int]]:
    from ..errors import split_lines
    out: list[tuple[str, dict, int]] = []
    for n, raw in enumerate(split_lines(text), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise NetError("a section header is [name]", Span(path, n, 1, n, len(raw) + 1))
            out.append((line[1:-1].strip().lower(), {}, n))
        elif "=" in line and out:
            key, value = (part.strip() for part in line.split("=", 1))
            out[-1][1][key] = value
        else:
            col = len(raw) - len(raw.lstrip()) + 1
            raise NetError("expected [section] or key=value", Span(path, n, col, n, len(raw) + 1))
    return out


class _Cfg:
    def __init__(self, path: str):
        self.path = path
        self.layers: dict[str, Layer] = {}
        self.shapes: dict[str, tuple] = {}
        self.index: list[str] = []  # Darknet's layer i -> the netdsl layer holding its output
        self.weighted: list[tuple[str, str, str | None]] = []  # (conv|fc, its layer, its bn or None), in order

    def refuse(self, kind: str, line: int, what: str, supported: str) -> NetError:
        return NetError(f"{self.path}: [{kind}] layer {len(self.index)} (line {line}) {what}",
                        Span(self.path, line, 1, line, 2), f"netdsl supports {supported}")

    def add(self, name: str, op: str, attrs: dict, inputs: list[str]) -> str:
        lid = name
        n = 2
        while lid in self.layers:
            lid, n = f"{name}_{n}", n + 1
        self.layers[lid] = Layer(lid, op, attrs, inputs, "")  # Darknet names no layers: netdsl's names stand
        try:
            self.shapes[lid] = OPS[op].shape([self.shapes[i] for i in inputs], attrs, ShapeContext(None, lid))
        except NetError as err:
            raise NetError(f"{self.path}: layer {len(self.index)} ({op}): {err.message}", hint=err.hint) from None
        return lid

    def activation(self, value: str, kind: str, line: int, tip: str) -> str:
        if value not in ACTIVATIONS:
            raise self.refuse(kind, line, f"has activation {value}", ", ".join(ACTIVATIONS) + " activations")
        act = ACTIVATIONS[value]
        return tip if act is None else self.add(act[0], act[0], dict(act[1]), [tip])

    def weighted_layer(self, op: str, lid: str, bn: bool, activation: str, kind: str, line: int) -> str:
        """After a conv or fc: its bn (batch_normalize), noted for the .weights order, then its activation."""
        tip = self.add("bn", "bn", {"eps": 1e-5, "momentum": 0.1}, [lid]) if bn else lid
        self.weighted.append((op, lid, tip if bn else None))
        return self.activation(activation, kind, line, tip)

    def earlier(self, ref: str, kind: str, line: int) -> str:
        i = int(ref)
        at = len(self.index) + i if i < 0 else i
        if not 0 <= at < len(self.index):
            raise self.refuse(kind, line, f"names layer {ref}, which is not an earlier layer", "earlier layers")
        return self.index[at]


def _int(options: dict, key: str, default: int) -> int:
    return int(options.get(key, default))


def read_darknet(path: str | os.PathLike) -> _Cfg:
    from ..files import read_text
    text = read_text(path, MAX_CFG, "a Darknet .cfg file")
    sections = _sections(text, str(path))
    if not sections or sections[0][0] not in ("net", "network"):
        raise NetError(f"{path}: a Darknet .cfg starts with [net] (width, height, channels)")
    _, net, _ = sections[0]
    c = _Cfg(str(path))
    shape = (_int(net, "channels", 3), _int(net, "height", 0), _int(net, "width", 0))
    if min(shape) <= 0:
        raise NetError(f"{path}: [net] needs positive channels, height and width, not {shape}")
    c.layers["input"] = Layer("input", "input", {"shape": shape}, [], "input")
    c.shapes["input"] = shape
    tip = "input"
    for kind, o, line in sections[1:]:
        if kind in ("convolutional", "conv"):
            size, stride = _int(o, "size", 1), _int(o, "stride", 1)
            pad = size // 2 if _int(o, "pad", 0) else _int(o, "padding", 0)
            bn = bool(_int(o, "batch_normalize", 0))
            tip = c.add("conv", "conv", {"out": _int(o, "filters", 1), "kernel": (size, size), "stride": (stride, stride),
                                         "pad": (pad, pad), "groups": _int(o, "groups", 1), "bias": not bn}, [tip])
            tip = c.weighted_layer("conv", tip, bn, o.get("activation", "logistic"), kind, line)
        elif kind == "maxpool":
            stride = _int(o, "stride", 1)
            size = _int(o, "size", stride)
            padding = _int(o, "padding", size - 1)
            before, after = padding // 2, padding - padding // 2
            n = c.shapes[tip][1]
            padend = after - before
            if padend and (n + padding - size) // stride + 1 == (n + 2 * before - size) // stride + 1:
                padend = 0  # the extra row and column after are never read: plain lines read better
            tip = c.add("pool", "pool", {"mode": "max", "kernel": (size, size), "stride": (stride, stride),
                                         "pad": (before, before), "padend": (padend, padend), "ceil": False,
                                         "count_pad": True}, [tip])
        elif kind == "avgpool":
            tip = c.add("pool", "pool", {"mode": "avg", "kernel": "global", "stride": (1, 1), "pad": (0, 0),
                                         "ceil": False, "count_pad": True}, [tip])
        elif kind == "connected":
            bn = bool(_int(o, "batch_normalize", 0))
            tip = c.add("fc", "fc", {"out": _int(o, "output", 1), "bias": not bn}, [tip])
            tip = c.weighted_layer("fc", tip, bn, o.get("activation", "logistic"), kind, line)
        elif kind == "dropout":
            tip = c.add("dropout", "dropout", {"p": float(o.get("probability", 0.5))}, [tip])
        elif kind == "softmax":  # over all of a sample's outputs: a 10x1x1 map is flattened first
            if len(c.shapes[tip]) == 3:
                tip = c.add("flatten", "flatten", {}, [tip])
            tip = c.add("softmax", "softmax", {}, [tip])
        elif kind == "route":
            refs = [c.earlier(r.strip(), kind, line) for r in o.get("layers", "").split(",") if r.strip()]
            if not refs:
                raise c.refuse(kind, line, "names no layers", "layers=-1,-4 and the like")
            tip = refs[0] if len(refs) == 1 else c.add("concat", "concat", {}, refs)
        elif kind == "shortcut":
            other = c.earlier(o.get("from", "-1"), kind, line)
            if c.shapes[other] != c.shapes[tip]:
                raise c.refuse(kind, line, f"adds a {'x'.join(map(str, c.shapes[other]))} layer to a "
                                          f"{'x'.join(map(str, c.shapes[tip]))} one", "shortcuts between equal shapes")
            tip = c.add("add", "add", {}, [tip, other])
            tip = c.activation(o.get("activation", "linear"), kind, line, tip)
        elif kind not in INDEX_ONLY:
            raise c.refuse(kind, line, "is a section netdsl has no layer for",
                           "[convolutional], [maxpool], [avgpool], [connected], [dropout], [softmax], [route], "
                           "[shortcut], [cost]")
        c.index.append(tip)
    return c


def read_weights(c: _Cfg, path: str | os.PathLike) -> None:
    """A Darknet .weights file into the layers' tensors, in Darknet's order (parser.c's
    load_weights): a header (major, minor, revision as int32, then `seen`, 8 bytes from version
    0.2 on, else 4); then for each convolutional layer its biases, and with batch_normalize its
    scales, rolling means and rolling variances, then its weights (filters x channels/groups x
    size x size); for each connected layer its biases and weights (outputs x inputs), then the
    batch-norm values. With batch norm the biases are the bn's shift (the conv has none)."""
    from ..files import read_bounded
    data = read_bounded(path, 2 << 30, "a Darknet .weights file")
    if len(data) < 12:
        raise NetError(f"{path} is too short for a Darknet .weights header")
    major, minor, _revision = np.frombuffer(data[:12], "<i4")
    offset = 12 + (8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4)
    values = np.frombuffer(data, "<f4", offset=offset, count=(len(data) - offset) // 4)
    at = 0

    def take(count: int, what: str, lid: str) -> np.ndarray:
        nonlocal at
        if at + count > values.size:
            raise NetError(f"{path} ends inside the {what} of layer '{lid}' ({values.size - at} of {count} values left)")
        out = values[at:at + count].copy()
        at += count
        return out
    for kind, lid, bn in c.weighted:
        layer = c.layers[lid]
        shape = layer_weight_shape(c, lid)
        n = shape[0]
        biases = take(n, "biases", lid)
        if kind == "conv":
            if bn:
                _bn_values(c, bn, biases, take, n, lid)
            else:
                layer.tensors["bias"] = biases
            layer.tensors["weight"] = take(int(np.prod(shape)), "weights", lid).reshape(shape)
        else:
            layer.tensors["weight"] = take(int(np.prod(shape)), "weights", lid).reshape(shape)
            if bn:
                _bn_values(c, bn, biases, take, n, lid)
            else:
                layer.tensors["bias"] = biases
    if at != values.size:
        raise NetError(f"{path} holds {values.size - at} values more than the .cfg's layers take: another network's?")


def _bn_values(c, bn, biases, take, n, lid):
    c.layers[bn].tensors.update(bias=biases, weight=take(n, "scales", lid), running_mean=take(n, "rolling means", lid),
                                running_var=take(n, "rolling variances", lid))


def layer_weight_shape(c: _Cfg, lid: str) -> tuple:
    layer = c.layers[lid]
    src = c.shapes[layer.inputs[0]]
    if layer.op == "conv":
        return (layer.attrs["out"], src[0] // layer.attrs["groups"], *layer.attrs["kernel"])
    return (layer.attrs["out"], int(np.prod(src)))


def import_darknet(path: str | os.PathLike, weights: str | os.PathLike | None = None):
    """A Darknet .cfg as (.net text, state dict): the state from a .weights file when given."""
    c = read_darknet(path)
    if weights is not None:
        read_weights(c, weights)
    consumers = {src for layer in c.layers.values() for src in layer.inputs}
    ends = [lid for lid in c.layers if lid not in consumers and lid != "input"]
    trunk = c.index[-1] if c.index and c.index[-1] in ends else ends[-1]
    outputs = [("output", trunk)] + [(f"aux{i + 1}", e) for i, e in enumerate(x for x in ends if x != trunk)]
    name = stem_name(str(path))
    comment = f"imported from {os.path.basename(str(path))} (Darknet cfg) by netdsl import"
    return write_network(c.layers, c.shapes, outputs, c.layers["input"].attrs["shape"], name, comment, str(path))
