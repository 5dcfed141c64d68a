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
  [shortcut] from=-k: the sum of the previous layer and that one, then its activation; between
  different shapes Darknet's rule (the smaller channel count added, the stride taken by
  sampling) as netdsl's `shortcut zeropad` / `split` + `zeropad` where that is exact;
- [crop] on the input: how the image is prepared (the centre crop, x*2 - 1 unless noadjust=1): the
  network takes the crop's size and its header says so; elsewhere the identity where it keeps the
  whole map and its values (noadjust=1).
Weights come from a .weights file when one is given (read_weights).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import NetError, Span
from . import checks
from .checks import Place
from .labels import comment
from .structure import Layer, stem_name, write_network

MAX_CFG = 4 << 20
MAX_WEIGHTS = 2 << 30
ACTIVATIONS = {"linear": None, "leaky": ("leaky", {"slope": 0.1}), "relu": ("relu", {}),
               "logistic": ("sigmoid", {}), "tanh": ("tanh", {})}


@dataclass
class Section:
    """One `[kind]` section: its key=value options and where each was written."""

    kind: str
    line: int
    options: dict[str, str] = field(default_factory=dict)
    spans: dict[str, Span] = field(default_factory=dict)  # key -> the span of its value


def _sections(text: str, path: str) -> list[Section]:
    from ..errors import split_lines
    out: list[Section] = []
    for n, raw in enumerate(split_lines(text), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise NetError("a section header is [name]", Span(path, n, 1, n, len(raw) + 1))
            out.append(Section(line[1:-1].strip().lower(), n))
        elif "=" in line and out:
            key, value = (part.strip() for part in line.split("=", 1))
            col = raw.index("=") + 2 + len(raw[raw.index("=") + 1:]) - len(raw[raw.index("=") + 1:].lstrip())
            out[-1].options[key] = value
            out[-1].spans[key] = Span(path, n, col, n, col + max(len(value), 1))
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
        self.section = Section("net", 0)  # the section being read
        self.preparation = ""  # how Darknet prepares the image (an input [crop]), for the header

    def place(self) -> Place:
        sec = self.section
        what = f"[{sec.kind}]" + (f" layer {len(self.index)}" if sec.kind not in ("net", "network") else "")
        return Place(self.path, f"{what} (line {sec.line})", Span(self.path, sec.line, 1, sec.line, 2 + len(sec.kind)))

    def refuse(self, what: str, supported: str) -> NetError:
        place = self.place()
        return NetError(f"{place.what} {what}", place.span, f"netdsl supports {supported}")

    # the section's options, checked where they were written ---------------------------------------
    def whole(self, key: str, default: int | None, low: int = 1, high: int = checks.MAX_VALUES) -> int:
        value = self.section.options.get(key)
        if value is None:
            if default is None:
                raise self.place().error(f"has no {key}=", f"[{self.section.kind}] needs {key}=")
            return default
        return checks.whole(value, key, self.place(), low=low, high=high, span=self.section.spans[key])

    def real(self, key: str, default: float) -> float:
        value = self.section.options.get(key)
        return default if value is None else checks.real(value, key, self.place(), span=self.section.spans[key])

    def flag(self, key: str) -> bool:
        return self.whole(key, 0, low=0, high=1) == 1

    def word(self, key: str, default: str) -> str:
        return self.section.options.get(key, default)

    # layers ------------------------------------------------------------------------------------------
    def add(self, name: str, op: str, attrs: dict, inputs: list[str]) -> str:
        lid = name
        n = 2
        while lid in self.layers:
            lid, n = f"{name}_{n}", n + 1
        self.layers[lid] = Layer(lid, op, attrs, inputs, "")  # Darknet names no layers: netdsl's names stand
        self.shapes[lid] = checks.layer_shape(op, attrs, [self.shapes[i] for i in inputs], self.place(), lid)
        return lid

    def activation(self, tip: str, default: str) -> str:
        value = self.word("activation", default)
        if value not in ACTIVATIONS:
            raise self.refuse(f"has activation {value}", ", ".join(ACTIVATIONS) + " activations")
        act = ACTIVATIONS[value]
        return tip if act is None else self.add(act[0], act[0], dict(act[1]), [tip])

    def weighted_layer(self, op: str, lid: str, bn: bool) -> str:
        """After a conv or fc: its bn (batch_normalize), noted for the .weights order, then its activation."""
        tip = self.add("bn", "bn", {"eps": 1e-5, "momentum": 0.1}, [lid]) if bn else lid
        self.weighted.append((op, lid, tip if bn else None))
        return self.activation(tip, "logistic")

    def earlier(self, key: str, ref: str) -> str:
        i = checks.whole(ref, key, self.place(), low=-checks.MAX_VALUES, span=self.section.spans.get(key))
        at = len(self.index) + i if i < 0 else i
        if not 0 <= at < len(self.index):
            raise self.refuse(f"names layer {ref}, which is not an earlier layer", "earlier layers")
        return self.index[at]


# --- one reader a section kind: (the cfg, the tip so far) -> the new tip ------------------------------

def _convolutional(c: _Cfg, tip: str) -> str:
    size, stride = c.whole("size", 1), c.whole("stride", 1)
    pad = size // 2 if c.whole("pad", 0, low=0) else c.whole("padding", 0, low=0)
    bn = c.flag("batch_normalize")
    tip = c.add("conv", "conv", {"out": c.whole("filters", 1), "kernel": (size, size), "stride": (stride, stride),
                                 "pad": (pad, pad), "groups": c.whole("groups", 1), "bias": not bn}, [tip])
    return c.weighted_layer("conv", tip, bn)


def _maxpool(c: _Cfg, tip: str) -> str:
    stride = c.whole("stride", 1)
    size = c.whole("size", stride)
    padding = c.whole("padding", size - 1, low=0)
    before, after = padding // 2, padding - padding // 2
    if len(c.shapes[tip]) != 3:
        raise c.refuse("pools a vector", "[maxpool] on a feature map")
    n = c.shapes[tip][1]
    padend = after - before
    if padend and (n + padding - size) // stride + 1 == (n + 2 * before - size) // stride + 1:
        padend = 0  # the extra row and column after are never read: plain lines read better
    return c.add("pool", "pool", {"mode": "max", "kernel": (size, size), "stride": (stride, stride),
                                  "pad": (before, before), "padend": (padend, padend), "ceil": False,
                                  "count_pad": True}, [tip])


def _avgpool(c: _Cfg, tip: str) -> str:
    return c.add("pool", "pool", {"mode": "avg", "kernel": "global", "stride": (1, 1), "pad": (0, 0),
                                  "ceil": False, "count_pad": True}, [tip])


def _connected(c: _Cfg, tip: str) -> str:
    bn = c.flag("batch_normalize")
    tip = c.add("fc", "fc", {"out": c.whole("output", 1), "bias": not bn}, [tip])
    return c.weighted_layer("fc", tip, bn)


def _dropout(c: _Cfg, tip: str) -> str:
    return c.add("dropout", "dropout", {"p": c.real("probability", 0.5)}, [tip])


def _softmax(c: _Cfg, tip: str) -> str:
    """Over all of a sample's outputs: a 10x1x1 map is flattened first."""
    if len(c.shapes[tip]) == 3:
        tip = c.add("flatten", "flatten", {}, [tip])
    return c.add("softmax", "softmax", {}, [tip])


def _route(c: _Cfg, tip: str) -> str:
    refs = [c.earlier("layers", r.strip()) for r in c.word("layers", "").split(",") if r.strip()]
    if not refs:
        raise c.refuse("names no layers", "layers=-1,-4 and the like")
    return refs[0] if len(refs) == 1 else c.add("concat", "concat", {}, refs)


def _shortcut(c: _Cfg, tip: str) -> str:
    """The previous layer plus the `from` layer, Darknet's way between any shapes (shortcut_cpu):
    the output has the previous layer's shape; the first min(c1, c2) channels are added; a larger
    `from` map is sampled every s-th row and column from the first (s = w1 / w2, the same for
    h). netdsl's terms: the `from` layer's first c2 channels (`split`) where it has more, then
    `zeropad c2 /s` (zero channels where it has fewer): the `shortcut zeropad` of option A. A
    smaller `from` map (Darknet adds it at every s-th position of the larger) and sizes that do
    not divide (Darknet's sampling then crops) have no exact netdsl layer and are refused."""
    other = c.earlier("from", c.word("from", "-1"))
    for key in ("alpha", "beta"):
        if c.real(key, 1.0) != 1.0:
            raise c.refuse(f"weights its sum ({key}={c.word(key, '1')})", "shortcuts that add, alpha=beta=1")
    (c1, h1, w1), (c2, h2, w2) = c.shapes[other], c.shapes[tip]
    src = other
    if (c1, h1, w1) != (c2, h2, w2):
        shown = f"adds a {c1}x{h1}x{w1} layer to a {c2}x{h2}x{w2} one"
        if h1 < h2 or w1 < w2 or h1 % h2 or w1 % w2 or h1 // h2 != w1 // w2:
            raise c.refuse(shown + ": Darknet then adds the smaller map at every s-th position of the larger "
                           "or crops it, which netdsl has no layer for",
                           "shortcuts from a map of the same size or a whole multiple of it (sampled by the stride)")
        s = h1 // h2
        if c1 > c2:  # only the first c2 channels of `from` are added
            if c1 % c2:
                raise c.refuse(shown + f": Darknet adds the first {c2} of the {c1} channels, which netdsl "
                               f"takes as a split into equal parts ({c1} is no multiple of {c2})",
                               "shortcuts whose larger channel count is a whole multiple of the smaller")
            src = c.add("split", "split", {"parts": c1 // c2, "take": 1}, [src])
        if s != 1 or c1 < c2:
            src = c.add("zeropad", "zeropad", {"out": c2, "stride": (s, s)}, [src])
    return c.activation(c.add("add", "add", {}, [tip, src]), "linear")


def _crop(c: _Cfg, tip: str) -> str:
    """Darknet's crop at inference (crop_layer.c, !net.train): the centre crop_height x crop_width,
    its values rescaled to x*2 - 1 unless noadjust=1; the random offset, flip and colour changes
    are training's. On the network's input, where Darknet's cfgs put it, it is how the image is
    prepared, not a layer: the network takes the crop's size (what Darknet feeds its first conv),
    and the imported file's header says how to cut and scale the picture. Further in, it is the
    identity where it keeps the whole map and its values; a crop that cuts or rescales a feature
    map has no netdsl layer."""
    if len(c.shapes[tip]) != 3:
        raise c.refuse("crops a vector", "[crop] on a feature map")
    ch, h, w = c.shapes[tip]
    size = (c.whole("crop_height", 1), c.whole("crop_width", 1))
    if tip == "input":
        if size[0] > h or size[1] > w:
            raise c.refuse(f"crops {size[0]}x{size[1]} from a {h}x{w} image",
                           "crops no larger than [net]'s height and width")
        c.layers["input"].attrs["shape"] = c.shapes["input"] = (ch, *size)
        scaled = "" if c.flag("noadjust") else ", its pixels (in [0, 1]) rescaled to x*2 - 1"
        c.preparation = (f"[crop] at line {c.section.line}: the network takes the centre {size[0]}x{size[1]} of "
                         f"[net]'s {h}x{w} image{scaled}")
        return tip
    if size != (h, w):
        raise c.refuse(f"crops the {h}x{w} map to its centre {size[0]}x{size[1]} at inference",
                       "[crop] on the network's input (how the image is prepared), or of a whole feature map "
                       "(the identity)")
    if not c.flag("noadjust"):
        raise c.refuse("rescales its values to x*2 - 1 at inference (noadjust=0, Darknet's default)",
                       "[crop] with noadjust=1 past the network's input, the identity at inference")
    return tip


def _index_only(c: _Cfg, tip: str) -> str:
    """A section that holds a layer index of its own but computes nothing for inference ([cost]: training's loss)."""
    return tip


# Darknet section kind -> its reader; the unknown-section hint is made from this table
SECTIONS = {"convolutional": _convolutional, "maxpool": _maxpool, "avgpool": _avgpool, "connected": _connected,
            "dropout": _dropout, "softmax": _softmax, "route": _route, "shortcut": _shortcut, "cost": _index_only,
            "crop": _crop}
ALIASES = {"conv": "convolutional", "network": "net"}  # other spellings parser.c accepts


def read_darknet(path: str | os.PathLike) -> _Cfg:
    text = checks.read_text(path, MAX_CFG, "a Darknet .cfg file")
    sections = _sections(text, str(path))
    if not sections or ALIASES.get(sections[0].kind, sections[0].kind) != "net":
        raise NetError(f"{path}: a Darknet .cfg starts with [net] (width, height, channels)")
    c = _Cfg(str(path))
    c.section = sections[0]
    shape = (c.whole("channels", 3), c.whole("height", None), c.whole("width", None))
    checks.bounded_product(shape, "the input", c.place())
    c.layers["input"] = Layer("input", "input", {"shape": shape}, [], "input")
    c.shapes["input"] = shape
    tip = "input"
    for sec in sections[1:]:
        c.section = sec
        read = SECTIONS.get(ALIASES.get(sec.kind, sec.kind))
        if read is None:
            raise c.refuse("is a section netdsl has no layer for", ", ".join(f"[{kind}]" for kind in SECTIONS))
        tip = read(c, tip)
        c.index.append(tip)
    if len(c.layers) == 1:
        raise NetError(f"{path}: the .cfg has a [net] section and no layers netdsl reads")
    return c


def read_weights(c: _Cfg, path: str | os.PathLike) -> None:
    """A Darknet .weights file into the layers' tensors, in Darknet's order (parser.c's
    load_weights): a header (major, minor, revision as int32, then `seen`, 8 bytes from version
    0.2 on, else 4); then for each convolutional layer its biases, and with batch_normalize its
    scales, rolling means and rolling variances, then its weights (filters x channels/groups x
    size x size); for each connected layer its biases and weights (outputs x inputs), then the
    batch-norm values. With batch norm the biases are the bn's shift (the conv has none).
    Darknet writes versions 0.1 and 0.2 (0.2.5 in the maintained fork); a header of another major
    version, or of a minor beyond 999 (Darknet's own test), is not a .weights file netdsl knows."""
    data = checks.read_file(path, MAX_WEIGHTS, "a Darknet .weights file")
    if len(data) < 12:
        raise NetError(f"{path} is too short for a Darknet .weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data[:12], "<i4"))  # Python ints: no overflow
    if major not in (0, 1) or not 0 <= minor < 1000 or revision < 0:
        raise NetError(f"{path}: its header says version {major}.{minor}.{revision}, which is no Darknet .weights "
                       "version netdsl knows", hint="Darknet writes 0.1 and 0.2 (0.2.5); is it a .weights file?")
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
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
        count = checks.bounded_product(shape, "its weights", Place(str(path), f"layer '{lid}'"))
        n = shape[0]
        biases = take(n, "biases", lid)
        if kind == "conv":
            if bn:
                _bn_values(c, bn, biases, take, n, lid)
            else:
                layer.tensors["bias"] = biases
            layer.tensors["weight"] = take(count, "weights", lid).reshape(shape)
        else:
            layer.tensors["weight"] = take(count, "weights", lid).reshape(shape)
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
    return (layer.attrs["out"], checks.bounded_product(src, "its input", Place(c.path, f"layer '{lid}'")))


def import_darknet(path: str | os.PathLike, weights: str | os.PathLike | None = None):
    """A Darknet .cfg as (.net text, state dict): the state from a .weights file when given."""
    c = read_darknet(path)
    if weights is not None:
        read_weights(c, weights)
    consumers = {src for layer in c.layers.values() for src in layer.inputs}
    ends = [lid for lid in c.layers if lid not in consumers and lid != "input"]
    trunk = c.index[-1] if c.index and c.index[-1] in ends else ends[-1]
    outputs = [("output", trunk)] + [(f"aux{i + 1}", e) for i, e in enumerate(x for x in ends if x != trunk)]
    note = f"imported from {comment(os.path.basename(str(path)))} (Darknet cfg) by netdsl import"
    if c.preparation:
        note += f"\n# {c.preparation}"  # its own words and numbers: nothing of the file's to escape
    return write_network(c.layers, c.shapes, outputs, c.layers["input"].attrs["shape"], stem_name(str(path)), note,
                         str(path))
