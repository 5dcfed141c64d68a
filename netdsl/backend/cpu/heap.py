"""Keeping freed memory inside the process on the CPU (glibc's malloc).

A training step frees and reallocates the same large arrays (columns, activations, gradients)
every step. glibc serves every block over 32 MiB with a fresh mmap and returns it on free, so
each step the kernel maps and zeroes those pages again (up to half of a VGG16 step was system
time). With mmap turned off for large blocks and the heap never trimmed, the next step reuses
the same pages: no faults (benchmarks/NOTES.md, change 21).

The cost: memory freed by netdsl stays with the process (reused by its next allocations, not
returned to the system). NETDSL_KEEP_MEMORY=0 turns this off; other C libraries are left as
they are.
"""
from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: free memory at the top stays
TOP_PAD = 64 << 20  # grow the heap in steps of 64 MiB, fewer brk calls


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process (see the module docstring); True where it applied.
    Does nothing, and says False, off Linux/glibc or with NETDSL_KEEP_MEMORY=0."""
    if os.environ.get("NETDSL_KEEP_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc only: others' mallopt differs or is a stub
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
