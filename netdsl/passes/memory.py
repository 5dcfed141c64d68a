"""Activation memory per image, in values (x4 bytes in float32).

Convention (the cs231n VGG16 table: 15,237,608 values): the input and every layer's output are
stored, except where the op writes in place or is a view (ReLU and the other activations,
dropout, flatten, concat, which its branches write into, and the classifier head).
Training keeps those values for the backward pass and adds one gradient of the same size each.
The parameters, in training, are kept with their gradients and SGD's momentum: `training_parameter_values`
is that figure, the one home for it (the summary shows it, train/budget.py plans with it).
"""
from __future__ import annotations

import math

import networkx as nx

from ..ir import copy_graph, op_of


def activation_memory(graph: nx.DiGraph) -> nx.DiGraph:
    g = copy_graph(graph)
    for node, data in g.nodes(data=True):
        data["activations"] = math.prod(data["shape"]) if op_of(g, node).stores_output else 0
    return g


# What training keeps per parameter: the weight, its gradient and, with an optimiser, SGD's momentum.
TRAINING_COPIES = {"weights": 1, "gradients": 1, "momentum": 1}


def training_parameter_values(params: int, optimiser: bool = True) -> int:
    """Values training holds for `params` parameters: weights and gradients, plus the optimiser's
    momentum when there is one (a `netdsl run` step has none)."""
    copies = sum(n for what, n in TRAINING_COPIES.items() if optimiser or what != "momentum")
    return copies * params
