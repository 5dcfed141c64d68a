"""How far a float32 run of a network is from a float64 run on the same weights: the measure
behind the float32 error budget (backend/tuner.py's PRECISIONS), used by its test and by
benchmarks/network_error.py."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..compiler import Network
from ..ir import inputs
from .executor import Model


def scores(model: Model, x) -> np.ndarray:
    """The values the head reads (a softmax's scores: its probabilities at initialisation are all
    about 1/classes, and would hide the error)."""
    model.forward(x, keep=True)
    (src,) = inputs(model.net.graph, model.net.outputs[0][1])
    return model.value(src)


def float32_error(net: Network, x: np.ndarray) -> Callable[..., float]:
    """A function of Model options (precision=, winograd=, ...) giving the float32 run's relative
    error (2-norm) on input x against a float64 run of the same network and weights."""
    reference = Model(net, device="cpu", dtype="float64")
    ref = scores(reference, np.asarray(x, dtype=np.float64))
    state = {k: v.astype(np.float32) for k, v in reference.state_dict().items()}

    def error(**options) -> float:
        model = Model(net, device="cpu", **options)
        model.load_state_dict(state)
        y = scores(model, np.asarray(x, dtype=np.float32)).astype(np.float64)
        return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    return error
