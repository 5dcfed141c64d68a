"""IR invariants, checked after every pass in debug mode. A failure here is a compiler bug."""
from __future__ import annotations

import networkx as nx

from ..ops import OPS


class IRError(AssertionError):
    """An IR invariant broken by a pass: a bug in netdsl, never in the user's program."""


def verify(g: nx.DiGraph, after: str = "?") -> None:
    def fail(msg: str):
        raise IRError(f"IR invalid after {after}: {msg}")

    if not nx.is_directed_acyclic_graph(g):
        fail("the graph has a cycle")
    position = {n: i for i, n in enumerate(g.nodes)}
    for src, dst in g.edges:
        if position[src] >= position[dst]:
            fail(f"{src} -> {dst} runs backwards in node order (the schedule)")
    for node, data in g.nodes(data=True):
        op = OPS.get(data.get("op"))
        if op is None:
            fail(f"{node} has unknown op {data.get('op')!r}")
        for key in ("attrs", "span", "block"):
            if key not in data:
                fail(f"{node} lacks '{key}'")
        slots = sorted(g.edges[p, node]["slot"] for p in g.predecessors(node))
        if slots != list(range(len(slots))):
            fail(f"{node} has input slots {slots}")
        want = {"none": 0, "one": 1}.get(op.arity)
        if want is not None and len(slots) != want:
            fail(f"{node} ({op.name}) has {len(slots)} inputs")
        for key, value in data.items():
            if isinstance(value, (list, dict, set)):
                fail(f"{node}.{key} is a mutable {type(value).__name__}")
    for _, node in g.graph.get("outputs", ()):
        if node not in g:
            fail(f"output {node} is not in the graph")
