"""Timing shared by the benchmark scripts: the median of timed runs after warm-up, and the CPU
the figures come from."""
from __future__ import annotations

import statistics
import time
from typing import Callable

from netdsl.backend.cpu.machine import cpu_model  # noqa: F401 (every benchmark prints it through here)




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
