"""The per-layer summary: as a text table for people, and as JSON with stable keys for tools."""
from __future__ import annotations

from typing import Any

from ..compiler import LayerInfo, Network
from ..ops import shape_text
from ..passes.check_limits import BYTES, human_bytes
from ..passes.memory import training_parameter_values
from .model import DEPTH_RULE, Analysis
from .tables import Column, Document, Report, Table, render

CONVENTIONS = (
    "MACs: one multiply-add = 1, conv and fc only (torchvision's convention); FLOPs = 2 x MACs.",
    "Params: weights and biases counted apart and summed; batch-norm running statistics are not parameters.",
    "Activations: values stored per image by the forward pass, input included; ReLU and other activations, "
    "dropout, flatten, concat and the head write in place (the cs231n VGG16 table's convention); "
    "x4 bytes in float32. Training keeps them and adds one gradient each.",
    "RF: receptive field in input pixels (height x width).",
)


def rf_json(layer: LayerInfo) -> dict:
    return {"size": list(layer.rf.size), "jump": list(layer.rf.jump), "start": list(layer.rf.start)}


def summary_dict(net: Network, an: Analysis | None = None) -> dict[str, Any]:
    """The `netdsl summary --json` object. Keys are a public interface: add, never rename."""
    an = an or Analysis(net)
    t_all, t_trunk = net.totals(True), net.totals(False)
    shapes = {l.name: l.shape for l in net.layers}
    return {
        "network": net.name,
        "file": net.file,
        "input": list(net.input_shape),
        "layers": [{
            "name": l.name, "op": l.op, "written": l.written, "shape": list(l.shape),
            "params": l.params, "weights": l.weights, "biases": l.biases, "macs": l.macs,
            "activations": l.activations, "rf": rf_json(l), "inputs": list(l.inputs),
            "block": [path for path, _ in l.block],
            "line": l.span.line if l.span else None,
        } for l in net.layers],
        "outputs": [{"name": name, "node": node, "shape": list(shapes[node])} for name, node in net.outputs],
        "totals": {
            "params": t_all.params, "weights": t_all.weights, "biases": t_all.biases, "macs": t_all.macs,
            "flops": t_all.flops, "activations": t_all.activations,
            "activation_bytes": t_all.activations * BYTES,
            "training_activations": t_all.training_activations,
            "training_bytes": (t_all.training_activations + training_parameter_values(t_all.params)) * BYTES,
            "params_without_side_outputs": t_trunk.params, "macs_without_side_outputs": t_trunk.macs,
        },
        "conventions": list(CONVENTIONS),
        "depth": an.depth, "depth_rule": DEPTH_RULE,
        "blocks": [{"name": g.name, "block": g.block, "kind": g.kind, "level": level, "layers": list(g.members),
                    "params": g.params, "weights": g.weights, "biases": g.biases, "macs": g.macs,
                    "activations": g.activations, "depth": g.depth, "rf": list(g.rf.size)}
                   for level, g in an.blocks() if g.kind != "layer"],
        **({"planned_peak": net.graph.graph["planned_peak"]} if "planned_peak" in net.graph.graph else {}),
        "warnings": [{"message": w.message, "line": w.span.line if w.span else None,
                      "column": w.span.column if w.span else None, "hint": w.hint} for w in net.warnings],
    }


LAYER_COLUMNS = [Column("layer"), Column("as written", max_width=34), Column("output"), Column("params", "int", True),
                 Column("MACs", "int", True), Column("activations", "int", True), Column("RF")]
BLOCK_COLUMNS = [Column("block or layer"), Column("kind"), Column("level", "int"), Column("layers", "int"),
                 Column("output"), Column("params", "int", True), Column("MACs", "int", True),
                 Column("activations", "int", True), Column("depth", "int"), Column("RF on its input")]


def summary_document(net: Network, blocks: bool = False) -> Document:
    """The summary as one document: the per-layer table (or, with blocks, one row per block
    instance, nested instances indented), the totals, depth and conventions."""
    an = Analysis(net)
    if blocks:
        table = Table(BLOCK_COLUMNS)
        for level, g in an.blocks():
            out = an.layers[g.exits[-1] if g.exits else g.members[-1]]
            table.rows.append(["  " * level + g.name, g.block, level, len(g.members), shape_text(out.shape),
                               g.params, g.macs, g.activations, g.depth, g.rf.text()])
    else:
        table = Table(LAYER_COLUMNS, [[l.name, l.written, shape_text(l.shape), l.params, l.macs, l.activations,
                                       l.rf.text()] for l in net.layers])
    t, trunk = net.totals(True), net.totals(False)
    out = [f"total params      {t.params:>16,}   (weights {t.weights:,} + biases {t.biases:,})"]
    if trunk.params != t.params:
        out.append(f"  without side outputs {trunk.params:>11,}   ({', '.join(n for n, _ in net.outputs[1:])} excluded)")
    out.append(f"total MACs        {t.macs:>16,}   ({t.flops / 1e9:.2f} GFLOPs per image)")
    if trunk.macs != t.macs:
        out.append(f"  without side outputs {trunk.macs:>11,}")
    out.append(f"activations       {t.activations:>16,}   values per image, {human_bytes(t.activations * BYTES)} forward; "
               f"{human_bytes(t.training_activations * BYTES)} training (+ gradients)")
    training = human_bytes(training_parameter_values(t.params) * BYTES)
    out.append(f"parameter memory  {human_bytes(t.params * BYTES):>16}   ({training} training: "
               "weights, gradients, momentum)")
    out.append(f"depth             {an.depth:>16}   weighted layers (conv, fc) on the longest input-to-output path")
    shapes = {l.name: l.shape for l in net.layers}
    outs = ", ".join(f"{name} = {node} ({shape_text(shapes[node])})" for name, node in net.outputs)
    out.append(f"outputs           {outs}")
    if "planned_peak" in net.graph.graph:
        peak = net.graph.graph["planned_peak"]
        out.append(f"planned peak      {peak:>16,}   values per image ({human_bytes(peak * BYTES)}) in "
                   f"{len(net.graph.graph['buffers'])} shared buffers, inference")
    out.append("")
    conventions = CONVENTIONS + (DEPTH_RULE[0].upper() + DEPTH_RULE[1:] + ".",)
    out += ["conventions: " + conventions[0]] + ["             " + c for c in conventions[1:]]
    data = summary_dict(net, an)
    return Document(f"network {net.name}: input {shape_text(net.input_shape)}", [table, *out], data, main=table)


def summary(net: Network, blocks: bool = False) -> Report:
    """`net.summary()`: the summary table as text (print it), HTML in a notebook, `.to(fmt)` for the
    other formats and `.as_dict()` for the `summary --json` object."""
    return Report(summary_document(net, blocks))


def summary_table(net: Network) -> str:
    return render(summary_document(net), "text")
