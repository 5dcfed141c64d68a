"""ONNX external data, read by netdsl itself (issue 21).

A large ONNX model may keep its tensors in files beside it: each such tensor names a `location`
(a path relative to the model's folder), an `offset` and a `length`. netdsl checks every one
before reading a byte: the location stays inside the model's folder (no absolute path, no `..`,
no symbolic link that leads out), the file exists and is a regular file, and the bytes it names
are exactly the tensor's size and lie within the file. Each refusal names the tensor and the
location; the onnx package's own loader (whose reasons hide behind "ValidationError") is not used.
"""
from __future__ import annotations

import os
import stat

from ..errors import NetError
from .checks import MAX_VALUES, Place, bounded_product, whole

MAX_EXTERNAL = 2 << 30  # all external data of one model together, as one .onnx file may hold


def tensors(model):
    """Every tensor a model holds: its initializers and its nodes' tensor attributes."""
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors


def _inside(folder: str, location: str, place: Place) -> str:
    """The real path of `location` in `folder`, refused where it would lead out of it."""
    parts = location.replace("\\", "/").split("/")
    if not location or "\0" in location:
        raise place.error("names no external data file", "the location is a file name beside the model")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise place.error(f"keeps its data at the absolute path '{location}'; netdsl reads external data only "
                          "from the model's own folder", "the location is a path relative to the model")
    if ".." in parts:
        raise place.error(f"keeps its data at '{location}', outside the model's folder; netdsl reads external data "
                          "only from the model's own folder", "the location is a path relative to the model")
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder:
        raise place.error(f"keeps its data at '{location}', a link that leads outside the model's folder "
                          f"(to {target})", "netdsl reads external data only from the model's own folder")
    return target


def load(model, path: str) -> None:
    """Every external tensor of `model` read into the model itself (raw_data), checked first."""
    from onnx import TensorProto, helper
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    total = 0
    for t in tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        place = Place(path, f"tensor '{t.name}'")
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        target = _inside(folder, location, place)
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise place.error(f"keeps its data in '{location}', which is missing beside the model "
                              f"({os.path.dirname(path) or '.'})", "copy the model's data files with it") from None
        except OSError as exc:
            raise place.error(f"keeps its data in '{location}', which cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise place.error(f"keeps its data in '{location}', which is not a regular file")
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:  # an unknown or string data type: no fixed size a value
            raise place.error(f"has data type {t.data_type}, which netdsl cannot read from external data") from None
        count = bounded_product([whole(d, "a dimension", place, low=0, high=MAX_VALUES) for d in t.dims],
                                "the tensor", place)
        size = count * itemsize
        offset = whole(info.get("offset", "0"), "its external data offset", place, low=0, high=st.st_size)
        if "length" in info:
            length = whole(info["length"], "its external data length", place, low=0, high=MAX_EXTERNAL)
            if length != size:
                raise place.error(f"names {length:,} bytes of '{location}', but its shape "
                                  f"{list(t.dims)} needs {size:,}")
        if offset + size > st.st_size:
            raise place.error(f"needs {size:,} bytes of '{location}' from offset {offset:,}, but the file holds "
                              f"{st.st_size:,}")
        total += size
        if total > MAX_EXTERNAL:
            raise NetError(f"{path}: its external data is more than {MAX_EXTERNAL:,} bytes, the most netdsl reads")
        with open(target, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(size)
        t.data_location = TensorProto.DEFAULT
        del t.external_data[:]
