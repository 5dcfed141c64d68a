"""A netdsl network as an ONNX model that onnxruntime (and Netron, TensorRT, onnx2torch) read.

One mapping per op, in the table EXPORTERS keyed by the op table's names (a test walks the op
table: an op without a mapping fails it). Each mapping turns one IR node into ONNX nodes; the
default export keeps one ONNX node per layer as written (fc on a feature map adds its Flatten),
`optimised=True` exports the inference graph (bn folded into the conv, dropout and dead side
outputs gone, activations after their producer). Reads the IR and plain arrays only.

What the file holds: one input `input` [N, C, H, W] (N symbolic unless a batch is given); one
output per network output, named after it (`output`, `aux1`, ...); node names are netdsl's
hierarchical names, initializers are named as in the state dict (`conv1.weight`), every value
has its shape in value_info, each node's doc_string is its .net line, and metadata_props carry
the netdsl version, the network's name and its whole source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..checkpoint import Entry, check_state
from ..compiler import Network, optimise as optimise_net
from ..errors import NetError, split_lines
from ..files import write_atomic
from ..init import initial_state
from ..ir import inputs, schedule
from ..ops import LOWERED, window_geometry  # noqa: F401 (LOWERED: the ops never exported)
from ..passes.fold_bn import folded_conv_params
from ..version import __version__

DEFAULT_OPSET = 17
OPSETS = range(13, 22)  # every one of them checked, shape-inferred and run by onnxruntime in the tests


@dataclass
class _Export:
    """What the mappings write into: nodes, initializers, and the name of each IR node's value."""

    graph: Any  # the IR
    state: Mapping[str, np.ndarray]
    opset: int
    source_lines: list[str]
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # IR node -> ONNX value name

    def doc(self, node: str) -> str:
        span = self.graph.nodes[node].get("span")
        if span is not None and 1 <= span.line <= len(self.source_lines):
            return self.source_lines[span.line - 1].strip()
        return self.graph.nodes[node].get("written", "")

    def emit(self, op_type: str, ins: list[str], out: str, name: str, node: str, **attrs) -> str:
        from onnx import helper
        self.nodes.append(helper.make_node(op_type, ins, [out], name=name, doc_string=self.doc(node), **attrs))
        return out

    def tensor(self, name: str) -> str:
        self.initializers.append((name, self.state[name]))
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append((name, value))
        return name


Mapping_ = Callable[[_Export, str, dict, list[str], str], str]


def _conv(ex, node, d, ins, out):
    a = d["attrs"]
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([ex.graph.nodes[inputs(ex.graph, node)[0]]["shape"]], a)
    eh, ew = a.get("padend", (0, 0))
    args = [ins[0], ex.tensor(f"{node}.weight")] + ([ex.tensor(f"{node}.bias")] if a["bias"] else [])
    return ex.emit("Conv", args, out, node, node, kernel_shape=[kh, kw], strides=[sh, sw],
                   pads=[ph, pw, ph + eh, pw + ew],
                   group=a["groups"], dilations=[1, 1])


def _pool(ex, node, d, ins, out):
    a = d["attrs"]
    if a["kernel"] == "global":
        return ex.emit("GlobalMaxPool" if a["mode"] == "max" else "GlobalAveragePool", ins, out, node, node)
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([ex.graph.nodes[inputs(ex.graph, node)[0]]["shape"]], a)
    eh, ew = a.get("padend", (0, 0))
    common = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph + eh, pw + ew],
                  ceil_mode=int(bool(a["ceil"])))
    if a["mode"] == "max":
        return ex.emit("MaxPool", ins, out, node, node, **common)
    return ex.emit("AveragePool", ins, out, node, node, count_include_pad=int(bool(a["count_pad"])), **common)


def _fc(ex, node, d, ins, out):
    x = ins[0]
    if len(ex.graph.nodes[inputs(ex.graph, node)[0]]["shape"]) != 1:  # fc flattens a feature map first
        x = ex.emit("Flatten", [x], f"{node}/flatten", f"{node}/flatten", node, axis=1)
    args = [x, ex.tensor(f"{node}.weight")] + ([ex.tensor(f"{node}.bias")] if d["attrs"]["bias"] else [])
    return ex.emit("Gemm", args, out, node, node, transB=1)


def _bn(ex, node, d, ins, out):
    a = d["attrs"]
    args = [ins[0]] + [ex.tensor(f"{node}.{p}") for p in ("weight", "bias", "running_mean", "running_var")]
    # ONNX's momentum weighs the running value (PyTorch's and netdsl's weigh the new batch)
    return ex.emit("BatchNormalization", args, out, node, node, epsilon=a["eps"], momentum=1.0 - a["momentum"])


def _dropout(ex, node, d, ins, out):
    ratio = ex.constant(f"{node}.ratio", np.array(d["attrs"]["p"], np.float32))
    return ex.emit("Dropout", [ins[0], ratio], out, node, node)


def _lrn(ex, node, d, ins, out):
    a = d["attrs"]  # the same formula: x / (k + alpha/size * sum of squares)^beta
    return ex.emit("LRN", ins, out, node, node, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])


def _add(ex, node, d, ins, out):
    return ex.emit("Add" if len(ins) == 2 else "Sum", ins, out, node, node)


def _simple(op_type: str, **fixed) -> Mapping_:
    return lambda ex, node, d, ins, out: ex.emit(op_type, ins, out, node, node, **fixed)


@dataclass(frozen=True)
class OnnxActivation:
    """An activation as one ONNX node: its type, attributes, and constant inputs after x (Clip's
    bounds, inputs from opset 11 on), and the first opset where it means what netdsl computes."""

    op_type: str
    attrs: tuple[tuple[str, float], ...] = ()
    constants: tuple[tuple[str, float], ...] = ()
    opset: int = 13

    def emit(self, ex: "_Export", x: str, out: str, name: str, node: str) -> str:
        """The node `name` computing the activation of value x into out; its constants are
        initializers named `name.min` and so on."""
        bounds = [ex.constant(f"{name}.{k}", np.array(v, np.float32)) for k, v in self.constants]
        return ex.emit(self.op_type, [x, *bounds], out, name, node, **dict(self.attrs))


# Each activation the op table lets run as an epilogue (ops.EPILOGUES) as ONNX: its mapping as a
# layer, and a fused one written out again after its producer.
ACTIVATION_TYPES: dict[str, OnnxActivation] = {
    "relu": OnnxActivation("Relu"),
    "tanh": OnnxActivation("Tanh"),
    "sigmoid": OnnxActivation("Sigmoid"),
    "relu6": OnnxActivation("Clip", constants=(("min", 0.0), ("max", 6.0)), opset=11),
    "hsigmoid": OnnxActivation("HardSigmoid", attrs=(("alpha", 1 / 6), ("beta", 0.5)), opset=6),  # max(0, min(1, x/6 + 1/2))
}


def _activation(spec: OnnxActivation) -> Mapping_:
    return lambda ex, node, d, ins, out: spec.emit(ex, ins[0], out, node, node)

# op -> (mapping, the first opset where it is expressible as netdsl means it); the lowered ops
# (ops.LOWERED: shortcut, which passes/lower_shortcuts rewrites) never reach export
EXPORTERS: dict[str, tuple[Mapping_ | None, int]] = {
    "input": (None, 1),  # the graph's input
    "conv": (_conv, 11),
    "pool": (_pool, 11),  # ceil_mode (10), count_include_pad (7), pads
    "fc": (_fc, 13),
    **{op: (_activation(spec), spec.opset) for op, spec in ACTIVATION_TYPES.items()},
    "leaky": (lambda ex, node, d, ins, out: ex.emit("LeakyRelu", ins, out, node, node, alpha=d["attrs"]["slope"]), 6),
    "lrn": (_lrn, 13),
    "bn": (_bn, 9),  # inference semantics unchanged since BatchNormalization-9
    "dropout": (_dropout, 13),  # ratio as an input, identity in inference
    "flatten": (_simple("Flatten", axis=1), 13),
    "concat": (_simple("Concat", axis=1), 13),
    "add": (_add, 13),
    "softmax": (_simple("Softmax", axis=1), 13),  # the probabilities
    "svm": (_simple("Identity"), 1),  # the scores: the hinge loss is training's, not the model's
}
# --- the zoo's ops (issue 26) ----------------------------------------------------------------------


def _silu(ex, node, d, ins, out):  # ONNX has no SiLU before opset 24's Swish: x * Sigmoid(x)
    s = ex.emit("Sigmoid", ins, f"{node}/sigmoid", f"{node}/sigmoid", node)
    return ex.emit("Mul", [ins[0], s], out, node, node)


def _gate(ex, node, d, ins, out):
    x, g = ins
    if len(ex.graph.nodes[inputs(ex.graph, node)[1]]["shape"]) == 1:  # an fc's (N, C): to (N, C, 1, 1)
        axes = ex.constant(f"{node}.axes", np.array([2, 3], np.int64))
        g = ex.emit("Unsqueeze", [g, axes], f"{node}/gate", f"{node}/unsqueeze", node)
    return ex.emit("Mul", [x, g], out, node, node)


def _zeropad(ex, node, d, ins, out):
    a = d["attrs"]
    c = ex.graph.nodes[inputs(ex.graph, node)[0]]["shape"][0]
    big = np.iinfo(np.int64).max
    x = ins[0]
    if tuple(a["stride"]) != (1, 1):
        args = [x, ex.constant(f"{node}.starts", np.array([0, 0], np.int64)),
                ex.constant(f"{node}.ends", np.array([big, big], np.int64)),
                ex.constant(f"{node}.axes", np.array([2, 3], np.int64)),
                ex.constant(f"{node}.steps", np.array(a["stride"], np.int64))]
        x = ex.emit("Slice", args, f"{node}/sampled", f"{node}/sample", node)
    pads = ex.constant(f"{node}.pads", np.array([0, 0, 0, 0, 0, a["out"] - c, 0, 0], np.int64))
    return ex.emit("Pad", [x, pads], out, node, node, mode="constant")


def _split(ex, node, d, ins, out):
    a = d["attrs"]
    size = ex.graph.nodes[inputs(ex.graph, node)[0]]["shape"][0] // a["parts"]
    k = a["take"] - 1
    args = [ins[0], ex.constant(f"{node}.starts", np.array([k * size], np.int64)),
            ex.constant(f"{node}.ends", np.array([(k + 1) * size], np.int64)),
            ex.constant(f"{node}.axes", np.array([1], np.int64))]
    return ex.emit("Slice", args, out, node, node)


def _shuffle(ex, node, d, ins, out):
    g = d["attrs"]["groups"]
    c, h, w = ex.graph.nodes[node]["shape"]
    grid = ex.constant(f"{node}.grid", np.array([0, g, c // g, h, w], np.int64))  # 0: the batch, kept
    flat = ex.constant(f"{node}.flat", np.array([0, c, h, w], np.int64))
    x = ex.emit("Reshape", [ins[0], grid], f"{node}/grid", f"{node}/grid", node)
    x = ex.emit("Transpose", [x], f"{node}/transposed", f"{node}/transpose", node, perm=[0, 2, 1, 3, 4])
    return ex.emit("Reshape", [x, flat], out, node, node)


EXPORTERS.update({
    "hswish": (_simple("HardSwish"), 14),
    "silu": (_silu, 13),
    "gate": (_gate, 13),  # Unsqueeze's axes as an input
    "zeropad": (_zeropad, 13),  # Slice with steps, Pad with pads as an input
    "split": (_split, 13),
    "shuffle": (_shuffle, 13),
})


def fold_state(folded: Network, original: Network, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state of the inference graph from the state of the network as written: a conv that
    absorbed a batch norm gets its folded weights (passes/fold_bn.py)."""
    out: dict[str, np.ndarray] = {}
    g = folded.graph
    for node in schedule(g):
        d = g.nodes[node]
        bn = d.get("folded_bn")
        for pname, _ in d["params"]:
            out[f"{node}.{pname}"] = state[f"{node}.{pname}"] if not bn else None
        for bname, _ in d["buffers"]:
            out[f"{node}.{bname}"] = state[f"{node}.{bname}"]
        if bn:
            w, b = folded_conv_params(np, state[f"{node}.weight"], state.get(f"{node}.bias"), state[f"{bn}.weight"],
                                      state[f"{bn}.bias"], state[f"{bn}.running_mean"], state[f"{bn}.running_var"],
                                      original.graph.nodes[bn]["attrs"]["eps"])
            out[f"{node}.weight"], out[f"{node}.bias"] = w.astype(np.float32), b.astype(np.float32)
    return out


def needed_state(net: Network) -> dict[str, tuple[int, ...]]:
    """The state dict's names and shapes the network needs (parameters and buffers)."""
    g = net.graph
    return {f"{n}.{p}": tuple(shape) for n in schedule(g) for kind in ("params", "buffers")
            for p, shape in g.nodes[n][kind]}


def export_onnx(net: Network, path: str | os.PathLike | None, state: Mapping[str, np.ndarray] | None = None, *,
                opset: int = DEFAULT_OPSET, batch: int | str = "dynamic", side_outputs: bool = True,
                optimised: bool = False, seed: int = 0):
    """The network as an onnx.ModelProto, written atomically to `path` (None: not written).
    `state`: a state dict of numpy arrays (Model.state_dict() on the host, or a checkpoint's
    tensors); None exports netdsl's seeded initialisation (`seed`). A state of another network is
    refused by the name of the first tensor that does not fit."""
    import onnx
    from onnx import TensorProto, helper

    if opset not in OPSETS:
        raise NetError(f"opset {opset} is not supported: netdsl exports opsets {OPSETS.start} to {OPSETS.stop - 1}",
                       hint=f"the default, {DEFAULT_OPSET}, is read by onnxruntime, TensorRT and onnx2torch")
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise NetError(f"batch {batch!r}: a whole number, 1 or more, or 'dynamic'")
    seeded = state is None
    if seeded:
        state = initial_state(net.graph, seed)
    else:
        check_state(needed_state(net), {k: Entry(tuple(np.shape(v)), np.asarray(v).dtype.name) for k, v in state.items()},
                    "the weights")
    target = net
    if optimised:
        target = optimise_net(net, "inference")
        state = fold_state(target, net, state)
    g = target.graph if side_outputs else trunk_only(target.graph)
    ex = _Export(g, state, opset, split_lines(net.source))
    outputs = list(g.graph["outputs"] if side_outputs else g.graph["outputs"][:1])
    out_names = {node: name for name, node in outputs}
    taken = set(out_names.values()) | {"input"}
    for node in schedule(g):
        d = g.nodes[node]
        if node in out_names:
            ex.values[node] = out_names[node]
        elif node == "input" and d["op"] == "input":
            ex.values[node] = "input"
        else:
            ex.values[node] = node if node not in taken else f"{node}:value"
    for node in schedule(g):
        d = g.nodes[node]
        op = d["op"]
        if op not in EXPORTERS:
            raise NetError(f"'{node}' ({op}) has no ONNX mapping", d.get("span"))
        mapping, first = EXPORTERS[op]
        epilogue = d.get("epilogue")
        if epilogue:  # the fused activation's node follows it: the later of the two opsets
            first = max(first, ACTIVATION_TYPES[epilogue].opset)
        if opset < first:
            raise NetError(f"'{node}' ({op}) needs opset {first} or later to export as netdsl computes it, "
                           f"not {opset}", d.get("span"), f"use --opset {max(first, OPSETS.start)} or later")
        if mapping is None:
            continue
        ins = [ex.values[s] for s in inputs(g, node)]
        out = ex.values[node]
        mapping(ex, node, d, ins, f"{node}/pre" if epilogue else out)
        if epilogue:
            ACTIVATION_TYPES[epilogue].emit(ex, f"{node}/pre", out, f"{node}/{epilogue}", node)

    n_dim: Any = "N" if batch == "dynamic" else batch

    def info(value: str, shape) -> Any:
        return helper.make_tensor_value_info(value, TensorProto.FLOAT, [n_dim, *shape])

    graph_inputs = [info("input", net.input_shape)]
    graph_outputs = [info(name, g.nodes[node]["shape"]) for name, node in outputs]
    value_info = [info(ex.values[n], g.nodes[n]["shape"]) for n in schedule(g)
                  if n not in out_names and g.nodes[n]["op"] != "input"]
    value_info += [info(f"{n}/flatten", (int(np.prod(g.nodes[inputs(g, n)[0]]["shape"])),)) for n in schedule(g)
                   if g.nodes[n]["op"] == "fc" and len(g.nodes[inputs(g, n)[0]]["shape"]) != 1]
    value_info += [info(f"{n}/pre", g.nodes[n]["shape"]) for n in schedule(g) if g.nodes[n].get("epilogue")]
    graph = helper.make_graph(ex.nodes, net.name, graph_inputs, graph_outputs,
                              value_info=value_info, doc_string=f"{net.name}, written in netdsl")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="netdsl", producer_version=__version__,
                              doc_string=f"netdsl network {net.name}" + (" (optimised for inference)" if optimised else ""))
    model.ir_version = min(model.ir_version, _IR_FOR_OPSET.get(opset, model.ir_version))
    for name, value in ex.initializers:  # written into the model in place: a VGG's 550 MB copied once
        whole = np.asarray(value).dtype.kind in "iu"  # index constants (Slice, Pad, Reshape) stay int64
        array = np.asarray(value, dtype=np.int64 if whole else np.float32)  # (not ascontiguousarray: it makes a scalar 1-D)
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = TensorProto.INT64 if whole else TensorProto.FLOAT
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.tobytes()
    helper.set_model_props(model, {"netdsl_version": __version__, "network": net.name, "source": net.source,
                                   "file": net.file, "weights": f"seeded initialisation, seed {seed}" if seeded else "given"})
    if path is not None:
        write_atomic(path, model.SerializeToString())
    return model


def trunk_only(g):
    """The IR without what only side outputs use (--no-side-outputs): the main output's
    ancestors, in the same order (a topological one), so the file holds no side head's nodes or
    weights. Built node by node: a networkx subgraph view may iterate in set order."""
    import networkx as nx
    main = g.graph["outputs"][0][1]
    live = nx.ancestors(g, main) | {main}
    trunk = nx.DiGraph()
    trunk.graph.update(g.graph, outputs=g.graph["outputs"][:1])
    trunk.add_nodes_from((n, g.nodes[n]) for n in schedule(g) if n in live)
    trunk.add_edges_from((u, v, d) for u, v, d in g.edges(data=True) if u in live and v in live)
    return trunk


# The IR version each opset first shipped with (onnx's VERSION_TABLE): a model stamped no newer
# than its opset needs, so older runtimes that read the opset read the file.
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
