"""Small helpers over the IR graph shared by passes and back ends."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import networkx as nx

from .ops import OPS, OpSpec


def inputs(g: nx.DiGraph, node: str) -> list[str]:
    """The node's inputs in argument order (networkx's predecessor order is not that)."""
    pred = g.pred[node]
    if len(pred) <= 1:
        return list(pred)
    return sorted(pred, key=lambda src: pred[src]["slot"])


def op_of(g: nx.DiGraph, node: str) -> OpSpec:
    return OPS[g.nodes[node]["op"]]


def schedule(g: nx.DiGraph) -> list[str]:
    """Execution order. Expansion adds every node after its inputs, and passes that rebuild a
    graph keep that, so insertion order is a topological order in source order (passes/verify
    checks the invariant)."""
    return list(g.nodes)


def copy_graph(g: nx.DiGraph) -> nx.DiGraph:
    """A pass's working copy: node attribute dicts are new, their values (immutable) shared."""
    return g.copy()


@dataclass(frozen=True)
class ReceptiveField:
    """Per axis (height, width): field size, jump (distance between neighbouring units, in input
    pixels) and start (centre of the first unit's field; pixel i spans [i, i+1))."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

    def text(self) -> str:
        h, w = self.size
        return f"{h}x{w}"


def fingerprint(g: nx.DiGraph) -> str:
    """A hash of what a graph computes: every node in schedule order with its op, attributes,
    inputs, output shape, parameters and buffers (names and spans left out: the same network
    written on two lines more is the same network). Data-parallel ranks compare it at start-up."""
    digest = hashlib.sha256()
    for node in schedule(g):
        data = g.nodes[node]
        attrs = sorted((k, repr(v)) for k, v in dict(data["attrs"]).items())
        line = (data["op"], attrs, inputs(g, node), data.get("shape"), data.get("params"), data.get("buffers"),
                data.get("epilogue"))
        digest.update(repr((node, line)).encode() + b"\n")
    return digest.hexdigest()
