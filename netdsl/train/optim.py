"""SGD with momentum and weight decay, and learning-rate schedules."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import NetError, NetValueError
from ..backend.cpu import native
from ..backend.device import on_gpu
from ..backend.cpu.threads import over_batch


CHUNK = 1 << 15  # values per cache-sized piece of the in-place CPU update (numpy), per thread hand-off unit (C)


class SGD:
    """v = momentum * v + (grad + weight_decay * w); w -= lr * v  (PyTorch's formulation).

    Weight decay applies to weights only, not to biases or batch-norm parameters."""

    def __init__(self, model, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
        self.model = model
        self.lr = _setting("lr", lr, lambda v: v > 0, "more than 0")
        self.momentum = _setting("momentum", momentum, lambda v: 0 <= v < 1, "from 0 up to (not including) 1")
        self.weight_decay = _setting("weight_decay", weight_decay, lambda v: v >= 0, "0 or more")
        self.velocity: dict[str, Any] = {}
        self.steps = 0

    def _decays(self, name: str, value) -> bool:
        return name.endswith(".weight") and value.ndim > 1

    def step(self, grads: dict[str, Any] | None = None) -> None:
        grads = self.model.gradients() if grads is None else grads
        xp = self.model.xp
        for name, w in self.model.parameters().items():
            g = grads.get(name)
            if g is None:
                continue
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = xp.zeros_like(w)
            decay = self.weight_decay if self.weight_decay and self._decays(name, w) else 0.0
            if on_gpu(xp):  # one generated kernel instead of five array operations
                from ..backend.gpu.cuda import sgd_update
                t = w.dtype.type
                sgd_update()(g, t(self.momentum), t(decay), t(self.lr), w, v)
                continue
            _update_in_place(xp, w, g, v, self.momentum, decay, self.lr)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Momentum by parameter name; a name this network lacks, or another shape or type, is refused."""
        params = self.model.parameters()
        for key, value in state.items():
            name = key[len("velocity."):] if key.startswith("velocity.") else key
            if name not in params:
                raise NetError(f"{source} has optimiser state for '{name}', which this network lacks")
            if tuple(value.shape) != tuple(params[name].shape):
                raise NetError(f"{source}: optimiser state for '{name}' has the wrong shape")
            if value.dtype != params[name].dtype or not np.isfinite(value).all():
                raise NetError(f"{source}: optimiser state for '{name}' is not finite {params[name].dtype}")
            self.velocity[name] = self.model.xp.asarray(value, dtype=params[name].dtype)


def _setting(name: str, value, ok, must: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise NetValueError(f"SGD({name}=...) must be a finite number {must}, not {value!r}")
    return float(value)


def _update_in_place(xp, w, g, v, momentum: float, decay: float, lr: float) -> None:
    """v = momentum*v + g + decay*w; w -= lr*v, in cache-sized pieces (each piece's five
    operations run while it is in cache: one pass over memory, no temporaries), split over the
    cores. Replaced scipy's BLAS axpy: its own OpenBLAS threads kept spinning after the update
    and slowed the next step's first GEMMs (ResNet-18 conv1 forward 31-37 ms without it, 61-69
    with)."""
    if native.available(xp, w.dtype) and w.flags.c_contiguous and v.flags.c_contiguous:
        # one pass in C: a VGG16-sized update 158 -> 56 ms (NOTES.md, change 37)
        native.sgd_update(xp, w, xp.ascontiguousarray(g, dtype=w.dtype), v, momentum, decay, lr, CHUNK)
        return
    wf, vf = w.reshape(-1), v.reshape(-1)
    gf = g.reshape(-1)
    n = wf.size
    pieces = -(-n // CHUNK)

    def work(lo: int, hi: int) -> None:
        scratch = xp.empty(min(CHUNK, n), dtype=w.dtype)
        for k in range(lo, hi):
            s = slice(k * CHUNK, min(n, (k + 1) * CHUNK))
            t = scratch[:s.stop - s.start]
            vc = vf[s]
            vc *= momentum
            vc += gf[s]
            if decay:
                xp.multiply(wf[s], decay, out=t)
                vc += t
            xp.multiply(vc, lr, out=t)
            wf[s] -= t
    over_batch(xp, pieces, n, work)


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Divide by 10 at 50% and 75% of training."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    return base * (0.1 ** sum(step >= total * f for f in (0.5, 0.75)))


SCHEDULES = {"cosine": cosine_lr, "step": step_lr, "constant": lambda base, step, total, warmup=0: base}
