"""An ONNX model as netdsl text and a state dict: the importer's first half (issue 16).

The graph is read op by op through one table (IMPORTERS, keyed by ONNX op type), each entry
turning a node into a netdsl layer's attributes (whose text the op table writes, so the
importer never spells the language itself) or folding it away (Identity, Constant, a Flatten
that feeds a Gemm, an Add that is a MatMul's bias). Then the data-flow graph becomes netdsl's
structure by its cut points: between two nodes that every path passes through (the immediate
dominators of the output), a single layer, or a merge (concat/add) whose branches are the same
decomposition again from the fork to each of the merge's inputs, and `shortcut` where an input
is the fork itself. A graph output off the trunk becomes a `side { }` after the layer it leaves
from. Anything netdsl cannot express exactly (dilations, asymmetric pads, an op it lacks) is a
NetError naming the node, its op and attribute, and what netdsl supports.

Repeated blocks are then recovered (blocks.py): one block per repeated merge structure, its
varying widths and strides as parameters, runs of equal instances as `repeat`.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..errors import NetError
from . import checks
from .checks import Place
from .labels import comment
from .structure import Layer as _Layer, network_name, write_network

MAX_ONNX = 2 << 30  # protobuf's own bound on one message: 2 GiB
# inputs each op needs at least (others: one)
MIN_INPUTS = {"Conv": 2, "Gemm": 2, "MatMul": 2, "BatchNormalization": 5, "Reshape": 2, "Constant": 0}
# numeric data types a tensor may have: ONNX type -> the typed field its values are in when not raw
TYPED_FIELDS = {1: "float_data", 11: "double_data", 10: "int32_data", 16: "int32_data", 2: "int32_data",
                3: "int32_data", 4: "int32_data", 5: "int32_data", 6: "int32_data", 9: "int32_data",
                7: "int64_data", 12: "uint64_data", 13: "uint64_data"}


def node_place(path: str, node) -> Place:
    """A node as messages name it: its name (printable, cut when long) and op, or its place in the graph."""
    return Place(path, f"node '{comment(node.name)}' ({node.op_type})")


def tensor_array(t, place: Place) -> np.ndarray:
    """A TensorProto as an array, checked first: a numeric type, dims whole and 0 or more, their
    product at most checks.MAX_VALUES (exactly: 2^32 x 2^32 is not 0), and the data exactly that
    many values, so nothing is allocated from a size the data does not back."""
    from onnx import helper, numpy_helper
    field = TYPED_FIELDS.get(t.data_type)
    if field is None:
        kind = helper.tensor_dtype_to_string(t.data_type).rsplit(".", 1)[-1] \
            if t.data_type in helper.get_all_tensor_dtypes() else t.data_type
        raise place.error(f"tensor '{comment(t.name)}' has data type {kind}, which netdsl does not read",
                          "netdsl reads numeric tensors (float, double, ints, bool)")
    shape = checks.dims(t.dims, f"tensor '{comment(t.name)}'", place, low=0)
    count = checks.bounded_product(shape, f"tensor '{comment(t.name)}'", place)
    itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    if t.data_location == 1:  # onnx.TensorProto.EXTERNAL, not loaded (external.load reads them all first)
        raise place.error(f"tensor '{comment(t.name)}' keeps its data outside the model")
    got = len(t.raw_data) // itemsize if t.raw_data else len(getattr(t, field))
    if (t.raw_data and len(t.raw_data) != count * itemsize) or got != count:
        raise place.error(f"tensor '{comment(t.name)}' of shape {list(shape)} needs {count:,} values, "
                          f"but holds {got:,}")
    try:
        return numpy_helper.to_array(t)
    except Exception as exc:  # onnx's own conversion refusing what passed the checks above
        raise place.error(f"tensor '{comment(t.name)}' cannot be read ({type(exc).__name__})") from None


class _Reader:
    def __init__(self, model, path: str):
        self.path = path
        self.model = model
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: tensor_array(t, Place(path, f"initializer '{comment(t.name)}'"))
                                              for t in g.initializer}
        self.defined: set[str] = set(self.consts)  # every value so far: a node may not write one again
        self.taken: dict[str, int] = {}  # a layer id -> the next suffix for another layer of that name
        self.alias: dict[str, str] = {}  # folded value -> the value it stands for
        self.layers: dict[str, _Layer] = {}
        self.fresh: list[str] = []  # the layers the node being read added
        self.producer: dict[str, str] = {}  # ONNX value -> layer id
        self.pending_flatten: dict[str, str] = {}  # Flatten output -> its input value (a Gemm may absorb it)
        self.unsqueezed: dict[str, str] = {}  # a vector as Cx1x1 -> the vector's value (a gate may read it)
        real = [i for i in g.input if i.name not in self.consts]
        if len(real) != 1:
            raise NetError(f"{path}: netdsl networks have one input; this model has {len(real)} "
                           f"({', '.join(i.name for i in real) or 'none'})")
        self.input_name = real[0].name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in real[0].type.tensor_type.shape.dim]
        if len(dims) not in (2, 4) or any(d is None for d in dims[1:]):
            raise NetError(f"{path}: input '{comment(real[0].name)}' has shape {dims}: netdsl reads N x C x H x W or "
                           "N x features, with every size but N known")
        self.input_shape = checks.dims(dims[1:], "the input", Place(path, f"input '{comment(real[0].name)}'"))
        self.defined.add(real[0].name)
        self.layers["input"] = _Layer("input", "input", {"shape": self.input_shape}, [], real[0].name)
        self.producer[real[0].name] = "input"

    # helpers ---------------------------------------------------------------------------------------
    def value(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def layer_of(self, name: str, node) -> str:
        name = self.value(name)
        if name in self.pending_flatten:  # a Flatten no Gemm absorbed: a flatten layer after all
            src = self.pending_flatten.pop(name)
            self.add(node_name=f"{name}", op="flatten", attrs={}, inputs=[self.layer_of(src, node)], out=name)
        if name in self.unsqueezed:
            raise _refuse(self, node, f"reads '{comment(name)}', a vector made Cx1x1 (Unsqueeze or Reshape)",
                          "such a vector only as a squeeze-and-excitation gate (Mul of a map by it)")
        if name not in self.producer:
            raise NetError(f"{self.path}: node '{comment(node.name)}' ({node.op_type}) reads '{comment(name)}', "
                           "which is neither the input nor a layer's output (a computed constant netdsl cannot follow)")
        return self.producer[name]

    def const(self, name: str, node, what: str) -> np.ndarray:
        name = self.value(name)
        if name not in self.consts:
            raise NetError(f"{self.path}: node '{comment(node.name)}' ({node.op_type}): its {what} '{comment(name)}' "
                           "is not a constant")
        return self.consts[name]

    def add(self, node_name: str, op: str, attrs: dict, inputs: list[str], out: str,
            tensors: dict | None = None) -> None:
        base = lid = node_name or out
        while lid in self.layers:  # the same name on many nodes: numbered, in time linear in their count
            self.taken[base] = self.taken.get(base, 1) + 1
            lid = f"{base}_{self.taken[base]}"
        self.layers[lid] = _Layer(lid, op, attrs, inputs, node_name, tensors or {})
        self.producer[out] = lid
        self.fresh.append(lid)


def _attrs(node, path: str) -> dict[str, Any]:
    """A node's attributes; floats (stored as float32) as the shortest decimal that float32 reads
    back, so that 1e-5 comes back as 1e-5, not 9.99999975e-06."""
    from onnx import helper
    out = {}
    for a in node.attribute:
        try:
            value = helper.get_attribute_value(a)
        except Exception:  # an attribute of no known type
            raise NetError(f"{path}: node '{comment(node.name)}' ({node.op_type}): its attribute "
                           f"'{comment(a.name)}' cannot be read") from None
        if isinstance(value, float):
            with np.errstate(over="ignore"):  # 1e300 is inf in float32; the op table refuses it by name
                value = float(str(np.float32(value)))
        out[a.name] = value
    return out


def _refuse(r: _Reader, node, what: str, supported: str) -> NetError:
    return NetError(f"{r.path}: node '{comment(node.name)}' ({node.op_type}) {what}", hint=f"netdsl supports {supported}")


def _ints(r: _Reader, node, a: dict, key: str, default, count: int = 2, low: int = 1) -> tuple[int, ...]:
    """An attribute of `count` whole numbers of at least `low` (strides, kernel_shape, pads)."""
    value = a.get(key, default)
    if value is None:
        raise _refuse(r, node, f"has no {key}", f"{key} given")
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise _refuse(r, node, f"has {key} {value}", f"{count} values of {key} (2-D windows)")
    return tuple(checks.whole(v, key, node_place(r.path, node), low=low) for v in value)


def _window(r: _Reader, node, a: dict, kernel: tuple[int, int], spatial: tuple[int, int]):
    """strides, pads and padends from an ONNX conv/pool node, auto_pad turned into explicit pads:
    netdsl pads both sides alike and may add more after (padend), never more before."""
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _refuse(r, node, f"has dilations {a['dilations']}", "dilation 1 only")
    strides = _ints(r, node, a, "strides", [1, 1])
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode("utf-8", "replace") if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise _refuse(r, node, f"has auto_pad '{comment(str(auto))}'", "auto_pad NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, k, s in zip(spatial, kernel, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2))
        begin, end = tuple(p[0] for p in pads), tuple(p[1] for p in pads)
    elif auto == "VALID":
        begin = end = (0, 0)
    else:
        p = _ints(r, node, a, "pads", [0, 0, 0, 0], count=4, low=0)
        begin, end = tuple(p[:2]), tuple(p[2:])
    if any(b > e for b, e in zip(begin, end)):
        raise _refuse(r, node, f"pads {list(begin) + list(end)} put more padding before the input than after",
                      "padding before and after alike, or more after (padend)")
    return strides, begin, tuple(e - b for b, e in zip(begin, end))


def _conv(r, node, a, shapes):
    w = r.const(node.input[1], node, "weight")
    if w.ndim != 4:
        raise _refuse(r, node, f"has a {w.ndim - 2}-D kernel", "2-D convolutions")
    x = r.layer_of(node.input[0], node)
    kernel = _ints(r, node, a, "kernel_shape", list(w.shape[2:]))
    strides, pad, padend = _window(r, node, a, kernel, shapes[x][1:])
    attrs = {"out": int(w.shape[0]), "kernel": kernel, "stride": strides, "pad": pad, "padend": padend,
             "groups": checks.whole(a.get("group", 1), "group", node_place(r.path, node)),
             "bias": len(node.input) > 2 and bool(node.input[2])}
    tensors = {"weight": w}
    if attrs["bias"]:
        tensors["bias"] = r.const(node.input[2], node, "bias")
    r.add(node.name, "conv", attrs, [x], node.output[0], tensors)


def _pool(mode: str):
    def read(r, node, a, shapes):
        if a.get("storage_order", 0):
            raise _refuse(r, node, "has storage_order 1", "row-major storage")
        x = r.layer_of(node.input[0], node)
        kernel = _ints(r, node, a, "kernel_shape", None)
        strides, pad, padend = _window(r, node, a, kernel, shapes[x][1:])
        attrs = {"mode": mode, "kernel": kernel, "stride": strides, "pad": pad, "padend": padend,
                 "ceil": bool(a.get("ceil_mode", 0)),
                 "count_pad": bool(a.get("count_include_pad", 0)) if mode == "avg" else True}
        if len(node.output) > 1 and node.output[1]:
            raise _refuse(r, node, "returns its argmax indices", "pooled values only")
        r.add(node.name, "pool", attrs, [x], node.output[0])
    return read


def _global(mode: str):
    def read(r, node, a, shapes):
        r.add(node.name, "pool", {"mode": mode, "kernel": "global", "stride": (1, 1), "pad": (0, 0), "padend": (0, 0),
                                  "ceil": False, "count_pad": True}, [r.layer_of(node.input[0], node)], node.output[0])
    return read


def _gemm(r, node, a, shapes):
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or (a.get("beta", 1.0) != 1.0 and len(node.input) > 2):
        raise _refuse(r, node, "scales or transposes its input", "Gemm with alpha = beta = 1 and transA = 0 (as fc)")
    w = r.const(node.input[1], node, "weight")
    if w.ndim != 2:
        raise _refuse(r, node, f"multiplies by a tensor of shape {list(w.shape)}", "Gemm by a constant matrix (as fc)")
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    _fc(r, node, w if a.get("transB", 0) else w.T, bias)


def _matmul(r, node, a, shapes):
    w = r.const(node.input[1], node, "weight")
    if w.ndim != 2:
        raise _refuse(r, node, "multiplies by a non-matrix", "MatMul by a constant matrix (as fc)")
    _fc(r, node, w.T, None)  # an Add after it may bring the bias (_add)


def _fc(r, node, w, bias_value):
    """An fc layer from x @ w.T (+ bias): w is (units, inputs), as netdsl stores it."""
    src = r.value(node.input[0])
    if src in r.pending_flatten:  # the Flatten before it: fc flattens a feature map itself
        src = r.pending_flatten.pop(src)
    x = r.layer_of(src, node)
    tensors = {"weight": np.ascontiguousarray(w)}
    if bias_value is not None:
        c = r.const(bias_value, node, "bias")
        if c.size == 1:  # a broadcast scalar: the same bias for every unit
            c = np.full(w.shape[0], c.reshape(-1)[0], dtype=np.float32)
        elif c.size != w.shape[0] or (c.ndim == 2 and c.shape[0] != 1):
            raise _refuse(r, node, f"adds a bias of shape {list(c.shape)}", f"a bias of {w.shape[0]} values, or one")
        tensors["bias"] = c.reshape(-1)
    r.add(node.name, "fc", {"out": int(w.shape[0]), "bias": "bias" in tensors}, [x], node.output[0], tensors)


def _add(r, node, a, shapes):
    ins = [r.value(v) for v in node.input]
    consts = [v for v in ins if v in r.consts]
    if len(consts) == 1 and len(ins) == 2:  # a MatMul's bias
        other = ins[0] if ins[1] in r.consts else ins[1]
        lid = r.layer_of(other, node)
        layer = r.layers[lid]
        if layer.op == "fc" and not layer.attrs["bias"]:
            layer.attrs["bias"] = True
            layer.tensors["bias"] = r.consts[consts[0]].reshape(-1)
            r.alias[node.output[0]] = other
            return
        raise _refuse(r, node, "adds a constant to a layer that is not an fc", "Add of layer outputs, or an fc's bias")
    r.add(node.name, "add", {}, [r.layer_of(v, node) for v in ins], node.output[0])


def _bn(r, node, a, shapes):
    if a.get("spatial", 1) != 1:  # opsets 7-8: statistics per position as well as per channel
        raise _refuse(r, node, "keeps statistics per position (spatial 0)", "statistics per channel (spatial 1)")
    if len([o for o in node.output if o]) > 1:
        raise _refuse(r, node, "returns its batch statistics (training mode)", "BatchNormalization in inference")
    scale, bias, mean, var = (r.const(v, node, what) for v, what in zip(node.input[1:5], ("scale", "B", "mean", "var")))
    momentum = float(a.get("momentum", 0.9))
    attrs = {"eps": float(a.get("epsilon", 1e-5)), "momentum": round(1.0 - momentum, 6)}
    r.add(node.name, "bn", attrs, [r.layer_of(node.input[0], node)], node.output[0],
          {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})


def _dropout(r, node, a, shapes):
    p = a.get("ratio")
    if p is None and len(node.input) > 1 and node.input[1]:
        ratio = r.const(node.input[1], node, "ratio")
        if ratio.size != 1:
            raise _refuse(r, node, f"has a ratio of shape {list(ratio.shape)}", "one dropout ratio")
        p = ratio.reshape(-1)[0].item()
    r.add(node.name, "dropout", {"p": checks.real(0.5 if p is None else p, "ratio", node_place(r.path, node))},
          [r.layer_of(node.input[0], node)], node.output[0])


def _axis_one(op: str):
    def read(r, node, a, shapes):
        axis = a.get("axis", 1)
        x = r.layer_of(node.input[0], node)
        rank = len(shapes[x]) + 1
        if axis not in (1, 1 - rank) and not (op == "softmax" and axis == -1 and rank == 2):
            raise _refuse(r, node, f"works on axis {axis}", "axis 1 (channels, or the features of a vector)")
        r.add(node.name, op, {}, [x], node.output[0])
    return read


def _flatten(r, node, a, shapes):
    if a.get("axis", 1) != 1:
        raise _refuse(r, node, f"flattens from axis {a.get('axis')}", "Flatten from axis 1")
    r.pending_flatten[node.output[0]] = r.value(node.input[0])


def _reshape(r, node, a, shapes):
    place = node_place(r.path, node)
    target = [checks.whole(v, "a target size", place, low=-1) for v in r.const(node.input[1], node, "shape").reshape(-1)]
    if r.value(node.input[0]) in r.consts:  # a constant reshaped (a weight, in old exporters): fold it
        value = r.consts[r.value(node.input[0])]
        try:
            r.consts[node.output[0]] = value.reshape([value.shape[i] if d == 0 and i < value.ndim else d
                                                      for i, d in enumerate(target)])
        except ValueError:
            raise _refuse(r, node, f"reshapes a constant of shape {list(value.shape)} to {target}",
                          "a Reshape that keeps the number of values") from None
        return
    x = r.layer_of(node.input[0], node)
    n = checks.bounded_product(shapes[x], "the input", place)
    if len(target) == 2 and target[0] in (0, -1, 1) and target[1] in (-1, n):
        r.pending_flatten[node.output[0]] = r.value(node.input[0])
        return
    if len(shapes[x]) == 1 and len(target) == 4 and target[0] in (0, -1, 1) and target[1] in (-1, n) \
            and target[2:] == [1, 1]:  # an fc's gate as N x C x 1 x 1 (torch's view(b, c, 1, 1) in SE)
        r.unsqueezed[node.output[0]] = r.value(node.input[0])
        return
    raise _refuse(r, node, f"reshapes to {target}", "Reshape to N x features (a flatten)")


def _simple(op: str, attrs: Callable[[dict], dict] = lambda a: {}):
    def read(r, node, a, shapes):
        r.add(node.name, op, attrs(a), [r.layer_of(node.input[0], node)], node.output[0])
    return read


def _fold(r, node, a, shapes):
    r.alias[node.output[0]] = node.input[0]  # never a loop: the reader refuses a value written twice


def _constant_of_shape(r, node, a, shapes):
    """A constant filled with one value: its shape (a constant) bounded before anything is allocated."""
    place = node_place(r.path, node)
    shape = checks.dims(r.const(node.input[0], node, "shape").reshape(-1), "the constant", place, low=0)
    value = np.float32(0)
    if "value" in a:
        given = tensor_array(a["value"], place)
        if given.size != 1:
            raise _refuse(r, node, f"fills with a value of shape {list(given.shape)}", "one fill value")
        value = given.reshape(-1)[0]
    r.consts[node.output[0]] = np.full(shape, value)


def _constant(r, node, a, shapes):
    if "value" not in a or not hasattr(a["value"], "dims"):
        raise _refuse(r, node, "holds a constant netdsl cannot read", "tensor constants")
    r.consts[node.output[0]] = tensor_array(a["value"], node_place(r.path, node))


def _concat(r: _Reader, node, a, shapes):
    """Concat of channels, its inputs in order."""
    x = [r.layer_of(v, node) for v in node.input]
    axis = a.get("axis", 1)
    if axis != 1:
        raise _refuse(r, node, f"concatenates along axis {axis}", "concatenation of channels (axis 1)")
    r.add(node.name, "concat", {}, x, node.output[0])


# --- the zoo's ops (issue 26): MobileNet's and EfficientNet's activations, squeeze-and-excitation --------

def _scalar_setting(r, node, a, key: str, slot: int, default):
    """A bound given as an attribute (Clip before opset 11) or as an optional constant input (11 on)."""
    if len(node.input) > slot and node.input[slot]:
        value = r.const(node.input[slot], node, key)
        if value.size != 1:
            raise _refuse(r, node, f"has a {key} of shape {list(value.shape)}", f"one {key} value")
        return float(value.reshape(-1)[0])
    return float(a[key]) if key in a else default


def _clip(r, node, a, shapes):
    """Clip(0, 6) is relu6 and Clip(0, none) relu; no bounds at all is the identity. Other bounds
    have no netdsl layer (an activation clipped elsewhere would compute something else)."""
    lo, hi = _scalar_setting(r, node, a, "min", 1, None), _scalar_setting(r, node, a, "max", 2, None)
    big = float(np.finfo(np.float32).max)  # opsets before 11: the defaults are float32's extremes
    lo = None if lo is not None and lo <= -big else lo
    hi = None if hi is not None and hi >= big else hi
    if lo is None and hi is None:
        return _fold(r, node, a, shapes)
    op = {(0.0, 6.0): "relu6", (0.0, None): "relu"}.get((lo, hi))
    if op is None:
        raise _refuse(r, node, f"clips to [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]",
                      "Clip(0, 6) as relu6 and Clip(0) as relu")
    r.add(node.name, op, {}, [r.layer_of(node.input[0], node)], node.output[0])


def _hard_sigmoid(r, node, a, shapes):
    """max(0, min(1, alpha*x + beta)): with alpha 1/6 and beta 1/2 it is relu6(x + 3)/6, netdsl's hsigmoid
    (both compared as float32, the precision ONNX stores them in)."""
    alpha, beta = np.float32(a.get("alpha", 0.2)), np.float32(a.get("beta", 0.5))
    if (alpha, beta) != (np.float32(1 / 6), np.float32(0.5)):
        raise _refuse(r, node, f"has alpha {float(alpha):g} and beta {float(beta):g}",
                      "HardSigmoid with alpha 1/6 and beta 1/2 (MobileNet v3's hsigmoid, relu6(x + 3)/6)")
    r.add(node.name, "hsigmoid", {}, [r.layer_of(node.input[0], node)], node.output[0])


def _unsqueeze(r, node, a, shapes):
    """A vector (an fc's output) made N x C x 1 x 1: only a gate reads it (netdsl's gate takes C values)."""
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in r.const(node.input[1], node, "axes").reshape(-1)]
    x = r.layer_of(node.input[0], node)
    _shapes(r, shapes, node_place(r.path, node))  # a Flatten made a layer just now: its shape too
    if len(shapes[x]) != 1 or sorted(axes or []) not in ([2, 3], [-2, -1]):
        raise _refuse(r, node, f"unsqueezes a {'x'.join(map(str, shapes[x]))} value on axes {axes}",
                      "Unsqueeze of a vector on axes 2 and 3, as a squeeze-and-excitation gate")
    r.unsqueezed[node.output[0]] = r.value(node.input[0])


def _mul(r, node, a, shapes):
    """x * Sigmoid(x) is silu; a map times a per-channel factor from a side branch (C x 1 x 1, or a
    vector Unsqueezed) is squeeze-and-excitation's gate, the map first whichever order Mul has them."""
    if len(node.input) != 2:
        raise _refuse(r, node, f"has {len(node.input)} inputs", "Mul of two values")
    ins = [r.value(v) for v in node.input]
    if any(v in r.consts for v in ins):
        raise _refuse(r, node, "multiplies by a constant", "Mul of a map by a per-channel gate computed from it "
                      "(squeeze-and-excitation), or x * Sigmoid(x) (silu)")
    gate_of = {v: r.unsqueezed.get(v) for v in ins}
    lids = [r.producer[gate_of[v]] if gate_of[v] else r.layer_of(v, node) for v in ins]
    _shapes(r, shapes, node_place(r.path, node))
    for k in (0, 1):  # silu: one input the Sigmoid of the other
        sig = r.layers[lids[k]]
        if sig.op == "sigmoid" and sig.inputs == [lids[1 - k]] and not gate_of[ins[k]]:
            r.add(node.name, "silu", {}, [lids[1 - k]], node.output[0])
            return
    shape = [shapes[lid] for lid in lids]
    for k in (0, 1):
        x, g = shape[k], shape[1 - k]
        if len(x) == 3 and (g == (x[0], 1, 1) or (gate_of[ins[1 - k]] and g == (x[0],))):
            r.add(node.name, "gate", {}, [lids[k], lids[1 - k]], node.output[0])
            return
    raise _refuse(r, node, "multiplies " + " by ".join("x".join(map(str, s)) for s in shape),
                  "Mul of a CxHxW map by a Cx1x1 gate (squeeze-and-excitation), or x * Sigmoid(x) (silu)")


IMPORTERS: dict[str, Callable] = {
    "Conv": _conv,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalMaxPool": _global("max"), "GlobalAveragePool": _global("avg"),
    "Gemm": _gemm, "MatMul": _matmul,
    "Relu": _simple("relu"), "Tanh": _simple("tanh"), "Sigmoid": _simple("sigmoid"),
    "LeakyRelu": _simple("leaky", lambda a: {"slope": float(a.get("alpha", 0.01))}),
    "LRN": _simple("lrn", lambda a: {"size": a.get("size"), "alpha": float(a.get("alpha", 1e-4)),
                                     "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}),
    "BatchNormalization": _bn,
    "Dropout": _dropout,
    "Flatten": _flatten, "Reshape": _reshape,
    "Concat": _concat,
    "Add": _add, "Sum": lambda r, node, a, shapes: r.add(node.name, "add", {}, [r.layer_of(v, node) for v in node.input],
                                                        node.output[0]),
    "Softmax": _axis_one("softmax"),
    "Identity": _fold, "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "HardSwish": _simple("hswish"), "HardSigmoid": _hard_sigmoid, "Clip": _clip,
    "Mul": _mul, "Unsqueeze": _unsqueeze,
}




def read_model(path: str | os.PathLike):
    """The ModelProto at `path`: its size checked before it is read, its opsets known, its
    external data read by netdsl's own checks (external.py)."""
    import onnx

    from ..expand import MAX_NODES
    from .external import load
    data = checks.read_file(path, MAX_ONNX, "an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends: a damaged or foreign file
        raise NetError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    del data
    if not model.graph.node:
        raise NetError(f"{path} is not a readable ONNX model (no graph nodes)")
    latest = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and not 1 <= o.version <= latest:
            raise NetError(f"{path}: the model asks for ONNX opset {o.version}; netdsl knows opsets 1 to {latest}",
                           hint="export it again with a released opset (13 reads everywhere)")
    if len(model.graph.node) > MAX_NODES:
        raise NetError(f"{path} has {len(model.graph.node):,} nodes; a netdsl network has at most {MAX_NODES:,} layers")
    load(model, str(path))
    return model


def read_onnx(path: str | os.PathLike):
    """The model at `path`, read into layers (the first stage); NetErrors for anything else."""
    model = read_model(path)
    r = _Reader(model, str(path))
    shapes = {"input": r.input_shape}
    for node in model.graph.node:
        place = node_place(str(path), node)
        read = IMPORTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if read is None:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            raise NetError(f"{path}: node '{comment(node.name)}' has op {comment(op)}, which netdsl has no layer for",
                           hint="netdsl reads " + ", ".join(sorted(IMPORTERS)))
        if len(node.input) < MIN_INPUTS.get(node.op_type, 1) or not node.output or not node.output[0]:
            raise place.error(f"has {len(node.input)} inputs and {len(node.output)} outputs",
                              f"{node.op_type} reads at least {MIN_INPUTS.get(node.op_type, 1)} input(s) and "
                              "writes an output")
        for out in node.output:
            if out in r.defined:
                raise place.error(f"writes '{comment(out)}', which the input or an earlier node already holds",
                                  "each value of an ONNX graph is written once")
        r.defined.update(o for o in node.output if o)
        r.fresh = []
        read(r, node, _attrs(node, str(path)), shapes)
        _shapes(r, shapes, place)
    outputs = []
    for out in model.graph.output:
        value = r.value(out.name)
        if value in r.pending_flatten:
            r.fresh = []
            r.layer_of(value, model.graph.node[-1])
            _shapes(r, shapes, Place(str(path), f"output '{comment(out.name)}'"))
        if value not in r.producer:
            raise NetError(f"{path}: output '{comment(out.name)}' is not computed from the input")
        outputs.append((out.name, r.producer[value]))
    return r, shapes, outputs


def _shapes(r: _Reader, shapes: dict, place: Place) -> None:
    """The shapes of the layers the last node added, their settings checked (checks.py)."""
    for lid in r.fresh:
        layer = r.layers[lid]
        shapes[lid] = checks.layer_shape(layer.op, layer.attrs, [shapes[i] for i in layer.inputs], place, lid)


def import_onnx(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
    """An ONNX model as (.net text, state dict): the text compiles to a network with the source's
    layers, shapes and parameters, and the state dict holds its weights under netdsl's names."""
    r, shapes, outputs = read_onnx(path)
    opset = max((o.version for o in r.model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    note = f"imported from {comment(os.path.basename(str(path)))} (ONNX, opset {opset}) by netdsl import"
    return write_network(r.layers, shapes, outputs, r.input_shape, network_name(r.model.graph.name, str(path)),
                         note, str(path))
