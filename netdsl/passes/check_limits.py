"""Refuse, at compile time, a layer whose output or parameters would not fit the memory limit.

An absurd size (`input 3x100000x100000`, `conv 10000000 3x3`) is a typo; it must be caught
before anything is allocated. The limit is the graph attribute `memory_limit` (bytes), set by
`compile(..., memory_limit=)` and `--memory-limit`.
"""
from __future__ import annotations

import math

import networkx as nx

from ..errors import NetError
from ..ops import shape_text

DEFAULT_LIMIT = 8 * 2**30
BYTES = 4  # float32


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def check_limits(graph: nx.DiGraph) -> nx.DiGraph:
    limit = graph.graph.get("memory_limit", DEFAULT_LIMIT)
    for node, data in graph.nodes(data=True):
        out_bytes = math.prod(data["shape"]) * BYTES
        if out_bytes > limit:
            raise NetError(f"'{node}' would need {human_bytes(out_bytes)} for its {shape_text(data['shape'])} output "
                           f"per image, over the {human_bytes(limit)} memory limit", data["span"],
                           "check the sizes; raise the limit with --memory-limit if this is meant")
        param_bytes = (data["weights"] + data["biases"]) * BYTES
        if param_bytes > limit:
            raise NetError(f"'{node}' would need {human_bytes(param_bytes)} of parameters "
                           f"({data['weights'] + data['biases']:,} values), over the {human_bytes(limit)} memory limit",
                           data["span"], "check the sizes; raise the limit with --memory-limit if this is meant")
    return graph  # unchanged: this pass only checks
