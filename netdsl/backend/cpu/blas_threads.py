"""OpenBLAS's threads: its idle workers put to sleep instead of spinning between netdsl's GEMMs,
and stacks of small GEMMs run one a core instead of each on every core.

After each call OpenBLAS keeps its worker threads busy-waiting for 2^28 cycles (about 0.1 s),
ready for the next GEMM. netdsl's compiled kernels run on every core between its GEMMs, and a
spinning BLAS thread takes half a core from them (ResNet-18's stem conv took twice as long
inside a training step as alone). OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles) lets the workers sleep
at once (benchmarks/NOTES.md, change 33).

OpenBLAS reads the variable when it is loaded, that is when numpy is first imported, so netdsl
sets it on its own import (netdsl/__init__.py imports this module first): that works wherever
netdsl is imported before numpy (the command line, the benchmarks). A value the user has set is
kept; NETDSL_BLAS_SLEEP=0 leaves the variable alone.

With the workers asleep, each GEMM call pays a wake-up: Winograd's stacks of 16-36 small GEMMs
run instead one single-threaded GEMM a core (stacked_matmul).
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from functools import lru_cache

from . import threads
from .threads import over_batch

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
SLEEP_AT_ONCE = "4"  # OpenBLAS's smallest: a timeout of 2^4 cycles

# what OpenBLAS saw, or will see, when it loads: numpy imported before netdsl means it has loaded
_loaded_without_it = "numpy" in sys.modules and VARIABLE not in os.environ
ENABLED = os.environ.get("NETDSL_BLAS_SLEEP", "1") != "0"
if ENABLED:
    os.environ.setdefault(VARIABLE, SLEEP_AT_ONCE)
if threads.local_ranks() > 1 and "numpy" not in sys.modules:
    # under MPI each rank's BLAS takes its share of the cores, as netdsl's own threads do
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads.cores_per_process()))


def note() -> str | None:
    """A word for the CPU device's description where OpenBLAS's threads spin after all (numpy
    was imported before netdsl, with the variable unset); None where they do not."""
    if ENABLED and _loaded_without_it:
        return f"BLAS threads spin: import netdsl before numpy, or set {VARIABLE}={SLEEP_AT_ONCE}"
    return None


# A stack of small GEMMs (Winograd's 16 or 36 per layer, 64 x 64 by 64 x 1,568 and the like) runs
# faster as one GEMM a core, single-threaded, than as each GEMM split over every core, which
# wakes OpenBLAS's sleeping worker for each (benchmarks/NOTES.md, change 41). From this many
# multiply-adds.
MIN_STACK_MACS = 1 << 22


@lru_cache(maxsize=1)
def _openblas() -> tuple:
    """The OpenBLAS libraries this process has loaded (numpy's), found in its memory map."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        return ()
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return tuple(libs)


def _function(names: tuple[str, ...], argtypes: list, restype):
    """The first of these OpenBLAS functions found (builds prefix and suffix their names), or None."""
    for lib in _openblas():
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = argtypes, restype
                return fn
    return None


@lru_cache(maxsize=1)
def _set_threads_local():
    """OpenBLAS's openblas_set_num_threads_local (0.3.27 on): despite its name it sets the
    process's thread count (measured: two threads setting and restoring it at once left it at 1,
    and every later GEMM on one core), and returns the previous count; None where numpy's BLAS
    has none."""
    return _function(("openblas_set_num_threads_local",), [ctypes.c_int], ctypes.c_int)


def thread_count() -> int | None:
    """OpenBLAS's current thread count, or None where numpy's BLAS is not OpenBLAS."""
    fn = _function(("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                    "openblas_get_num_threads64_"), [], ctypes.c_int)
    return None if fn is None else fn()


def stacked_matmul(xp, a, b, out=None):
    """a[i] @ b[i] for every i of two (P, ., .) stacks, on numpy with OpenBLAS one GEMM a core
    (each single-threaded, the stack split over the cores); else numpy's own matmul. Into `out`
    where given (the inference path's prepared buffers)."""
    set_local = _set_threads_local() if xp.__name__ == "numpy" else None
    p, m, k = a.shape
    n = b.shape[2]
    splits = threads.WORKERS > 1 and not threading.current_thread().name.startswith(threads.PREFIX)
    if set_local is None or not splits or p < 2 or p * m * k * n < MIN_STACK_MACS:
        return xp.matmul(a, b, out=out)  # unsplit, one GEMM on one core each would only be slower
    if out is None:
        out = xp.empty((p, m, n), dtype=xp.result_type(a, b))

    def work(lo, hi):
        for i in range(lo, hi):
            xp.matmul(a[i], b[i], out=out[i])
    previous = set_local(1)  # for the whole split, from this thread: the setting is the process's
    try:
        over_batch(xp, p, 1 << 62, work)  # always split: the threshold above is in multiply-adds
    finally:
        set_local(previous)
    return out


# The inference path (backend/inference.py) runs every GEMM of a call with OpenBLAS on one thread
# and splits the large ones itself, each core one block of rows or columns: OpenBLAS's own
# threads meet at every panel of a GEMM, and on a machine whose other core is busy each meeting
# waits for a time slice (a 256x2400 by 2400x729 GEMM, AlexNet's conv2 at batch 1: 13 ms on one
# thread, 19-39 ms on OpenBLAS's two, against 10-14 split here, with the machine shared by three
# sessions; benchmarks/results/cpu-2026-12-06-infer). The split meets once, at the end.


class single_threaded:
    """A `with` block in which OpenBLAS runs on one thread (the setting is the process's: the
    inference path is not thread-safe anyway); a no-op where numpy's BLAS is not OpenBLAS."""

    def __enter__(self):
        set_local = _set_threads_local()
        self.previous = None if set_local is None else set_local(1)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            _set_threads_local()(self.previous)


def split_matmul(xp, a, b, out) -> None:
    """out = a @ b (2-D), the larger of the result's two axes split over the cores, one
    single-threaded GEMM each, from MIN_STACK_MACS multiply-adds; below that one GEMM. Call it
    inside `single_threaded()`."""
    m, k = a.shape
    n = b.shape[1]
    if threads.WORKERS == 1 or m * k * n < MIN_STACK_MACS or xp.__name__ != "numpy":
        xp.matmul(a, b, out=out)
        return
    if m >= n:
        over_batch(xp, m, 1 << 62, lambda lo, hi: xp.matmul(a[lo:hi], b, out=out[lo:hi]))
    else:
        over_batch(xp, n, 1 << 62, lambda lo, hi: xp.matmul(a, b[:, lo:hi], out=out[:, lo:hi]))
