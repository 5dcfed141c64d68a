"""Receptive field of every node: size, jump and start per axis.

For a window of size k, stride s and padding p on an input with field (r, j, start):
    r' = r + (k - 1) * j      j' = j * s      start' = start + ((k - 1) / 2 - p) * j
Three stacked 3x3 stride-1 convs: 1 -> 3 -> 5 -> 7. A join (concat, add) takes the widest
field among its inputs; fc and flatten see their whole input.
"""
from __future__ import annotations

import networkx as nx

from ..ir import ReceptiveField, copy_graph, inputs, op_of, schedule


def grow(rf: ReceptiveField, window) -> ReceptiveField:
    (kh, kw), (sh, sw), (ph, pw) = window
    size = (rf.size[0] + (kh - 1) * rf.jump[0], rf.size[1] + (kw - 1) * rf.jump[1])
    jump = (rf.jump[0] * sh, rf.jump[1] * sw)
    start = (rf.start[0] + ((kh - 1) / 2 - ph) * rf.jump[0], rf.start[1] + ((kw - 1) / 2 - pw) * rf.jump[1])
    return ReceptiveField(size, jump, start)


def receptive_field(graph: nx.DiGraph) -> nx.DiGraph:
    g = copy_graph(graph)
    for node in schedule(g):
        data = g.nodes[node]
        srcs = inputs(g, node)
        if not srcs:
            data["rf"] = ReceptiveField((1, 1), (1, 1), (0.5, 0.5))
            continue
        in_rfs = [g.nodes[s]["rf"] for s in srcs]
        widest = max(in_rfs, key=lambda r: r.size[0] * r.size[1])
        window = op_of(g, node).window([g.nodes[s]["shape"] for s in srcs], data["attrs"])
        data["rf"] = widest if window is None else grow(widest, window)
    return g
