"""backend/cpu/threads.py: work split over the cores, and a split inside a split that runs whole."""
import subprocess
import sys

NESTED = r"""
from netdsl.backend.cpu import threads
import numpy as np
threads.MIN_ELEMENTS, threads.WORKERS = 0, 2
seen = []
def outer(lo, hi):
    for i in range(lo, hi):  # each outer slice splits again, on a worker: must not wait on the pool
        threads.over_batch(np, 4, 1, lambda a, b, i=i: seen.extend((i, j) for j in range(a, b)))
threads.over_batch(np, 6, 1, outer)
print(sorted(seen) == [(i, j) for i in range(6) for j in range(4)])
"""


def test_a_split_inside_a_split_runs_whole_instead_of_deadlocking():
    # in its own process: a deadlock would leave pool threads that never let an interpreter exit
    out = subprocess.run([sys.executable, "-c", NESTED], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
