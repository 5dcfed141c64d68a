"""Shape inference: every node gets its output `shape`; floor-division notes become warnings.

A layer whose shape rule fails is reported, and inference goes on with the layers that do not
read it (directly or through others): every shape error that does not follow from an earlier
one is found, each place once, however many block instances share it."""
from __future__ import annotations

import networkx as nx

from ..errors import ErrorLog, NetError
from ..ir import copy_graph, inputs, op_of, schedule
from ..ops import ShapeContext


def infer_shapes(graph: nx.DiGraph) -> nx.DiGraph:
    g = copy_graph(graph)
    annotate_shapes(g)
    return g


def annotate_shapes(g: nx.DiGraph) -> None:
    """Shape inference in place, for passes that built `g` themselves (lower_shortcuts)."""
    warnings = []
    log = ErrorLog()
    failed: set[str] = set()  # layers without a shape: their own rule failed, or an input's did
    for node in schedule(g):
        data = g.nodes[node]
        srcs = inputs(g, node)
        if any(src in failed for src in srcs):
            failed.add(node)  # its error would follow from the earlier one
            continue
        op = op_of(g, node)
        ctx = ShapeContext(data["span"], node)
        in_shapes = [g.nodes[src]["shape"] for src in srcs]
        try:
            data["shape"] = tuple(op.shape(in_shapes, data["attrs"], ctx))
        except NetError as err:
            log.add(_with_hint(err, g, node))
            failed.add(node)
            continue
        warnings.extend(ctx.warnings)
    log.check()
    g.graph["warnings"] = tuple(warnings)


def _with_hint(err: NetError, g: nx.DiGraph, node: str) -> NetError:
    """For a concat of mismatched sizes, point at the branch that changed the size it started
    with and say which padding keeps it ('pad 2 keeps 28x28')."""
    if err.hint or g.nodes[node]["op"] != "concat":
        return err
    for src in inputs(g, node):
        fork = _fork(g, src)
        if fork is None or len(g.nodes[fork]["shape"]) != 3:
            continue
        kept = g.nodes[fork]["shape"][1:]
        if g.nodes[src]["shape"][1:] == kept:
            continue
        culprit = _last_window(g, src)
        if culprit is None:
            continue
        k = g.nodes[culprit]["attrs"]["kernel"]
        stride = g.nodes[culprit]["attrs"].get("stride")
        if isinstance(k, tuple) and k[0] % 2 == 1 and k[1] % 2 == 1 and stride == (1, 1):
            pad = f"{(k[0] - 1) // 2}" if k[0] == k[1] else f"{(k[0] - 1) // 2}x{(k[1] - 1) // 2}"
            return NetError(err.message, err.span,
                            f"'{culprit}' ({g.nodes[culprit]['written']}) shrinks its branch; "
                            f"pad {pad} keeps {kept[0]}x{kept[1]}")
        return NetError(err.message, err.span,
                        f"'{culprit}' ({g.nodes[culprit]['written']}) changes its branch's size from "
                        f"{kept[0]}x{kept[1]} to {'x'.join(map(str, g.nodes[src]['shape'][1:]))}")
    return err


def _chain(g: nx.DiGraph, node: str):
    """Walk back from a branch's end through single-input nodes."""
    while True:
        yield node
        preds = inputs(g, node)
        if len(preds) != 1:
            return
        node = preds[0]
        if g.out_degree(node) > 1:  # the fork the branches start from
            yield node
            return


def _fork(g: nx.DiGraph, node: str) -> str | None:
    *_, last = _chain(g, node)
    return last if g.out_degree(last) > 1 else None


def _last_window(g: nx.DiGraph, node: str) -> str | None:
    for n in _chain(g, node):
        if g.out_degree(n) > 1 and n != node:
            return None
        if "kernel" in g.nodes[n]["attrs"]:
            return n
    return None
