"""A netdsl export imported back: the network as it was written, its weights under their names.

netdsl's ONNX export carries the network's whole source in the model's metadata (onnx_export.py).
Importing such a file gives back that source itself, not a reconstruction: the same labels,
blocks, stages and comments, so `netdsl diff` finds nothing changed, and a state dict keyed as
the original's, so the weights load into the original file (`train --resume`).

The source is trusted only where the graph proves it: it is compiled and exported again (same
opset, same batch) with the file's own weights, and the two graphs must be identical, node for
node, attribute for attribute, initializer for initializer. A model exported optimised or
without its side outputs, exported by another netdsl version whose mapping differs, or edited
after export (a node, a stride, a weight's shape, the source text) does not match, and the
ordinary importer reads it as any other ONNX model.
"""
from __future__ import annotations

import os
import stat

import numpy as np

from ..compiler import MAX_SOURCE_BYTES, Network, compile_source
from ..errors import NetError
from .onnx_import import MAX_ONNX  # the one bound on an ONNX file netdsl reads

PRODUCER = b"netdsl"
SNIFF_BYTES = 4096  # the model's first fields (ir_version, producer_name) come before its graph


def restore(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]] | None:
    """(source, state dict) of a netdsl export whose embedded source matches its graph; None for
    any other file (another producer, an edited or optimised export, not a readable file at all),
    which the ordinary importer then reads and, where it must, refuses by name."""
    if not str(path).lower().endswith(".onnx"):
        return None
    model = _read_netdsl_model(path)
    return None if model is None else restore_model(model)


def restore_model(model) -> tuple[str, dict[str, np.ndarray]] | None:
    """As `restore`, for an onnx.ModelProto already in memory."""
    from .onnx_export import needed_state
    meta = {p.key: p.value for p in model.metadata_props}
    source = meta.get("source")
    if model.producer_name != PRODUCER.decode() or not source or len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        return None
    try:
        net = compile_source(source, meta.get("file") or "<onnx metadata>")
    except NetError:  # the metadata's source was damaged: the graph alone decides
        return None
    needed = needed_state(net)
    state = _initializers(model, needed)
    if state is None or not _same_graph(model, net, state):
        return None
    return source, state


def _read_netdsl_model(path: str | os.PathLike):
    """The model at `path` if it is a regular file whose header names netdsl as its producer and
    whose tensors are all inside it; else None, before more than its first bytes are read."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ONNX:
            return None  # a pipe, a device, a folder, a giant: the ordinary importer says what it is
        with open(path, "rb") as f:
            if _producer(f.read(SNIFF_BYTES)) != PRODUCER:
                return None
            f.seek(0)
            data = f.read(info.st_size + 1)  # what the file holds: read(bound) would reserve the bound
    except OSError:
        return None
    if len(data) != info.st_size:  # it changed while read: the ordinary importer reads it
        return None
    from onnx import ModelProto, TensorProto
    try:
        model = ModelProto.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends: not ours to judge
        return None
    del data
    if any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer):
        return None  # netdsl writes every tensor inline; external data is someone else's file
    return model


def _producer(head: bytes) -> bytes | None:
    """ModelProto's producer_name (field 2) from the start of a serialised model, if it is there
    before the graph (field 7): protobuf writes fields in number order, as onnx and netdsl do."""
    pos = 0
    while pos < len(head):
        tag, pos = _varint(head, pos)
        if tag is None:
            return None
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(head, pos)
            if pos is None:
                return None
        elif wire == 2:
            length, pos = _varint(head, pos)
            if length is None or pos + length > len(head):
                return None
            if field == 2:
                return head[pos:pos + length]
            pos += length
        else:
            return None
        if field >= 7:
            return None
    return None


def _varint(data: bytes, pos: int) -> tuple[int | None, int | None]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, None


def _initializers(model, needed: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
    """The network's tensors from the model's initializers, each the shape the network needs;
    None if one is missing or another shape (the graph comparison then has nothing to compare)."""
    from onnx import TensorProto, numpy_helper
    found = {t.name: t for t in model.graph.initializer}
    state = {}
    for name, shape in needed.items():
        tensor = found.get(name)
        if tensor is None or tensor.data_type != TensorProto.FLOAT or tuple(tensor.dims) != tuple(shape):
            return None
        state[name] = numpy_helper.to_array(tensor)
    return state


def _same_graph(model, net: Network, state: dict[str, np.ndarray]) -> bool:
    """Does exporting `net` with `state`, as the file was exported, give the file's graph exactly?"""
    from .onnx_export import OPSETS, export_onnx
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset not in OPSETS or len(model.graph.input) != 1 or len(model.graph.output) != len(net.outputs):
        return False  # (an export without its side outputs lacks their weights: not the source's network)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not dims:
        return False
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else "dynamic"
    try:
        again = export_onnx(net, None, state, opset=opset, batch=batch)
    except NetError:
        return False
    return again.graph == model.graph
