"""Residual shortcuts become what they are: nothing (identity), a 1x1 projection, or (written
`shortcut zeropad`, the ResNet paper's option A) a `zeropad`: subsampled, zero channels added.

`shortcut` in `add { {..} shortcut }` matches the other branch's shape. Same shape: the
shortcut node disappears and its consumer reads the trunk directly. Different shape: a
`conv C 1x1 /s` (+ `bn` when the other branch uses batch norm, as torchvision's downsample does)
takes its place. Runs after shape inference, since the choice depends on shapes.
"""
from __future__ import annotations

import networkx as nx

from ..ir import inputs, schedule
from ..ops import OPS, freeze, shortcut_stride
from .infer_shapes import annotate_shapes


def lower_shortcuts(graph: nx.DiGraph) -> nx.DiGraph:
    if not any(d["op"] == "shortcut" for _, d in graph.nodes(data=True)):
        return graph.copy()
    g = nx.DiGraph()
    g.graph.update(graph.graph)
    rename: dict[str, str] = {}
    for node in schedule(graph):
        data = graph.nodes[node]
        srcs = [rename.get(s, s) for s in inputs(graph, node)]
        if data["op"] != "shortcut":
            g.add_node(node, **data)
            for slot, s in enumerate(srcs):
                g.add_edge(s, node, slot=slot)
            continue
        trunk, like = srcs[0], inputs(graph, node)[1]
        src_shape = graph.nodes[inputs(graph, node)[0]]["shape"]
        like_shape = graph.nodes[like]["shape"]
        if src_shape == like_shape:
            rename[node] = trunk
            continue
        stride = shortcut_stride(src_shape, like_shape)
        common = dict(span=data["span"], block=data["block"])
        if data["attrs"].get("mode") == "zeropad":  # option A: subsampled, zero channels added
            pad_attrs = freeze({"out": like_shape[0], "stride": stride})
            g.add_node(f"{node}/zeropad", op="zeropad", attrs=pad_attrs, written=OPS["zeropad"].written(pad_attrs),
                       **common)
            g.add_edge(trunk, f"{node}/zeropad", slot=0)
            rename[node] = f"{node}/zeropad"
            continue
        conv_attrs = {"out": like_shape[0], "kernel": (1, 1), "stride": stride, "pad": (0, 0), "groups": 1}
        use_bn = _branch_uses_bn(graph, like, trunk)
        conv_attrs["bias"] = not use_bn
        conv_attrs = freeze(conv_attrs)
        conv_id = f"{node}/conv"
        g.add_node(conv_id, op="conv", attrs=conv_attrs, written=OPS["conv"].written(conv_attrs), **common)
        g.add_edge(trunk, conv_id, slot=0)
        last = conv_id
        if use_bn:
            bn_attrs = freeze({"eps": 1e-5, "momentum": 0.1})
            g.add_node(f"{node}/bn", op="bn", attrs=bn_attrs, written="bn", **common)
            g.add_edge(conv_id, f"{node}/bn", slot=0)
            last = f"{node}/bn"
        rename[node] = last
    g.graph["outputs"] = tuple((name, rename.get(n, n)) for name, n in graph.graph["outputs"])
    annotate_shapes(g)
    return g


def _branch_uses_bn(g: nx.DiGraph, end: str, start: str) -> bool:
    """Does the path back from `end` to the block input pass a batch norm?"""
    seen, stack = set(), [end]
    while stack:
        n = stack.pop()
        if n == start or n in seen:
            continue
        seen.add(n)
        if g.nodes[n]["op"] == "bn":
            return True
        stack.extend(inputs(g, n))
    return False
