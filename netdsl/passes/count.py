"""Parameters (weights and biases apart), buffers and multiply-adds per node.

Conventions (torchvision's): one multiply-add = 1 MAC, counted for conv and fc only; FLOPs are
2 x MACs. Batch-norm running statistics are buffers, not parameters. Parameter counts come from
the op table's parameter shapes, the same shapes the executor allocates.
"""
from __future__ import annotations

import math

import networkx as nx

from ..ir import copy_graph, inputs, op_of


def count(graph: nx.DiGraph) -> nx.DiGraph:
    g = copy_graph(graph)
    for node, data in g.nodes(data=True):
        op = op_of(g, node)
        in_shapes = [g.nodes[s]["shape"] for s in inputs(g, node)]
        first_in = in_shapes[0] if in_shapes else data["shape"]
        params = op.params(first_in, data["attrs"])
        data["params"] = tuple(params.items())
        data["buffers"] = tuple(op.buffers(first_in, data["attrs"]).items())
        data["weights"] = sum(math.prod(s) for name, s in params.items() if name != "bias")
        data["biases"] = sum(math.prod(s) for name, s in params.items() if name == "bias")
        data["macs"] = op.macs(in_shapes, data["shape"], data["attrs"]) if in_shapes else 0
    return g
