"""Splitting memory-bound CPU work (im2col, col2im) across the cores by batch slices.

BLAS already runs the GEMMs on every core; the copies around them are single-threaded numpy
calls that release the GIL, so two slices of the batch run at once on two cores.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable


# Variables MPI launchers set to the number of ranks they started on this machine: MPICH's Hydra,
# Open MPI, Slurm's srun ("4(x2)": 4 tasks on each of 2 nodes).
LOCAL_RANK_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE")


def local_ranks() -> int:
    """How many processes of one MPI job share this machine (1 outside a job)."""
    for name in LOCAL_RANK_VARIABLES:
        digits = os.environ.get(name, "").split("(")[0].split(",")[0]
        if digits.isdigit() and int(digits) >= 1:
            return int(digits)
    return 1


def cores_per_process() -> int:
    """This process's share of the cores: all of them, or under MPI an equal share for each rank on
    the machine (four ranks each running threads on every core would fight for them)."""
    return max(1, (os.cpu_count() or 1) // local_ranks())


WORKERS = max(1, min(8, cores_per_process()))
# Below this many elements (4 MiB of float32) a hand-off to the second core costs more than it
# saves (measured in whole steps: benchmarks/NOTES.md, change 19).
MIN_ELEMENTS = 1 << 20
PREFIX = "netdsl-worker"  # work already on a worker runs there whole: a nested split could deadlock


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(WORKERS, thread_name_prefix=PREFIX)


def over_batch(xp, n: int, elements: int, work: Callable[[int, int], None]) -> None:
    """Run work(lo, hi) over slices of a batch of n, in parallel on the CPU when worth it."""
    if (xp.__name__ != "numpy" or WORKERS == 1 or n < 2 or elements < MIN_ELEMENTS
            or threading.current_thread().name.startswith(PREFIX)):  # inside a worker: no nesting
        work(0, n)
        return
    parts = min(WORKERS, n)
    bounds = [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]
    # the caller takes the first slice itself: one hand-off fewer, and no core left waiting
    # (LeNet-5 splits ~10 short kernels a step; each hand-off costs tens of microseconds)
    futures = [_pool().submit(work, lo, hi) for lo, hi in bounds[1:]]
    try:
        work(*bounds[0])
    finally:
        for f in futures:
            f.result()


def contiguous(xp, a, add=None):
    """A contiguous copy of a (transposed) view, plus `add` (broadcast along a's first axis)
    if given; on the CPU over slices of its first axis, in parallel (numpy's own copy is
    single-threaded)."""
    if xp.__name__ != "numpy":
        return xp.ascontiguousarray(a) if add is None else a + add
    out = xp.empty(a.shape, dtype=a.dtype)

    def work(lo, hi):
        if add is None:
            xp.copyto(out[lo:hi], a[lo:hi])
        else:
            xp.add(a[lo:hi], add, out=out[lo:hi])
    over_batch(xp, a.shape[0], a.size, work)
    return out
