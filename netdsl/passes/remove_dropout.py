"""Dropout is the identity in evaluation (inverted dropout scales while training): remove it."""
from __future__ import annotations

import networkx as nx

from .rewrite import bypass


def remove_dropout(graph: nx.DiGraph) -> nx.DiGraph:
    g = graph.copy()
    for node in [n for n, d in graph.nodes(data=True) if d["op"] == "dropout"]:
        bypass(g, node)
    return g
