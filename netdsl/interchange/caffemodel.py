"""Caffe's .caffemodel weights: the few messages of caffe.proto that carry them, read with the
protobuf library (already installed with onnx) from descriptors built here, so no compiled
caffe.proto is needed. Unknown fields (everything but names, types and blobs) are skipped by
protobuf itself.

    NetParameter   { repeated LayerParameter layer = 100; repeated V1LayerParameter layers = 2; }
    LayerParameter { string name = 1; string type = 2; repeated BlobProto blobs = 7; }
    BlobProto      { BlobShape shape = 7; repeated float data = 5 [packed];
                     repeated double double_data = 8 [packed]; int32 num, channels, height, width = 1..4; }
    BlobShape      { repeated int64 dim = 1 [packed]; }
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..errors import NetError
from . import checks
from .checks import Place
from .labels import comment

MAX_CAFFEMODEL = 2 << 30


@lru_cache(maxsize=1)
def messages():
    """(NetParameter, BlobProto) message classes for the subset of caffe.proto above."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="netdsl_caffe_subset.proto", package="netdsl_caffe",
                                               syntax="proto2")

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for fname, number, kind, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".netdsl_caffe.{type_name}"
            if packed:
                f.options.packed = True
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    message("BlobProto", [("shape", 7, F.TYPE_MESSAGE, opt, "BlobShape", False),
                          ("data", 5, F.TYPE_FLOAT, rep, None, True),
                          ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
                          ("num", 1, F.TYPE_INT32, opt, None, False), ("channels", 2, F.TYPE_INT32, opt, None, False),
                          ("height", 3, F.TYPE_INT32, opt, None, False), ("width", 4, F.TYPE_INT32, opt, None, False)])
    message("LayerParameter", [("name", 1, F.TYPE_STRING, opt, None, False), ("type", 2, F.TYPE_STRING, opt, None, False),
                               ("blobs", 7, F.TYPE_MESSAGE, rep, "BlobProto", False)])
    message("V1LayerParameter", [("name", 4, F.TYPE_STRING, opt, None, False)])
    message("NetParameter", [("name", 1, F.TYPE_STRING, opt, None, False),
                             ("layer", 100, F.TYPE_MESSAGE, rep, "LayerParameter", False),
                             ("layers", 2, F.TYPE_MESSAGE, rep, "V1LayerParameter", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("netdsl_caffe.NetParameter")), \
        get(pool.FindMessageTypeByName("netdsl_caffe.BlobProto"))


def _array(blob, place: Place) -> np.ndarray:
    """A blob's values in its shape: the dims checked (whole, 0 or more, their product exact and
    bounded) and the values exactly as many, before anything is allocated from them."""
    if blob.HasField("shape"):
        shape = checks.dims(blob.shape.dim, "a blob", place, low=0)
    else:  # the legacy four sizes, leading ones dropped
        shape = checks.dims((blob.num, blob.channels, blob.height, blob.width), "a blob", place, low=0)
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
    count = checks.bounded_product(shape, "a blob", place)
    held = len(blob.data) or len(blob.double_data)
    if held != count:
        raise place.error(f"a blob of shape {list(shape)} holds {held:,} values, not {count:,}")
    with np.errstate(over="ignore"):  # doubles beyond float32 become inf, refused by name (structure._state)
        values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    return values.reshape(shape)


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """{layer name: [its blobs as arrays]} from a .caffemodel."""
    data = checks.read_file(path, MAX_CAFFEMODEL, "a .caffemodel file")
    net_cls, _ = messages()
    net = net_cls()
    try:
        net.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise NetError(f"{path} is not a readable .caffemodel ({type(exc).__name__})") from None
    if len(net.layers) and not len(net.layer):
        raise NetError(f"{path} is in Caffe's legacy V1 format", hint="upgrade it with upgrade_net_proto_binary")
    out = {}
    for layer in net.layer:
        place = Place(str(path), f"layer '{comment(layer.name)}'")
        out[layer.name] = [_array(b, place) for b in layer.blobs]
    return out
