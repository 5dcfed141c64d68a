"""Which images each rank takes: the same global batches whatever the number of ranks.

Training: every rank draws the same permutation of the training set for the epoch (from the
seed and the epoch alone); global batch b is positions b*B .. (b+1)*B of it, and rank r takes
every N-th of those from the r-th on. Over an epoch, rank r's images are the permutation's
positions r, r+N, r+2N, ...: PyTorch's DistributedSampler's interleaved shard, here without its
padding, because the steps are counted in global batches (every rank takes as many steps) and a
last batch the ranks share unequally is weighted by each rank's count (train/buckets.py).

Evaluation: rank r takes test images r, r+N, ... in order, none twice and none left out.
"""
from __future__ import annotations

import math

import numpy as np

EVAL_BATCH = 256


def train_plan(order: np.ndarray, batch: int, rank: int, size: int) -> list[tuple[np.ndarray, int]]:
    """For each step of the epoch: (this rank's indices, the images in the global batch)."""
    n = len(order)
    plan = []
    for b in range(math.ceil(n / batch)):
        chunk = order[b * batch:(b + 1) * batch]
        plan.append((chunk[rank::size], len(chunk)))
    return plan


def eval_plan(n: int, rank: int, size: int, batch: int = EVAL_BATCH) -> list[np.ndarray]:
    """This rank's test indices, in batches."""
    mine = np.arange(rank, n, size)
    return [mine[lo:lo + batch] for lo in range(0, len(mine), batch)]
