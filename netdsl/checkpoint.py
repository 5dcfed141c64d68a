"""The checkpoint file: a state dict of numpy arrays and the network's source, in safetensors.

This is the file format alone, over plain arrays, so that everything that reads or writes
weights shares it without importing what holds them: `Model.save`/`Model.load` (backend),
training's `--save`/`--resume` (through the model), and interchange (`--weights`). Writes are
atomic (files.write_atomic): an interrupted save never leaves a half-written checkpoint.

Reading starts from the header alone (names, dtypes, shapes, metadata), so a tensor of the wrong
shape or type is refused before a byte of it is read, whatever its size.

Keys: the network's tensors by their state-dict names (`conv1.weight`, `inception3a/b2/conv2.bias`);
optimiser state under OPTIMISER, a prefix with a ':' that no layer name can contain, so no label
a user picks can make a weight read as optimiser state (format 1 used `optim.`, which `optim:`
as a label could collide with; such files are still read).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import NetError, split_lines
from .files import write_atomic

FORMAT = "netdsl-checkpoint-2"
FORMATS = {"netdsl-checkpoint-1": "optim.", FORMAT: "optim:"}  # format -> its optimiser prefix
OPTIMISER = FORMATS[FORMAT]
DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I8": "int8", "U8": "uint8",
          "I16": "int16", "I32": "int32", "I64": "int64", "BOOL": "bool"}


def write(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], network: str, source: str,
          info: Mapping[str, Any] | None = None) -> None:
    """Write host arrays, the network's name and source, and `info` (JSON) to `path`, atomically.
    Every array must be finite: a checkpoint is a state to come back to."""
    from safetensors.numpy import save as st_save
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    for name, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NetError(f"not saving {path}: tensor '{name}' holds non-finite values",
                           hint="the state diverged; the checkpoint already there, if any, is untouched")
    meta = {"format": FORMAT, "network": network, "source": source, "info": json.dumps(dict(info or {}))}
    write_atomic(path, st_save(arrays, metadata=meta))


@dataclass(frozen=True)
class Entry:
    shape: tuple[int, ...]
    dtype: str  # numpy's name: float32, int8, ...


class Checkpoint:
    """An open checkpoint: its header read, its tensors read one at a time on request."""

    def __init__(self, path: str | os.PathLike):
        from safetensors import safe_open
        self.path = str(path)
        p = Path(path)
        if not p.exists():
            raise NetError(f"no checkpoint at {path}")
        if not p.is_file():
            raise NetError(f"{path} is not a file, so not a checkpoint")
        try:
            self._file = safe_open(self.path, framework="numpy")
            handle = self._file.__enter__()
            self.meta: dict[str, str] = dict(handle.metadata() or {})
            self.entries: dict[str, Entry] = {}
            for key in handle.keys():
                piece = handle.get_slice(key)
                self.entries[key] = Entry(tuple(int(v) for v in piece.get_shape()),
                                          DTYPES.get(piece.get_dtype(), piece.get_dtype().lower()))
        except NetError:
            raise
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise NetError(f"{path} is not a readable safetensors checkpoint ({_short(exc)})") from None
        self._handle = handle
        if self.meta.get("format") not in FORMATS:
            raise NetError(f"{path} is not a netdsl checkpoint (no '{FORMAT}' marker)")

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self._file.__exit__(None, None, None)

    @property
    def optimiser_prefix(self) -> str:
        return FORMATS[self.meta["format"]]

    def model_keys(self) -> list[str]:
        return [k for k in self.entries if not k.startswith(self.optimiser_prefix)]

    def optimiser_keys(self) -> list[str]:
        return [k for k in self.entries if k.startswith(self.optimiser_prefix)]

    def tensor(self, key: str) -> np.ndarray:
        try:
            return self._handle.get_tensor(key)
        except Exception as exc:
            raise NetError(f"{self.path}: tensor '{key}' cannot be read ({_short(exc)})") from None

    @property
    def info(self) -> dict[str, Any]:
        """The `info` it was written with (epoch, step, ...); a damaged one is a NetError."""
        try:
            info = json.loads(self.meta.get("info", "{}"))
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise NetError(f"{self.path}: its 'info' metadata is not a JSON object")
        return info

    def source_difference(self, source: str) -> str | None:
        """None when the checkpoint was saved from this source; else the first line that differs."""
        theirs = self.meta.get("source")
        if theirs is None or theirs == source:
            return None
        a, b = split_lines(theirs), split_lines(source)
        for n, (x, y) in enumerate(zip(a, b), 1):
            if x.strip() != y.strip():
                return f"line {n}: the checkpoint's network has '{x.strip()}', this one '{y.strip()}'"
        n = min(len(a), len(b)) + 1
        return f"line {n}: one network ends where the other goes on"


def check_state(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, Entry], source: str) -> None:
    """A state (by name: shape, dtype) against what a network needs (by name: shape): a tensor
    that is missing, extra, of another shape or not float32 is refused by name."""
    from .ops import shape_text
    for name, shape in expected.items():
        if name not in found:
            raise NetError(f"{source} has no tensor '{name}': it was saved from a different network")
        if found[name].shape != tuple(shape):
            raise NetError(f"{source}: tensor '{name}' is {shape_text(found[name].shape)}, "
                           f"this network needs {shape_text(tuple(shape))}: a different network")
        if found[name].dtype != "float32":
            raise NetError(f"{source}: tensor '{name}' is {found[name].dtype}, netdsl's tensors are "
                           "float32; it is not converted")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise NetError(f"{source} has tensor '{extra[0]}', which this network lacks: a different network")


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All the tensors and the metadata of a netdsl checkpoint."""
    with Checkpoint(path) as ck:
        return {k: ck.tensor(k) for k in ck.entries}, ck.meta


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
