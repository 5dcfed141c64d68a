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
from ..ops import OPS
from .structure import NAME, Layer as _Layer, stem_name, write_network

class _Reader:
    def __init__(self, model, path: str):
        from onnx import numpy_helper
        self.path = path
        self.model = model
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.alias: dict[str, str] = {}  # folded value -> the value it stands for
        self.layers: dict[str, _Layer] = {}
        self.producer: dict[str, str] = {}  # ONNX value -> layer id
        self.pending_flatten: dict[str, str] = {}  # Flatten output -> its input value (a Gemm may absorb it)
        real = [i for i in g.input if i.name not in self.consts]
        if len(real) != 1:
            raise NetError(f"{path}: netdsl networks have one input; this model has {len(real)} "
                           f"({', '.join(i.name for i in real) or 'none'})")
        self.input_name = real[0].name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in real[0].type.tensor_type.shape.dim]
        if len(dims) not in (2, 4) or any(d is None or d <= 0 for d in dims[1:]):
            raise NetError(f"{path}: input '{real[0].name}' has shape {dims}: netdsl reads N x C x H x W or "
                           "N x features, with every size but N known")
        self.input_shape = tuple(dims[1:])
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
        if name not in self.producer:
            raise NetError(f"{self.path}: node '{node.name}' ({node.op_type}) reads '{name}', which is neither the "
                           "input nor a layer's output (a computed constant netdsl cannot follow)")
        return self.producer[name]

    def const(self, name: str, node, what: str) -> np.ndarray:
        name = self.value(name)
        if name not in self.consts:
            raise NetError(f"{self.path}: node '{node.name}' ({node.op_type}): its {what} '{name}' is not a constant")
        return self.consts[name]

    def add(self, node_name: str, op: str, attrs: dict, inputs: list[str], out: str,
            tensors: dict | None = None) -> None:
        lid = node_name or out
        while lid in self.layers:
            lid += "_"
        self.layers[lid] = _Layer(lid, op, attrs, inputs, node_name, tensors or {})
        self.producer[out] = lid


def _attrs(node) -> dict[str, Any]:
    """A node's attributes; floats (stored as float32) as the shortest decimal that float32 reads
    back, so that 1e-5 comes back as 1e-5, not 9.99999975e-06."""
    from onnx import helper
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = float(str(np.float32(value))) if isinstance(value, float) else value
    return out


def _refuse(r: _Reader, node, what: str, supported: str) -> NetError:
    return NetError(f"{r.path}: node '{node.name}' ({node.op_type}) {what}", hint=f"netdsl supports {supported}")


def _window(r: _Reader, node, a: dict, kernel: tuple[int, int], spatial: tuple[int, int]):
    """strides, pads and padends from an ONNX conv/pool node, auto_pad turned into explicit pads:
    netdsl pads both sides alike and may add more after (padend), never more before."""
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _refuse(r, node, f"has dilations {a['dilations']}", "dilation 1 only")
    strides = tuple(a.get("strides", [1, 1]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, k, s in zip(spatial, kernel, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2))
        begin, end = tuple(p[0] for p in pads), tuple(p[1] for p in pads)
    elif auto == "VALID":
        begin = end = (0, 0)
    else:
        p = list(a.get("pads", [0, 0, 0, 0]))
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
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    strides, pad, padend = _window(r, node, a, kernel, shapes[x][1:])
    attrs = {"out": int(w.shape[0]), "kernel": kernel, "stride": strides, "pad": pad, "padend": padend,
             "groups": int(a.get("group", 1)),
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
        kernel = tuple(a["kernel_shape"])
        if len(kernel) != 2:
            raise _refuse(r, node, f"is {len(kernel)}-D", "2-D pooling")
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
    if p is None:
        p = float(r.const(node.input[1], node, "ratio")) if len(node.input) > 1 and node.input[1] else 0.5
    r.add(node.name, "dropout", {"p": float(p)}, [r.layer_of(node.input[0], node)], node.output[0])


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
    target = [int(v) for v in r.const(node.input[1], node, "shape")]
    if r.value(node.input[0]) in r.consts:  # a constant reshaped (a weight, in old exporters): fold it
        value = r.consts[r.value(node.input[0])]
        r.consts[node.output[0]] = value.reshape([value.shape[i] if d == 0 else d for i, d in enumerate(target)])
        return
    x = r.layer_of(node.input[0], node)
    n = int(np.prod(shapes[x]))
    if len(target) == 2 and target[0] in (0, -1, 1) and target[1] in (-1, n):
        r.pending_flatten[node.output[0]] = r.value(node.input[0])
        return
    raise _refuse(r, node, f"reshapes to {target}", "Reshape to N x features (a flatten)")


def _simple(op: str, attrs: Callable[[dict], dict] = lambda a: {}):
    def read(r, node, a, shapes):
        r.add(node.name, op, attrs(a), [r.layer_of(node.input[0], node)], node.output[0])
    return read


def _fold(r, node, a, shapes):
    r.alias[node.output[0]] = node.input[0]


def _constant_of_shape(r, node, a, shapes):
    from onnx import numpy_helper
    shape = [int(v) for v in r.const(node.input[0], node, "shape")]
    value = numpy_helper.to_array(a["value"]).reshape(-1)[0] if "value" in a else np.float32(0)
    r.consts[node.output[0]] = np.full(shape, value)


def _constant(r, node, a, shapes):
    from onnx import numpy_helper
    if "value" not in a:
        raise _refuse(r, node, "holds a constant netdsl cannot read", "tensor constants")
    r.consts[node.output[0]] = numpy_helper.to_array(a["value"])


def _concat(r: _Reader, node, a, shapes):
    """Concat of channels, its inputs in order."""
    x = [r.layer_of(v, node) for v in node.input]
    axis = a.get("axis", 1)
    if axis != 1:
        raise _refuse(r, node, f"concatenates along axis {axis}", "concatenation of channels (axis 1)")
    r.add(node.name, "concat", {}, x, node.output[0])


IMPORTERS: dict[str, Callable] = {
    "Conv": _conv,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalMaxPool": _global("max"), "GlobalAveragePool": _global("avg"),
    "Gemm": _gemm, "MatMul": _matmul,
    "Relu": _simple("relu"), "Tanh": _simple("tanh"), "Sigmoid": _simple("sigmoid"),
    "LeakyRelu": _simple("leaky", lambda a: {"slope": float(a.get("alpha", 0.01))}),
    "LRN": _simple("lrn", lambda a: {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
                                     "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}),
    "BatchNormalization": _bn,
    "Dropout": _dropout,
    "Flatten": _flatten, "Reshape": _reshape,
    "Concat": _concat,
    "Add": _add, "Sum": lambda r, node, a, shapes: r.add(node.name, "add", {}, [r.layer_of(v, node) for v in node.input],
                                                        node.output[0]),
    "Softmax": _axis_one("softmax"),
    "Identity": _fold, "Constant": _constant, "ConstantOfShape": _constant_of_shape,
}




def read_onnx(path: str | os.PathLike):
    """The model at `path`, read into layers (the first stage); NetErrors for anything else."""
    import onnx

    from ..ops import ShapeContext
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise NetError(f"no such file: {path}") from None
    except Exception as exc:  # protobuf's DecodeError and friends: a damaged or foreign file
        raise NetError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise NetError(f"{path} is not a readable ONNX model (no graph nodes)")
    r = _Reader(model, str(path))
    shapes = {"input": r.input_shape}
    for node in model.graph.node:
        read = IMPORTERS.get(node.op_type)
        if read is None:
            raise NetError(f"{path}: node '{node.name}' has op {node.op_type}, which netdsl has no layer for",
                           hint="netdsl reads " + ", ".join(sorted(IMPORTERS)))
        before = set(r.layers)
        read(r, node, _attrs(node), shapes)
        for lid in [l for l in r.layers if l not in before]:
            layer = r.layers[lid]
            spec = OPS[layer.op]
            ctx = ShapeContext(None, lid)
            try:
                shapes[lid] = spec.shape([shapes[i] for i in layer.inputs], layer.attrs, ctx)
            except NetError as err:
                raise NetError(f"{path}: node '{layer.source}' ({node.op_type}): {err.message}", hint=err.hint) from None
    outputs = []
    for out in model.graph.output:
        value = r.value(out.name)
        if value in r.pending_flatten:
            r.layer_of(value, model.graph.node[-1])
        if value not in r.producer:
            raise NetError(f"{path}: output '{out.name}' is not computed from the input")
        outputs.append((out.name, r.producer[value]))
    return r, shapes, outputs


def import_onnx(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
    """An ONNX model as (.net text, state dict): the text compiles to a network with the source's
    layers, shapes and parameters, and the state dict holds its weights under netdsl's names."""
    r, shapes, outputs = read_onnx(path)
    name = r.model.graph.name if NAME.match(r.model.graph.name or "") else stem_name(str(path))
    opset = max((o.version for o in r.model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    comment = f"imported from {os.path.basename(str(path))} (ONNX, opset {opset}) by netdsl import"
    return write_network(r.layers, shapes, outputs, r.input_shape, name, comment, str(path))
