"""The per-layer summary: as a text table for people, and as JSON with stable keys for tools."""
from __future__ import annotations

from typing import Any

from ..compiler import LayerInfo, Network
from ..ops import shape_text
from ..passes.check_limits import BYTES, human_bytes

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


def summary_dict(net: Network) -> dict[str, Any]:
    """The `netdsl summary --json` object. Keys are a public interface: add, never rename."""
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
            "training_bytes": t_all.training_activations * BYTES + 3 * t_all.params * BYTES,
            "params_without_side_outputs": t_trunk.params, "macs_without_side_outputs": t_trunk.macs,
        },
        "conventions": list(CONVENTIONS),
        **({"planned_peak": net.graph.graph["planned_peak"]} if "planned_peak" in net.graph.graph else {}),
        "warnings": [{"message": w.message, "line": w.span.line if w.span else None,
                      "column": w.span.column if w.span else None, "hint": w.hint} for w in net.warnings],
    }


def _n(v: int) -> str:
    return f"{v:,}" if v else "-"


def summary_table(net: Network) -> str:
    rows = [("layer", "as written", "output", "params", "MACs", "activations", "RF")]
    for l in net.layers:
        rows.append((l.name, l.written, shape_text(l.shape), _n(l.params), _n(l.macs), _n(l.activations),
                     l.rf.text()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[1] = min(widths[1], 34)
    right = {3, 4, 5}

    def fmt(row):
        cells = []
        for i, cell in enumerate(row):
            cell = cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "…"
            cells.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(rows[0]))
    t, trunk = net.totals(True), net.totals(False)
    out = [f"network {net.name}: input {shape_text(net.input_shape)}", rule, fmt(rows[0]), rule]
    out += [fmt(r) for r in rows[1:]]
    out.append(rule)
    out.append(f"total params      {t.params:>16,}   (weights {t.weights:,} + biases {t.biases:,})")
    if trunk.params != t.params:
        out.append(f"  without side outputs {trunk.params:>11,}   ({', '.join(n for n, _ in net.outputs[1:])} excluded)")
    out.append(f"total MACs        {t.macs:>16,}   ({t.flops / 1e9:.2f} GFLOPs per image)")
    if trunk.macs != t.macs:
        out.append(f"  without side outputs {trunk.macs:>11,}")
    out.append(f"activations       {t.activations:>16,}   values per image, {human_bytes(t.activations * BYTES)} forward; "
               f"{human_bytes(t.training_activations * BYTES)} training (+ gradients)")
    out.append(f"parameter memory  {human_bytes(t.params * BYTES):>16}   ({human_bytes(3 * t.params * BYTES)} training: "
               "weights, gradients, momentum)")
    outs = ", ".join(f"{name} = {node} ({shape_text(dict((l.name, l.shape) for l in net.layers)[node])})"
                     for name, node in net.outputs)
    out.append(f"outputs           {outs}")
    if "planned_peak" in net.graph.graph:
        peak = net.graph.graph["planned_peak"]
        out.append(f"planned peak      {peak:>16,}   values per image ({human_bytes(peak * BYTES)}) in "
                   f"{len(net.graph.graph['buffers'])} shared buffers, inference")
    out.append("")
    out += ["conventions: " + CONVENTIONS[0]] + ["             " + c for c in CONVENTIONS[1:]]
    return "\n".join(out)
