"""The IR as text, one node a line (`--print-after-all`)."""
from __future__ import annotations

import networkx as nx

from ..ir import inputs, schedule
from ..ops import shape_text

_SHOWN = ("shape", "macs", "activations")


def print_ir(g: nx.DiGraph, title: str = "IR") -> str:
    lines = [f"; {title}: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges"]
    for node in schedule(g):
        d = g.nodes[node]
        args = ", ".join(f"%{s}" for s in inputs(g, node))
        facts = []
        if "shape" in d:
            facts.append(shape_text(d["shape"]))
        for key in ("macs", "activations"):
            if d.get(key):
                facts.append(f"{key}={d[key]}")
        if d.get("params"):
            facts.append("params=" + ",".join(f"{k}:{shape_text(v)}" for k, v in d["params"]))
        if d.get("fused"):
            facts.append("fused=" + "+".join(d["fused"]))
        lines.append(f"%{node} = {d['op']}({args})  ; {d['written']}  {' '.join(facts)}".rstrip())
    return "\n".join(lines)
