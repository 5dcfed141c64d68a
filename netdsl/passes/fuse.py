"""Activation fusion: an activation whose input has no other consumer runs as the epilogue of
the layer before it, in place on that layer's output (one pass over memory instead of two; on
the GPU the epilogue is one CuPy ElementwiseKernel).

Two passes over one rule: `fuse_activation` for conv and fc (bias + activation after the GEMM),
`fuse_elementwise` for every other producer (bn + relu, add + relu, ...). The op table says
which activations may be fused (OpSpec.epilogue) and which producers take one (epilogue_ok).
Both passes are exact in training too: an epilogue's derivative is a function of its output,
which the fused node keeps."""
from __future__ import annotations

import networkx as nx

from ..ops import OPS
from .rewrite import bypass, sole_consumer


def _fuse(graph: nx.DiGraph, producer_ok) -> nx.DiGraph:
    g = graph.copy()
    for node in list(graph.nodes):
        data = g.nodes.get(node)
        if data is None or data.get("epilogue") or not producer_ok(data["op"]):
            continue
        act = sole_consumer(g, node)
        if act is None or not OPS[g.nodes[act]["op"]].epilogue:
            continue
        data["epilogue"] = g.nodes[act]["op"]
        data["fused"] = tuple(data.get("fused", ())) + (act,)
        data["written"] = f"{data['written']} + {data['epilogue']}"
        bypass(g, act, node)
    return g


def fuse_activation(graph: nx.DiGraph) -> nx.DiGraph:
    """conv/fc + bias + activation: the GEMM layers (opaque ops) that take an epilogue."""
    return _fuse(graph, lambda op: OPS[op].epilogue_ok and OPS[op].kind == "opaque")


def fuse_elementwise(graph: nx.DiGraph) -> nx.DiGraph:
    """bn + relu, add + relu, pool + relu: the other producers that take an epilogue."""
    return _fuse(graph, lambda op: OPS[op].epilogue_ok and OPS[op].kind != "opaque")
