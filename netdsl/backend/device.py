"""Choosing the array module once: numpy on the CPU, CuPy on an NVIDIA GPU."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import NetError


@dataclass(frozen=True)
class Device:
    name: str  # 'cpu' | 'gpu'
    xp: ModuleType
    description: str

    def asnumpy(self, a):
        """A host numpy array of `a` (a device array copied over; a numpy array as it is)."""
        return a.get() if self.name == "gpu" and hasattr(a, "get") else a

    def synchronize(self) -> None:
        if self.name == "gpu":
            self.xp.cuda.Stream.null.synchronize()

    def memory_available(self) -> int | None:
        """Bytes a step may still take: the GPU's free memory, or on the CPU the memory the
        kernel reports available, lowered by this process's address-space or data limit
        (ulimit -v, resource.setrlimit). None where neither can be read."""
        if self.name == "gpu":
            free, _total = self.xp.cuda.runtime.memGetInfo()
            return int(free)
        return cpu_memory_available()


def cpu_memory_available() -> int | None:
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):  # no /proc (macOS): no figure from it
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    with contextlib.suppress(ImportError, OSError, ValueError):  # no resource module (Windows)
        import resource
        for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft, _hard = resource.getrlimit(which)
            if soft != resource.RLIM_INFINITY:
                found.append(max(0, soft - _resident_bytes()))
    return min(found) if found else None


def _resident_bytes() -> int:
    """This process's current address-space size: what an RLIMIT_AS already counts."""
    try:
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def on_gpu(xp) -> bool:
    """Whether an array module is CuPy: the one test every GPU-only branch makes."""
    return xp.__name__ == "cupy"


def _gpu(local_rank: int = 0) -> Device | None:
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return None
        index = local_rank % count
        cupy.cuda.Device(index).use()
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        which = f"GPU {index} of {count}, " if count > 1 or local_rank else ""
        return Device("gpu", cupy, f"gpu ({which}{name}, CuPy {cupy.__version__})")
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return None


def _cpu() -> Device:
    import numpy

    from .cpu import blas_threads, native
    kernels = ("compiled kernels" if native.library() is not None
               else "numpy kernels only: no working C compiler, or NETDSL_NATIVE=0")
    notes = ", ".join(filter(None, [kernels, blas_threads.note()]))
    return Device("cpu", numpy, f"cpu (numpy {numpy.__version__}, {notes})")


def get_device(choice: str = "auto", local_rank: int = 0) -> Device:
    """`auto` takes the GPU when CuPy imports and sees one, else numpy; `gpu` insists. With
    several ranks on a machine, rank k takes GPU k (modulo the GPUs there are: ranks share them
    when there are fewer)."""
    if choice == "cpu":
        return _cpu()
    if choice == "gpu":
        dev = _gpu(local_rank)
        if dev is None:
            raise NetError("--device gpu: no GPU is usable here (CuPy is not installed or sees no NVIDIA GPU)",
                           hint="use --device cpu, or install the gpu extra in the netdsl clone: "
                                ".venv/bin/pip install -e '.[gpu]'")
        return dev
    if choice == "auto":
        return _gpu(local_rank) or _cpu()
    raise NetError(f"--device {choice}: expected auto, cpu or gpu")
