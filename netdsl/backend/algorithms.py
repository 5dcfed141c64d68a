"""Which algorithm each conv layer of a network runs on this CPU, analysed, not run: the choice
backend/tuner.py would make from its cache (or the thresholds where it has measured nothing),
for `netdsl summary --optimised`, `netdsl tune`'s report and the tests."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..compiler import Network
from ..ir import inputs as ir_inputs
from ..ir import schedule
from ..ops import end_extension, window_geometry
from .conv import Conv
from .im2col import Geometry
from .kernels.dense import DEPTHWISE, depthwise_shape
from .tuner import choose


@dataclass(frozen=True)
class LayerChoice:
    layer: str
    algorithm: str
    source: str  # tuner.Choice's


def conv_layers(net: Network, batch: int):
    """(layer name, Geometry, groups, out channels, whether it is a first layer) of every conv."""
    g = net.graph
    for name in schedule(g):
        data = g.nodes[name]
        if data["op"] != "conv":
            continue
        (src,) = ir_inputs(g, name)
        shape = tuple(g.nodes[src]["shape"])
        kernel, stride, pad = window_geometry([shape], data["attrs"])
        eh, ew = end_extension([shape], data["attrs"])
        geo = Geometry.of((batch, shape[0], shape[1] + eh, shape[2] + ew), kernel, stride, pad)
        yield name, geo, data["attrs"]["groups"], data["shape"][0], g.nodes[src]["op"] == "input"


def plan(net: Network, batch: int, training: bool, precision: str = "default",
         col_budget: int | None = None, dtype: str = "float32") -> list[LayerChoice]:
    from .executor import DEFAULT_COL_BUDGET
    found = []
    for name, geo, groups, o, first in conv_layers(net, batch):
        if depthwise_shape(groups, geo.c, o):  # its own kernel: nothing of conv.py's to choose
            found.append(LayerChoice(name, DEPTHWISE, "its own kernel"))
            continue
        conv = Conv(np, None, col_budget or DEFAULT_COL_BUDGET, name, precision=precision, training=training,
                    need_dx=not first)
        x = SimpleNamespace(shape=(geo.n, geo.c, geo.h, geo.w), dtype=np.dtype(dtype))
        choice = choose(conv, x, None, None, geo, groups, o)
        if choice.algorithm == "s2d":  # its inner conv's choice, on the geometry fold_input makes
            s = geo.stride[0]
            kb = (-(-geo.kernel[0] // s), -(-geo.kernel[1] // s))
            inner = Geometry.of((geo.n, geo.c * s * s, geo.oh + kb[0] - 1, geo.ow + kb[1] - 1), kb, (1, 1), (0, 0))
            xi = SimpleNamespace(shape=(geo.n, inner.c, inner.h, inner.w), dtype=x.dtype)
            sub = choose(conv, xi, None, None, inner, 1, o)
            choice = type(choice)(f"s2d+{sub.algorithm}", choice.source if sub.source == choice.source
                                  else f"{choice.source}; inner {sub.source}")
        found.append(LayerChoice(name, choice.algorithm, choice.source))
    return found
