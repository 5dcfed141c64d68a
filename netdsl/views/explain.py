"""`netdsl explain`: the arithmetic behind one layer, in the lecture's words."""
from __future__ import annotations

import math

from ..compiler import Network
from ..ops import OPS, shape_text, window_geometry
from ..passes.check_limits import BYTES, human_bytes


def _size_line(n: int, k: int, s: int, p: int, out: int, ceil: bool = False, e: int = 0) -> str:
    pad = (f" + 2*{p}" if p else "") + (f" + {e}" if e else "")  # padend: e more after the input
    exact = (n + 2 * p + e - k) / s + 1
    if not ceil:
        tail = f" = {out}" if exact == out else f" = {exact:g}, floored to {out}"
        return f"({n}{pad} - {k})/{s} + 1{tail}"
    up = math.ceil(exact)
    if up == out:
        return f"({n}{pad} - {k})/{s} + 1" + (f" = {out}" if exact == out else f" = {exact:g}, ceiled to {out}")
    return (f"({n}{pad} - {k})/{s} + 1 = {exact:g}, ceiled to {up}; window {up} would start at "
            f"{(up - 1) * s - p} in the right padding (input ends at {n - 1}), so it is dropped: {out}")


def _product(shape: tuple[int, ...], weight: bool) -> str:
    """Weights the lecture's way: kh*kw*cin*cout for conv, in*out for fc."""
    dims = list(shape)
    if weight and len(dims) == 4:
        dims = [dims[2], dims[3], dims[1], dims[0]]
    elif weight and len(dims) == 2:
        dims = [dims[1], dims[0]]
    return "*".join(map(str, dims))


def explain(net: Network, name: str) -> str:
    layer = net.layer(name)
    g = net.graph
    data = g.nodes[name]
    op = OPS[layer.op]
    in_shapes = [g.nodes[s]["shape"] for s in layer.inputs]
    where = f" (line {layer.span.line})" if layer.span else ""
    lines = [f"{name}: {layer.written}{where}", f"  {op.doc}"]
    if layer.block:
        lines.append("  inside " + " > ".join(f"{path} ({kind})" for path, kind in layer.block))
    if in_shapes:
        lines.append("  input  " + ", ".join(f"{src} {shape_text(s)}" for src, s in zip(layer.inputs, in_shapes)))

    # output shape
    window = op.window(in_shapes, data["attrs"]) if in_shapes else None
    if window is not None and "kernel" in data["attrs"] and len(in_shapes[0]) == 3:
        (kh, kw), (sh, sw), (ph, pw) = window_geometry(in_shapes, data["attrs"])
        _, h, w = in_shapes[0]
        ceil = bool(data["attrs"].get("ceil"))
        eh, ew = data["attrs"].get("padend", (0, 0))
        hs = _size_line(h, kh, sh, ph, layer.shape[1], ceil, eh)
        ws = _size_line(w, kw, sw, pw, layer.shape[2], ceil, ew)
        size = f"output {hs}" if hs == ws else f"output height {hs}; width {ws}"
        lines.append(f"  {size} -> {shape_text(layer.shape)}")
    elif layer.op == "concat":
        lines.append(f"  output channels {' + '.join(str(s[0]) for s in in_shapes)} = {layer.shape[0]}"
                     f" -> {shape_text(layer.shape)}")
    elif layer.op == "fc" and in_shapes and len(in_shapes[0]) == 3:
        lines.append(f"  output {layer.shape[0]} units; the {shape_text(in_shapes[0])} input is flattened to "
                     f"{math.prod(in_shapes[0]):,} values")
    else:
        lines.append(f"  output {shape_text(layer.shape)}" + ("" if layer.op == "input" else
                                                             " (the same shape as its input)" if in_shapes and
                                                             tuple(in_shapes[0]) == layer.shape else ""))

    # parameters
    params = dict(data["params"])
    if params:
        parts = []
        for pname, shape in params.items():
            count = math.prod(shape)
            label = "weights" if pname == "weight" else "biases" if pname == "bias" else pname
            if len(shape) == 1:
                parts.append(f"{label} {count:,}")
            else:
                parts.append(f"{label} {_product(shape, pname == 'weight')} = {count:,}")
        groups = data["attrs"].get("groups", 1)
        note = f" (groups {groups}: each filter sees {in_shapes[0][0] // groups} of {in_shapes[0][0]} channels)" \
            if groups != 1 else ""
        lines.append("  " + "; ".join(parts) + f"; total {layer.params:,}{note}")
    elif layer.op not in ("input",):
        lines.append("  parameters 0" + (" (pooling applies a fixed rule: nothing is learnt)" if layer.op == "pool" else ""))
    if layer.op == "pool" and data["attrs"]["mode"] == "avg" and window is not None:
        (kh, kw), _, (ph, pw) = window
        if data["attrs"]["count_pad"]:
            lines.append(f"  average: each window's sum divided by its {kh}*{kw} = {kh * kw} positions, padding counted"
                         + (" (a ceil window past the padding divides by what it covers of input and padding)"
                            if data["attrs"].get("ceil") else ""))
        else:
            lines.append("  average: each window's sum divided by the input values it covers (exclude_pad: "
                         "padding not counted)")
    buffers = dict(data["buffers"])
    if buffers:
        lines.append("  buffers (not parameters) " + ", ".join(f"{k} {math.prod(v):,}" for k, v in buffers.items()))

    # work
    if layer.macs:
        outputs = math.prod(layer.shape)
        lines.append(f"  multiply-adds {outputs:,} outputs x {layer.macs // outputs:,} each = {layer.macs:,}")
    # memory
    if layer.activations:
        lines.append(f"  activations {'*'.join(map(str, layer.shape))} = {layer.activations:,} values "
                     f"({human_bytes(layer.activations * BYTES)} per image in float32)")
    elif layer.op != "input":
        lines.append("  activations: none new (in place, a view, or written into by its inputs)")

    # receptive field
    rf = layer.rf
    if in_shapes:
        prev = max((g.nodes[s]["rf"] for s in layer.inputs), key=lambda r: r.size[0] * r.size[1])
        if window is not None:
            (kh, kw), (sh, sw), _ = window
            if kh == kw and prev.size[0] == prev.size[1] and prev.jump[0] == prev.jump[1] and sh == sw:
                lines.append(f"  receptive field {prev.size[0]} + ({kh} - 1)*{prev.jump[0]} = {rf.size[0]} -> "
                             f"{rf.text()}; jump {prev.jump[0]}*{sh} = {rf.jump[0]}; start {rf.start[0]:g}")
            else:
                lines.append(f"  receptive field height {prev.size[0]} + ({kh} - 1)*{prev.jump[0]} = {rf.size[0]}, "
                             f"width {prev.size[1]} + ({kw} - 1)*{prev.jump[1]} = {rf.size[1]}; "
                             f"jump {rf.jump[0]}x{rf.jump[1]}")
        else:
            what = "the widest of its inputs" if len(in_shapes) > 1 else "unchanged"
            lines.append(f"  receptive field {rf.text()} ({what}; jump {rf.jump[0]})")
    for w in net.warnings:
        if w.span == layer.span:
            lines.append(f"  note: {w.message}")
    return "\n".join(lines)
