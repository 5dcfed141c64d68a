"""netdsl puts OpenBLAS's idle threads to sleep (backend/cpu/blas_threads.py): the variable is set on
import unless the user set it or switched it off, and it has the effect it is there for: after a
GEMM the process burns no CPU while idle, where by default a worker thread spins."""
import os
import subprocess
import sys

import pytest

import numpy as np

from netdsl.backend.cpu import blas_threads

VARIABLE = blas_threads.VARIABLE

IDLE_CPU = """
import os, resource, time{first}
import numpy as np
a = np.ones((1500, 1500), dtype=np.float32)
a @ a  # OpenBLAS's worker threads now have worked, and wait for the next call
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t = cpu()
time.sleep(0.2)
print(cpu() - t)
"""


def _run(code: str, **env) -> str:
    base = {k: v for k, v in os.environ.items() if k not in (VARIABLE, "NETDSL_BLAS_SLEEP", "OPENBLAS_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**base, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_variable_set_on_import_unless_the_user_chose():
    show = f"import netdsl, os; print(os.environ.get({VARIABLE!r}))"
    assert _run(show) == blas_threads.SLEEP_AT_ONCE
    assert _run(show, **{VARIABLE: "12"}) == "12"
    assert _run(show, NETDSL_BLAS_SLEEP="0") == "None"


def test_device_says_when_numpy_came_first():
    show = "from netdsl.backend.device import get_device; print(get_device('cpu').description)"
    assert "spin" not in _run("import netdsl\n" + show)
    assert "BLAS threads spin" in _run("import numpy, netdsl\n" + show)
    assert "spin" not in _run("import numpy, netdsl\n" + show, **{VARIABLE: "4"})


def test_idle_blas_threads_sleep():
    """With netdsl imported first, idle BLAS threads burn no CPU after a GEMM. (By default, with
    OpenBLAS on two or more cores, a worker spins: 0.1 s of CPU in 0.2 s idle on this project's
    machine; where the default does not spin either, the check still holds.)"""
    quiet = float(_run(IDLE_CPU.format(first="\nimport netdsl")))
    assert quiet < 0.02, f"{quiet:.3f} s of CPU burnt in 0.2 s idle after a GEMM"


def test_stacked_matmul_matches_numpy_and_gives_the_threads_back():
    """A stack of GEMMs one a core equals numpy's matmul (plain and transposed operands), and
    OpenBLAS's thread count (a process-wide setting) is what it was afterwards, after an error too."""
    import numpy as np
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 64, 48)), rng.standard_normal((6, 48, 1500))
    before = blas_threads.thread_count()
    for x, y in ((a, b), (a.transpose(0, 2, 1).copy().transpose(0, 2, 1), b),
                 (a, b.transpose(0, 2, 1).copy().transpose(0, 2, 1))):
        np.testing.assert_allclose(blas_threads.stacked_matmul(np, x, y), np.matmul(x, y), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        blas_threads.stacked_matmul(np, a, rng.standard_normal((6, 47, 1500)))
    assert blas_threads.thread_count() == before


@pytest.mark.parametrize("m, k, n", [(512, 96, 128), (64, 96, 1024), (4000, 600, 2), (3, 4, 5)])
def test_split_matmul_equals_one_gemm_on_one_thread(m, k, n):
    """Rows split (m >= n), columns split (m < n), a GEMV-like product, and one too small to split:
    each block's GEMM is numpy's own, so the result is the whole product's to float32 rounding."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, dtype=np.float32)
    before = blas_threads.thread_count()
    with blas_threads.single_threaded():
        assert blas_threads.thread_count() in (None, 1)
        blas_threads.split_matmul(np, a, b, out)
    assert blas_threads.thread_count() == before  # restored after the block
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4, atol=1e-4)
