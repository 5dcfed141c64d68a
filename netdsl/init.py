"""A network's initial state as plain arrays: seeded, documented, the same bits everywhere.

He normal (std sqrt(2/fan_in)) for layers that feed a ReLU, Glorot uniform (limit
sqrt(6/(fan_in + fan_out))) otherwise; biases 0; batch norm scale 1, shift 0, running mean 0,
running variance 1. Drawn with numpy's PCG64 in schedule order. The backend's Model starts from
it, and interchange exports it when no trained weights are given, so both see the same numbers
without interchange importing the backend.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np

from .ir import schedule


def init_scheme(g: nx.DiGraph, node: str) -> str:
    """He for layers feeding a ReLU (through bn/dropout), Glorot otherwise."""
    seen = node
    while True:
        succ = list(g.successors(seen))
        if len(succ) != 1:
            return "glorot"
        op = g.nodes[succ[0]]["op"]
        if op == "relu":
            return "he"
        if op not in ("bn", "dropout"):
            return "glorot"
        seen = succ[0]


def initial_state(g: nx.DiGraph, seed: int = 0, dtype="float32") -> dict[str, np.ndarray]:
    """{"conv1.weight": array, ..., "bn1.running_var": array} in schedule order (a state dict)."""
    dtype = np.dtype(dtype)
    draw = np.float32 if dtype == np.float32 else np.float64  # float32 draws: 2x faster
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for node in schedule(g):
        data = g.nodes[node]
        for pname, shape in data["params"]:
            if pname == "weight" and len(shape) >= 2:
                fan_in = math.prod(shape[1:])
                fan_out = shape[0] * math.prod(shape[2:])
                if init_scheme(g, node) == "he":
                    value = rng.standard_normal(shape, dtype=draw)
                    value *= draw(math.sqrt(2.0 / fan_in))
                else:
                    limit = math.sqrt(6.0 / (fan_in + fan_out))
                    value = rng.random(shape, dtype=draw)
                    value *= draw(2 * limit)
                    value -= draw(limit)
            elif pname == "weight":
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            state[f"{node}.{pname}"] = value.astype(dtype, copy=False)
        for bname, shape in data["buffers"]:
            fill = np.ones if bname == "running_var" else np.zeros
            state[f"{node}.{bname}"] = fill(shape, dtype=dtype)
    return state
