"""Dead-node elimination for inference: side outputs that no loss uses (GoogLeNet's auxiliary
classifiers) and anything else the main output does not depend on."""
from __future__ import annotations

import networkx as nx


def eliminate_dead(graph: nx.DiGraph) -> nx.DiGraph:
    main = graph.graph["outputs"][0][1]
    live = nx.ancestors(graph, main) | {main}
    g = graph.subgraph([n for n in graph.nodes if n in live]).copy()
    g.graph.update(graph.graph)
    g.graph["outputs"] = (graph.graph["outputs"][0],)
    return g
