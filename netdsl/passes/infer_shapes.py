"""Shape inference: every node gets its output `shape`; floor-division notes become warnings."""
from __future__ import annotations

import networkx as nx

from ..errors import NetError
from ..ir import copy_graph, inputs, op_of, schedule
from ..ops import ShapeContext


def infer_shapes(graph: nx.DiGraph) -> nx.DiGraph:
    g = copy_graph(graph)
    annotate_shapes(g)
    return g


def annotate_shapes(g: nx.DiGraph) -> None:
    """Shape inference in place, for passes that built `g` themselves (lower_shortcuts)."""
    warnings = []
    for node in schedule(g):
        data = g.nodes[node]
        op = op_of(g, node)
        ctx = ShapeContext(data["span"], node)
        in_shapes = [g.nodes[src]["shape"] for src in inputs(g, node)]
        try:
            data["shape"] = tuple(op.shape(in_shapes, data["attrs"], ctx))
        except NetError as err:
            raise _with_hint(err, g, node) from None
        warnings.extend(ctx.warnings)
    g.graph["warnings"] = tuple(warnings)


def _with_hint(err: NetError, g: nx.DiGraph, node: str) -> NetError:
    """For a concat of mismatched sizes, point at the branch that shrank and say which padding
    keeps the size ('pad 2 keeps 28x28')."""
    if err.hint or g.nodes[node]["op"] != "concat":
        return err
    srcs = inputs(g, node)
    sizes = [g.nodes[s]["shape"][1:] for s in srcs]
    common = max(set(sizes), key=sizes.count)
    for src in srcs:
        if g.nodes[src]["shape"][1:] != common:
            culprit = _last_window(g, src)
            if culprit is not None:
                k = g.nodes[culprit]["attrs"]["kernel"]
                if isinstance(k, tuple) and k[0] % 2 == 1 and k[1] % 2 == 1:
                    pad = f"{(k[0] - 1) // 2}" if k[0] == k[1] else f"{(k[0] - 1) // 2}x{(k[1] - 1) // 2}"
                    return NetError(err.message, err.span,
                                    f"'{culprit}' ({g.nodes[culprit]['written']}) shrinks its branch; "
                                    f"pad {pad} keeps {common[0]}x{common[1]}")
    return err


def _last_window(g: nx.DiGraph, node: str) -> str | None:
    while True:
        if "kernel" in g.nodes[node]["attrs"]:
            return node
        preds = inputs(g, node)
        if len(preds) != 1:
            return None
        node = preds[0]
