"""Exchange with other tools: ONNX export (onnx_export.py) and importers that turn a model file
into readable netdsl text and a state dict (onnx_import.py, caffe_import.py, darknet_import.py),
sharing structure.py (the data flow as netdsl's structure) and blocks.py (block recovery). Reads the
front end, the IR and plain arrays (a state dict of numpy arrays), never the backend."""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import NetError

# file extension -> the importer's module and function: one row a format
IMPORT_FORMATS = {".onnx": ("onnx_import", "import_onnx"), ".prototxt": ("caffe_import", "import_caffe"),
                  ".cfg": ("darknet_import", "import_darknet")}


def can_import(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMPORT_FORMATS


def import_model(path: str | os.PathLike, weights: str | os.PathLike | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """A model file as (.net source text, state dict of numpy arrays), by its extension; `weights`:
    a separate weights file where the format keeps them apart (Caffe's .caffemodel, Darknet's .weights).
    A netdsl export comes back as the source it was exported from (roundtrip.py)."""
    from .roundtrip import restore
    if weights is None and (restored := restore(path)) is not None:
        return restored
    suffix = Path(path).suffix.lower()
    if suffix not in IMPORT_FORMATS:
        raise NetError(f"{path}: netdsl imports {', '.join(IMPORT_FORMATS)} files, not '{suffix or 'no extension'}'")
    module, function = IMPORT_FORMATS[suffix]
    from importlib import import_module
    read = getattr(import_module(f"{__name__}.{module}"), function)
    if weights is not None and suffix == ".onnx":
        raise NetError(f"{path}: an ONNX model keeps its weights in the file; no separate weights file goes with it")
    with _collector_paused():
        return read(path) if weights is None else read(path, weights)


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector paused while a model is imported. An import makes a great
    many small objects that all live until it ends (syntax trees, graphs, items); the collector's
    full passes over them grew with the model and made importing superlinear (at 20,000 nodes a
    third of the time, and growing). Nothing an import makes needs collecting before it ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
