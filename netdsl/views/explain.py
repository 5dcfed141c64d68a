"""`netdsl explain`: the arithmetic behind anything a person can name, in the lecture's words.

`explain(net, name)` is the one entry point: a layer (`conv1`), a block instance (`inception3a`,
`conv3_x/bottleneck2`), a labelled group or stage (`conv3_x`), a branch (`inception3a/b2`), a side
output (`aux1`), a range of trunk layers (`conv3_1..conv3_3`) or `network`. It returns a `Report`:
the text (print it), HTML in a notebook, `.to(fmt)` for md/csv/latex/html/json, `.as_dict()`.

The facts come from the analysed model (views/model.py); each op's own words from its entry in
the op table (`OpSpec.explain`); the design arguments from views/designs.py.
"""
from __future__ import annotations

import math

from ..compiler import Network
from ..ops import OPS, shape_text
from ..passes.check_limits import BYTES, human_bytes
from .designs import Argument, arguments, shortcut_kind
from .model import DEPTH_RULE, Analysis, Group
from .tables import Column, Document, Report, Table


def explain(net: Network, name: str) -> Report:
    an = Analysis(net)
    kind = an.kind_of(name)
    doc = _layer(an, name) if kind == "layer" else _group(an, an.group(name))
    return Report(doc)


# one layer --------------------------------------------------------------------------------------------


def _product(shape: tuple[int, ...], weight: bool) -> str:
    """Weights the lecture's way: kh*kw*cin*cout for conv, in*out for fc."""
    dims = list(shape)
    if weight and len(dims) == 4:
        dims = [dims[2], dims[3], dims[1], dims[0]]
    elif weight and len(dims) == 2:
        dims = [dims[1], dims[0]]
    return "*".join(map(str, dims))


def _layer(an: Analysis, name: str) -> Document:
    net, g = an.net, an.graph
    layer = an.layers[name]
    data = g.nodes[name]
    op = OPS[layer.op]
    in_shapes = an.in_shapes(name)
    own = op.explain(in_shapes, layer.shape, data["attrs"]) if in_shapes else {}
    where = f" (line {layer.span.line})" if layer.span else ""
    title = f"{name}: {layer.written}{where}"
    lines = [f"  {op.doc}"]
    if layer.block:
        lines.append("  inside " + " > ".join(f"{path} ({kind})" for path, kind in layer.block))
    if in_shapes:
        lines.append("  input  " + ", ".join(f"{src} {shape_text(s)}" for src, s in zip(layer.inputs, in_shapes)))
    if "output" in own:
        lines.append(f"  output {own['output']}")
    else:
        same = in_shapes and tuple(in_shapes[0]) == layer.shape
        lines.append(f"  output {shape_text(layer.shape)}" + (" (the same shape as its input)" if same else ""))

    params = dict(data["params"])
    facts = [("output", shape_text(layer.shape), own.get("output", ""))]
    if params:
        parts = []
        for pname, shape in params.items():
            count = math.prod(shape)
            label = "weights" if pname == "weight" else "biases" if pname == "bias" else pname
            parts.append(f"{label} {count:,}" if len(shape) == 1 else
                         f"{label} {_product(shape, pname == 'weight')} = {count:,}")
        note = f" {own['params']}" if "params" in own else ""
        lines.append("  " + "; ".join(parts) + f"; total {layer.params:,}{note}")
        facts.append(("parameters", layer.params, "; ".join(parts)))
    elif in_shapes:
        lines.append("  parameters 0" + (f" {own['params']}" if "params" in own else ""))
        facts.append(("parameters", 0, own.get("params", "")))
    if "detail" in own:
        lines.append(f"  {own['detail']}")
    buffers = dict(data["buffers"])
    if buffers:
        lines.append("  buffers (not parameters) " + ", ".join(f"{k} {math.prod(v):,}" for k, v in buffers.items()))
    if layer.macs:
        outputs = math.prod(layer.shape)
        arithmetic = f"{outputs:,} outputs x {layer.macs // outputs:,} each = {layer.macs:,}"
        lines.append(f"  multiply-adds {arithmetic}")
        facts.append(("multiply-adds", layer.macs, arithmetic))
    if layer.activations:
        lines.append(f"  activations {'*'.join(map(str, layer.shape))} = {layer.activations:,} values "
                     f"({human_bytes(layer.activations * BYTES)} per image in float32)")
        facts.append(("activations", layer.activations, "*".join(map(str, layer.shape))))
    elif in_shapes:
        lines.append("  activations: none new (in place, a view, or written into by its inputs)")
    rf_line = _rf_line(an, name, in_shapes)
    if rf_line:
        lines.append(rf_line)
    facts.append(("receptive field", layer.rf.text(), rf_line.strip()))
    for w in net.warnings:
        if w.span == layer.span:
            lines.append(f"  note: {w.message}")
    table = Table([Column("fact"), Column("value", "int"), Column("arithmetic")],
                  [[k, v if isinstance(v, int) else None, a if isinstance(v, int) else f"{v}: {a}"]
                   for k, v, a in facts])
    record = {"kind": "layer", "name": name, "op": layer.op, "written": layer.written,
              "line": layer.span.line if layer.span else None, "inputs": list(layer.inputs),
              "input_shapes": [list(s) for s in in_shapes], "shape": list(layer.shape),
              "params": layer.params, "weights": layer.weights, "biases": layer.biases, "macs": layer.macs,
              "activations": layer.activations, "rf": list(layer.rf.size), "depth_to_here": an.depth_to[name],
              "block": [p for p, _ in layer.block], "lines": [title] + [l.strip() for l in lines]}
    return Document(title, lines, record, main=table)


def _rf_line(an: Analysis, name: str, in_shapes) -> str:
    layer, g = an.layers[name], an.graph
    rf = layer.rf
    if not in_shapes:
        return ""
    prev = max((g.nodes[s]["rf"] for s in layer.inputs), key=lambda r: r.size[0] * r.size[1])
    window = OPS[layer.op].window(in_shapes, g.nodes[name]["attrs"])
    if window is None:
        what = "the widest of its inputs" if len(in_shapes) > 1 else "unchanged"
        return f"  receptive field {rf.text()} ({what}; jump {rf.jump[0]})"
    (kh, kw), (sh, sw), _ = window
    if kh == kw and prev.size[0] == prev.size[1] and prev.jump[0] == prev.jump[1] and sh == sw:
        return (f"  receptive field {prev.size[0]} + ({kh} - 1)*{prev.jump[0]} = {rf.size[0]} -> "
                f"{rf.text()}; jump {prev.jump[0]}*{sh} = {rf.jump[0]}; start {rf.start[0]:g}")
    return (f"  receptive field height {prev.size[0]} + ({kh} - 1)*{prev.jump[0]} = {rf.size[0]}, "
            f"width {prev.size[1]} + ({kw} - 1)*{prev.jump[1]} = {rf.size[1]}; jump {rf.jump[0]}x{rf.jump[1]}")


# a group of layers ------------------------------------------------------------------------------------

_WHAT = {"block": "block", "group": "labelled group", "side": "side output", "branch": "branch",
         "range": "range of trunk layers", "network": "network"}

PART_COLUMNS = [Column("part"), Column("layers", max_width=60), Column("output"), Column("params", "int", True),
                Column("MACs", "int", True), Column("activations", "int", True), Column("depth", "int")]


def _group(an: Analysis, group: Group) -> Document:
    net = an.net
    what = _WHAT[group.kind] + (f" ({group.block})" if group.kind == "block" else "")
    title = f"{group.name}: {what}, {len(group.members)} layers"
    out_node = net.outputs[0][1] if group.kind == "network" else (group.exits[-1] if group.exits else group.members[-1])
    out_shape = an.layers[out_node].shape
    lines = []
    if group.entries:
        lines.append("  input  " + ", ".join(f"{e} {shape_text(an.layers[e].shape)}" for e in group.entries))
    lines.append(f"  output {shape_text(out_shape)} ({out_node})")
    parts = an.parts(group)
    join_line = _join_line(an, group, parts)
    if join_line:
        lines.append(f"  {join_line}")
    table = Table(PART_COLUMNS, title="branches" if group.join else "parts")
    for part in parts:
        table.rows.append(["shortcut" if part.kind == "identity" else _short(part.name, group.name),
                           f"identity ({part.entries[0]})" if part.kind == "identity" else
                           an.path_text(part) if part.kind in ("branch", "layer") else part.block,
                           shape_text(an.layers[part.members[-1]].shape) if part.members else
                           shape_text(an.layers[part.entries[0]].shape),
                           part.params, part.macs, part.activations, part.depth])
    total = net.totals(True)
    totals = [
        f"  total params {group.params:,} (weights {group.weights:,} + biases {group.biases:,}) = "
        f"{_share(group.params, total.params)} of the network's {total.params:,}",
        f"  total multiply-adds {group.macs:,} = {_share(group.macs, total.macs)} of the network's {total.macs:,}",
        f"  activations {group.activations:,} values per image ({human_bytes(group.activations * BYTES)} in float32)",
        f"  depth {group.depth} ({DEPTH_RULE.split(': ', 1)[1].split(';')[0].replace('input-to-output ', '')}"
        " through it)" if group.kind != "network" else f"  depth {an.depth} ({DEPTH_RULE.split(': ', 1)[1]})",
    ]
    rf_text = _rf_added(an, group, out_node)
    if rf_text:
        totals.append(rf_text)
    blocks: list = [*lines, table, *totals]
    found = arguments(an, group)
    for arg in found:
        blocks.append(f"  design: {arg.title}")
        if arg.variants:
            blocks.append(_variants_table(arg))
        blocks += [f"    {l}" for l in arg.lines]
    record = {
        "kind": group.kind, "name": group.name, "block": group.block, "members": list(group.members),
        "inputs": [{"node": e, "shape": list(an.layers[e].shape)} for e in group.entries],
        "output": {"node": out_node, "shape": list(out_shape)}, "join": join_line or None,
        "parts": [dict(zip(("name", "layers", "output", "params", "macs", "activations", "depth"), row))
                  for row in table.rows],
        "params": group.params, "weights": group.weights, "biases": group.biases, "macs": group.macs,
        "activations": group.activations, "depth": an.depth if group.kind == "network" else group.depth,
        "params_share": group.params / total.params if total.params else 0.0,
        "macs_share": group.macs / total.macs if total.macs else 0.0,
        "rf_on_input": list(group.rf.size),
        "designs": [{"title": a.title, "lines": list(a.lines),
                     "variants": [{"label": v.label, "shape": list(v.shape), "weights": v.weights, "params": v.params,
                                   "macs": v.macs, "depth": v.depth, "nonlinearities": v.nonlinearities}
                                  for v in a.variants]} for a in found],
    }
    return Document(title, blocks, record, main=table)


def _short(name: str, parent: str) -> str:
    return name[len(parent) + 1:] if name.startswith(parent + "/") else name


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _join_line(an: Analysis, group: Group, parts: list[Group]) -> str:
    """How the join makes the output: the op's own words, and for a sum, what the shortcut is."""
    if group.join is None:
        return ""
    join = an.layers[group.join]
    own = OPS[join.op].explain(an.in_shapes(group.join), join.shape, an.graph.nodes[group.join]["attrs"])
    text = own.get("join", "")
    if len(parts) == 2 and all(s == join.shape for s in an.in_shapes(group.join)):
        shortcut = min(parts, key=lambda p: (p.depth, p.params))
        residual = max(parts, key=lambda p: (p.depth, p.params))
        text = (f"{text.split(':', 1)[0]}: {shape_text(join.shape)} from {_short(residual.name, group.name)} "
                f"+ shortcut ({shortcut_kind(an, shortcut)})")
    return text


def _rf_added(an: Analysis, group: Group, out_node: str) -> str:
    before = [an.layers[e].rf for e in group.entries]
    after = an.layers[out_node].rf
    local = group.rf.text()
    if not before:
        return f"  receptive field {after.text()} on the network's input"
    widest = max(before, key=lambda r: r.size[0] * r.size[1])
    return (f"  receptive field {local} on its own input (adds {group.rf.size[0] - 1} pixels of its input); "
            f"in the network {widest.text()} -> {after.text()}")


def _variants_table(arg: Argument) -> Table:
    table = Table([Column("variant"), Column("output"), Column("weights", "int"), Column("params", "int"),
                   Column("MACs", "int"), Column("depth", "int"), Column("non-linearities", "int")])
    for v in arg.variants:
        table.rows.append([v.label, shape_text(v.shape), v.weights, v.params, v.macs, v.depth, v.nonlinearities])
    return table
