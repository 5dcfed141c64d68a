"""OpenBLAS's idle worker threads, put to sleep instead of spinning between netdsl's GEMMs.

After each call OpenBLAS keeps its worker threads busy-waiting for 2^28 cycles (about 0.1 s),
ready for the next GEMM. netdsl's compiled kernels run on every core between its GEMMs, and a
spinning BLAS thread takes half a core from them: ResNet-18's stem conv took 14 ms alone and
28 ms inside a training step. OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles) lets the workers sleep at
once: ResNet-18 b8 743 -> 611 ms a step, LeNet-5 4.3 -> 3.7 (benchmarks/NOTES.md, change 33).

OpenBLAS reads the variable when it is loaded, that is when numpy is first imported, so netdsl
sets it on its own import (netdsl/__init__.py imports this module first): that works wherever
netdsl is imported before numpy (the command line, the benchmarks). A value the user has set is
kept; NETDSL_BLAS_SLEEP=0 leaves the variable alone.
"""
from __future__ import annotations

import os
import sys

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
SLEEP_AT_ONCE = "4"  # OpenBLAS's smallest: a timeout of 2^4 cycles

# what OpenBLAS saw, or will see, when it loads: numpy imported before netdsl means it has loaded
_loaded_without_it = "numpy" in sys.modules and VARIABLE not in os.environ
ENABLED = os.environ.get("NETDSL_BLAS_SLEEP", "1") != "0"
if ENABLED:
    os.environ.setdefault(VARIABLE, SLEEP_AT_ONCE)


def note() -> str | None:
    """A word for the CPU device's description where OpenBLAS's threads spin after all (numpy
    was imported before netdsl, with the variable unset); None where they do not."""
    if ENABLED and _loaded_without_it:
        return f"BLAS threads spin: import netdsl before numpy, or set {VARIABLE}={SLEEP_AT_ONCE}"
    return None
