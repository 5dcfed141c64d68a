"""Batch-norm folding for inference: conv -> bn becomes one conv whose weights and bias absorb
the normalisation (W' = W * g/sqrt(v + eps), b' = (b - m) * g/sqrt(v + eps) + beta).

The IR is structure: the folded conv records `folded_bn` (the bn node's name), and whoever holds
the numbers derives its parameters from the unfolded network's with `folded_conv_params`, the one
formula the executor (Model(params_from=...)) and ONNX export (optimised=True) both use."""
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


def folded_conv_params(xp, weight, bias, gamma, beta, mean, var, eps: float):
    """(W', b') of a conv that absorbed a batch norm: W' = W * s, b' = (b - mean) * s + beta,
    s = gamma/sqrt(var + eps); `bias` None for a conv without one. Computed in float64 whatever
    the arrays' type (`xp`: numpy or CuPy), so that the executor and the export agree to the
    last bit of their own precision; the caller casts the result to its own."""
    def f(a):
        return xp.asarray(a, dtype=xp.float64)
    scale = f(gamma) / xp.sqrt(f(var) + eps)
    folded_bias = (0.0 if bias is None else f(bias)) - f(mean)
    return f(weight) * scale.reshape(-1, 1, 1, 1), folded_bias * scale + f(beta)
