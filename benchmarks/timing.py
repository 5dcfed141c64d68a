"""Timing shared by the benchmark scripts: the median of timed runs after warm-up, and the CPU
the figures come from."""
from __future__ import annotations

import contextlib
import platform
import statistics
import time
from typing import Callable


def cpu_model() -> str:
    """The CPU's model name, which every benchmark prints: machines of one kind differ."""
    with contextlib.suppress(OSError):  # no /proc: platform's answer below
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def median_ms(fn: Callable[[], object], repeat: int = 5, warmup: int = 1,
              sync: Callable[[], object] = lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000
