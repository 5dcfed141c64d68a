"""The checkpoint file: a state dict of numpy arrays and the network's source, in safetensors.

This is the file format alone, over plain arrays, so that everything that reads or writes
weights shares it without importing what holds them: `Model.save`/`Model.load` (backend),
training's `--save`/`--resume` (through the model), and interchange (`--weights`). Writes are
atomic (files.write_atomic): an interrupted save never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import NetError
from .files import write_atomic

FORMAT = "netdsl-checkpoint-1"


def write(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], network: str, source: str,
          info: Mapping[str, Any] | None = None) -> None:
    """Write host arrays, the network's name and source, and `info` (JSON) to `path`, atomically."""
    from safetensors.numpy import save as st_save
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    meta = {"format": FORMAT, "network": network, "source": source, "info": json.dumps(dict(info or {}))}
    write_atomic(path, st_save(arrays, metadata=meta))


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and the metadata of a netdsl checkpoint; anything else is a NetError."""
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
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise NetError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise NetError(f"{path} is not a netdsl checkpoint (no '{FORMAT}' marker)")
    return tensors, meta


def info(meta: Mapping[str, str]) -> dict[str, Any]:
    """The `info` a checkpoint was written with (epoch, step, ...)."""
    return json.loads(meta.get("info", "{}"))
