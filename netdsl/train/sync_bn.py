"""--sync-bn: batch norm over the global batch. The kernels (backend/kernels.py) hand this each
layer's per-rank statistics and get back the global batch's; every rank gathers the same values
and combines them in rank order in float64, so every rank computes bit-identical statistics.

Runs on its own channel (a duplicate of the training communicator): its collectives, made from
inside the forward and backward passes, never pair with a gradient bucket's.
"""
from __future__ import annotations

import numpy as np

from ..backend.kernels import update_running


class BatchNormSync:
    def __init__(self, comm, device):
        self.comm = comm.duplicate()
        self.device = device
        # this rank's share of the step's global batch, n_rank / n (the training loop sets it)
        self.weight = 1.0 / comm.size

    def combine(self, xp, mean, m2, count: int):
        """(mean, biased variance, images) of the global batch from each rank's (mean, sum of
        squared deviations, images): Chan et al.'s pairwise formula."""
        c = mean.shape[0]
        mine = np.concatenate([[float(count)], self.device.asnumpy(mean).astype(np.float64),
                               self.device.asnumpy(m2).astype(np.float64)])
        every = self.comm.allgather(mine, "the batch-norm statistics of the global batch (--sync-bn)")
        counts, means, m2s = every[:, 0], every[:, 1:1 + c], every[:, 1 + c:]
        total = float(counts.sum())
        global_mean = (counts[:, None] * means).sum(axis=0) / total
        spread = (m2s + counts[:, None] * (means - global_mean) ** 2).sum(axis=0)
        dtype = mean.dtype
        return xp.asarray(global_mean, dtype=dtype), xp.asarray(spread / total, dtype=dtype), int(total)

    def sums(self, xp, *vectors):
        """Each vector summed over the ranks (rank order, float64), each rank's weighted by its
        share of the global loss, in this rank's units: sum_s (w_s / w_r) v_s, the sum of the
        ranks' vectors where they hold equal shares. (A rank's loss is the mean over its own
        images, and the global loss the w-weighted sum of them: train/buckets.py.)"""
        sizes = [int(v.shape[0]) for v in vectors]
        mine = np.concatenate([self.device.asnumpy(v).astype(np.float64) for v in vectors]) * self.weight
        total = self.comm.allgather(mine, "the batch-norm gradient sums of the global batch (--sync-bn)").sum(axis=0)
        if self.weight:
            total /= self.weight
        out, lo = [], 0
        for v, n in zip(vectors, sizes):
            out.append(xp.asarray(total[lo:lo + n], dtype=v.dtype))
            lo += n
        return out

    def join(self, model) -> None:
        """A rank with no images in this step (the last batch of an epoch, smaller than the
        number of ranks) still takes part in every batch norm's collectives, with nothing to add,
        in the order the others make them: forward in schedule order, backward in reverse."""
        layers = [n for n in model.nodes if n.op == "bn"]
        for node in layers:
            c = node.params["weight"].shape[0]
            zeros = np.zeros(c, dtype=model.dtype)
            mean, var, total = self.combine(model.xp, zeros, zeros, 0)
            update_running(node, mean, var, total)  # as every other rank does: the replicas stay the same
        for node in reversed(layers):
            c = node.params["weight"].shape[0]
            zeros = np.zeros(c, dtype=model.dtype)
            self.sums(np, zeros, zeros)
