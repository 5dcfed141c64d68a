"""backend/cpu/heap.py: on Linux with glibc, large arrays come from the reused heap, not fresh mmaps;
elsewhere, and with NETDSL_KEEP_MEMORY=0, nothing is changed."""
import ctypes
import os
import subprocess
import sys

PROBE = r"""
import ctypes
import numpy as np
from netdsl.backend.cpu.heap import keep_freed_memory
tuned = keep_freed_memory()
try:
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
except (OSError, AttributeError):  # not glibc 2.33+: the mapped bytes cannot be read
    mallinfo2 = None
before = mallinfo2().hblkhd if mallinfo2 else 0
a = np.ones(16 << 20, dtype=np.float32)  # 64 MiB: glibc's default would mmap it
print(tuned, mallinfo2().hblkhd - before if mallinfo2 else "unknown")
"""


def _probe(keep: str):
    env = {**os.environ, "NETDSL_KEEP_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    tuned, mmapped = out.stdout.split()
    return tuned == "True", None if mmapped == "unknown" else int(mmapped)


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "gnu_get_libc_version")
    except OSError:
        return False


def test_large_arrays_come_from_the_heap_and_the_switch_turns_it_off():
    tuned, mmapped = _probe("1")
    assert tuned == _glibc()  # tuned exactly where glibc's malloc is the one in use
    if tuned and mmapped is not None:
        assert mmapped < (1 << 20)  # not the array's 64 MiB
    tuned, mmapped = _probe("0")
    assert not tuned
    if mmapped is not None:
        assert mmapped >= (64 << 20)
