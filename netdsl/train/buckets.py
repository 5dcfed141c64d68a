"""Gradient averaging across ranks in contiguous buckets (PyTorch DDP's and Horovod's scheme).

Parameters are laid out in the order the backward pass finishes them (reverse schedule order),
cut into buckets of about `bucket_bytes`; every rank has the same buckets in the same order. As
the backward pass completes a node, its gradients are copied into their bucket scaled by this
rank's share of the global batch (n_rank / n_global: the global batch's mean loss is the
count-weighted sum of the ranks' mean losses, also for a last batch that the ranks share
unequally). A full bucket is summed across ranks, then (with overlap) at once, while the rest of
the backward pass runs, otherwise after it. The sum of each value is the same whichever bucket carries it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's default bucket_cap_mb


@dataclass
class Bucket:
    index: int
    buffer: np.ndarray                                  # host memory: MPI reads and writes here
    entries: list[tuple[int, str, int, tuple]] = field(default_factory=list)  # (node, param, offset, shape)
    seen: set = field(default_factory=set)              # (node, param) put in this step
    pending: Any = None


def bucket_layout(nbytes: list[int], bucket_bytes: int) -> list[list[int]]:
    """Tensors of these sizes, in this order, cut into buckets: each bucket takes tensors until
    it holds `bucket_bytes` or more (a tensor larger than that is a bucket of its own)."""
    buckets, current, size = [], [], 0
    for k, n in enumerate(nbytes):
        current.append(k)
        size += n
        if size >= bucket_bytes:
            buckets.append(current)
            current, size = [], 0
    if current:
        buckets.append(current)
    return buckets


def backward_order(model) -> list[tuple[int, str]]:
    """(node, parameter) in the order the backward pass finishes them: reverse schedule order."""
    return [(i, pname) for i in range(len(model.nodes) - 1, -1, -1) for pname in model.nodes[i].params]


class GradientBuckets:
    def __init__(self, model, comm, bucket_bytes: int = DEFAULT_BUCKET_BYTES, overlap: bool = False):
        self.model, self.comm, self.overlap = model, comm, overlap
        self.device = model.device
        self.buckets: list[Bucket] = []
        self.of_node: dict[int, list[tuple[Bucket, str, int, tuple]]] = {}
        order = backward_order(model)
        values = [model.nodes[i].params[p] for i, p in order]
        for members in bucket_layout([int(v.nbytes) for v in values], bucket_bytes):
            entries, size = [], 0
            for k in members:
                node, pname = order[k]
                entries.append((node, pname, size, tuple(values[k].shape)))
                size += int(values[k].size)
            bucket = Bucket(len(self.buckets), np.zeros(size, dtype=model.dtype), entries)
            self.buckets.append(bucket)
            for node, pname, offset, shape in entries:
                self.of_node.setdefault(node, []).append((bucket, pname, offset, shape))
        self.weight = 1.0

    def begin(self, weight: float) -> None:
        """A new step: this rank's share of the global batch (0 for a rank with no images in it)."""
        self.weight = weight
        for bucket in self.buckets:
            bucket.seen = set()
            bucket.pending = None

    def ready(self, node_index: int) -> None:
        """The backward pass has finished node `node_index`: its gradients go into their buckets."""
        for bucket, pname, offset, shape in self.of_node.get(node_index, ()):
            self._put(bucket, node_index, pname, offset, shape)
        if self.overlap:
            for bucket in self.buckets:  # MPI moves a started collective along only when called
                if bucket.pending is not None:
                    self.comm.test(bucket.pending)

    def _put(self, bucket: Bucket, node: int, pname: str, offset: int, shape: tuple) -> None:
        grad = self.model.nodes[node].grads.get(pname)
        n = int(np.prod(shape))
        target = bucket.buffer[offset:offset + n]
        if grad is None:
            target[...] = 0
        else:
            host = self.device.asnumpy(grad).reshape(-1)  # a GPU gradient comes through host memory
            np.multiply(host, bucket.buffer.dtype.type(self.weight), out=target)
        bucket.seen.add((node, pname))
        if len(bucket.seen) == len(bucket.entries) and self.overlap:
            bucket.pending = self.comm.start_allreduce(bucket.buffer, f"the gradient sum of bucket {bucket.index}")

    def finish(self) -> dict[str, Any]:
        """Every bucket summed across ranks; the averaged gradients by parameter name, on the device."""
        for bucket in self.buckets:
            for node, pname, offset, shape in bucket.entries:
                if (node, pname) not in bucket.seen:  # a node the backward pass did not reach (or no images here)
                    bucket.buffer[offset:offset + int(np.prod(shape))] = 0
            if bucket.pending is None:
                bucket.pending = self.comm.start_allreduce(bucket.buffer, f"the gradient sum of bucket {bucket.index}")
        grads: dict[str, Any] = {}
        xp = self.model.xp
        for bucket in self.buckets:
            self.comm.wait(bucket.pending)
            bucket.pending = None
            for node, pname, offset, shape in bucket.entries:
                n = int(np.prod(shape))
                value = xp.asarray(bucket.buffer[offset:offset + n].reshape(shape))
                self.model.nodes[node].grads[pname] = value
                grads[f"{self.model.nodes[node].name}.{pname}"] = value
        return grads
