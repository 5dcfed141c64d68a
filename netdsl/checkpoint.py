"""Checkpoints in safetensors: weights, buffers, optimiser state, and the network's source.

Writes are atomic: the file is written under a temporary name beside the target, flushed, then
renamed over it, so an interrupted save never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NetError

FORMAT = "netdsl-checkpoint-1"


def save(path: str | os.PathLike, model, optimizer=None, extra: dict[str, Any] | None = None) -> None:
    from safetensors.numpy import save as st_save
    tensors = {name: np.ascontiguousarray(model.device.asnumpy(v)) for name, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update({k: np.ascontiguousarray(model.device.asnumpy(v)) for k, v in optimizer.state_dict().items()})
    meta = {"format": FORMAT, "network": model.net.name, "source": model.net.source,
            "info": json.dumps(extra or {})}
    blob = st_save(tensors, metadata=meta)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open
    p = Path(path)
    if not p.is_file():
        raise NetError(f"no checkpoint at {path}")
    try:
        tensors = {}
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except NetError:
        raise
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise NetError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise NetError(f"{path} is not a netdsl checkpoint (no '{FORMAT}' marker)")
    return tensors, meta


def load(path: str | os.PathLike, model, optimizer=None) -> dict[str, Any]:
    """Load weights (and optimiser state) into a model built from the same network. A tensor
    that is missing, extra or of another shape is refused by name."""
    tensors, meta = read(path)
    weights = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    model.load_state_dict(weights, source=str(path))
    if optimizer is not None:
        optimizer.load_state_dict({k: v for k, v in tensors.items() if k.startswith("optim.")})
    return json.loads(meta.get("info", "{}"))
