"""Graph surgery shared by the optimising passes: take a node out, or merge one into another,
keeping slots, outputs and the schedule order (insertion order) intact."""
from __future__ import annotations

import networkx as nx

from ..ir import inputs


def bypass(g: nx.DiGraph, node: str, replacement: str | None = None) -> None:
    """Remove `node`, wiring its consumers to `replacement` (default: its only input) in the
    same slots. In place: callers work on their own copy."""
    if replacement is None:
        (replacement,) = inputs(g, node)
    for consumer in list(g.successors(node)):
        slot = g.edges[node, consumer]["slot"]
        g.add_edge(replacement, consumer, slot=slot)
    g.remove_node(node)
    g.graph["outputs"] = tuple((name, replacement if n == node else n) for name, n in g.graph["outputs"])


def sole_consumer(g: nx.DiGraph, node: str) -> str | None:
    succ = list(g.successors(node))
    outputs = {n for _, n in g.graph["outputs"]}
    return succ[0] if len(succ) == 1 and node not in outputs else None
