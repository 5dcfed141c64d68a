"""backend/heap.py: on Linux with glibc, large arrays come from the reused heap, not fresh mmaps."""
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
import numpy as np
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
from netdsl.backend.heap import keep_freed_memory
tuned = keep_freed_memory()
before = libc.mallinfo2().hblkhd
a = np.ones(16 << 20, dtype=np.float32)  # 64 MiB: glibc's default would mmap it
print(tuned, libc.mallinfo2().hblkhd - before)
"""


def _probe(env_extra):
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    tuned, mmapped = out.stdout.split()
    return tuned == "True", int(mmapped)


def _glibc_with_mallinfo2() -> bool:
    import ctypes
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_with_mallinfo2(),
                    reason="glibc's malloc (2.33+) only: elsewhere keep_freed_memory does nothing")
def test_large_arrays_come_from_the_heap_and_the_switch_turns_it_off():
    tuned, mmapped = _probe({"NETDSL_KEEP_MEMORY": "1"})
    assert tuned and mmapped < (1 << 20)  # not the array's 64 MiB
    tuned, mmapped = _probe({"NETDSL_KEEP_MEMORY": "0"})
    assert not tuned and mmapped >= (64 << 20)
