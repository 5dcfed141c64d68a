"""Memory planning for inference: buffer lifetimes from the schedule, and buffers shared when
lifetimes do not overlap.

A value is live from the step that makes it to the last step that reads it (outputs to the
end). Views and in-place results (flatten, an activation written over its input) live in their
input's buffer. Buffers are assigned greedily in schedule order, each value taking the
smallest free buffer that fits (growing one if none does). Per image, in float32 values;
graph attributes `buffers` (sizes) and `planned_peak` (values), node attribute `buffer`."""
from __future__ import annotations

import math

import networkx as nx

from ..ir import inputs, schedule
from ..ops import OPS

# From the op table: one-input ops that store nothing new either view their input (injective:
# flatten) and share its buffer outright, or write over it (elementwise: the activations,
# dropout) where nobody else reads it.
SHARING = {"injective": "view", "elementwise": "in_place"}


def _sharing(op: str) -> str | None:
    spec = OPS[op]
    return None if spec.arity != "one" or spec.stores_output else SHARING.get(spec.kind)


def plan_memory(graph: nx.DiGraph) -> nx.DiGraph:
    g = graph.copy()
    order = schedule(g)
    step = {n: i for i, n in enumerate(order)}
    outputs = {n for _, n in g.graph["outputs"]}
    last_use = {n: (len(order) if n in outputs else max([step[c] for c in g.successors(n)], default=step[n]))
                for n in order}
    owner: dict[str, str] = {}  # node -> node whose buffer holds its value
    for n in order:
        sharing = _sharing(g.nodes[n]["op"])
        srcs = inputs(g, n)
        if srcs and (sharing == "view" or (sharing == "in_place" and g.out_degree(srcs[0]) == 1
                                           and srcs[0] not in outputs)):
            owner[n] = owner[srcs[0]]
        else:
            owner[n] = n
    # a buffer lives until the last use of any value stored in it
    end: dict[str, int] = {}
    for n in order:
        o = owner[n]
        end[o] = max(end.get(o, 0), last_use[n])
    sizes: list[int] = []
    free: list[int] = []
    buffer_of: dict[str, int] = {}
    releases: dict[int, list[int]] = {}
    live = peak = 0
    for i, n in enumerate(order):
        for b in releases.pop(i, []):
            free.append(b)
            live -= sizes[b]
        if owner[n] != n:
            buffer_of[n] = buffer_of[owner[n]]
            continue
        need = math.prod(g.nodes[n]["shape"])
        fits = [b for b in free if sizes[b] >= need]
        if fits:
            b = min(fits, key=lambda b: sizes[b])
            free.remove(b)
        elif free:  # grow the largest free buffer rather than adding a new one
            b = max(free, key=lambda b: sizes[b])
            free.remove(b)
            sizes[b] = need
        else:
            b = len(sizes)
            sizes.append(need)
        buffer_of[n] = b
        live += sizes[b]
        peak = max(peak, live)
        # freed after the step that last reads it: inputs and output of one step coexist
        releases.setdefault(end[n] + 1, []).append(b)
    for n in order:
        g.nodes[n]["buffer"] = buffer_of[n]
    g.graph["buffers"] = tuple(sizes)
    g.graph["planned_peak"] = peak
    return g
