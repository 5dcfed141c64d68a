"""Batch-norm folding for inference: conv -> bn becomes one conv whose weights and bias absorb
the normalisation (W' = W * g/sqrt(v + eps), b' = (b - m) * g/sqrt(v + eps) + beta).

The IR is structure, the numbers live in the executor: the folded conv records `folded_bn`
(the bn node's name) and the executor derives its parameters from the unfolded model's
(netdsl.backend.executor.derive_params)."""
from __future__ import annotations

import networkx as nx

from ..ops import OPS, freeze
from .rewrite import bypass, sole_consumer


def fold_bn(graph: nx.DiGraph) -> nx.DiGraph:
    g = graph.copy()
    for node in list(graph.nodes):
        data = g.nodes.get(node)
        if data is None or data["op"] != "conv" or data.get("folded_bn"):
            continue
        bn = sole_consumer(g, node)
        if bn is None or g.nodes[bn]["op"] != "bn":
            continue
        attrs = dict(data["attrs"])
        attrs["bias"] = True
        data["attrs"] = freeze(attrs)
        data["folded_bn"] = bn
        data["fused"] = tuple(data.get("fused", ())) + (bn,)
        data["written"] = OPS["conv"].written({**attrs, "bias": data["attrs"]["bias"]}) + " + bn"
        bypass(g, bn, node)
    return g
