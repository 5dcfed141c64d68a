"""The benchmark scripts keep their promises: train_step.py times netdsl with no torch installed
(torch is imported only for a torch run, and its absence is named), and the scaling model prints
every assumption its figures rest on (issue 22)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _no_torch_env(tmp_path: Path) -> dict:
    """PYTHONPATH leads to a `torch` package that raises ImportError, as an absent torch would."""
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("No module named \'torch\' (made unimportable by the test)")\n')
    return {**os.environ, "PYTHONPATH": str(tmp_path), "NETDSL_TUNE": "off"}


def _run(args: list[str], env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_train_step_runs_netdsl_alone_without_torch(tmp_path):
    out = _run(["benchmarks/train_step.py", "--frameworks", "netdsl", "--only", "lenet5", "--repeat", "1"],
               _no_torch_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "torch not run" in out.stdout
    row = re.search(r"^lenet5\s+64 netdsl ([\d.]+) ms, ([\d.]+) GFLOP/s, (\d+) MiB$", out.stdout, re.M)
    assert row, out.stdout
    assert float(row.group(1)) > 0 and float(row.group(3)) > 0


def test_train_step_names_the_missing_torch(tmp_path):
    out = _run(["benchmarks/train_step.py", "--frameworks", "torch", "--only", "lenet5", "--repeat", "1"],
               _no_torch_env(tmp_path))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "PyTorch" in out.stderr and "pip install torch" in out.stderr and "--frameworks netdsl" in out.stderr


def test_scaling_model_prints_every_assumption():
    out = _run(["benchmarks/scaling_model.py", "--link", "25", "--efficiency", "0.45", "--latency", "30",
                "--overlap", "0.5"])
    assert out.returncode == 0, out.stderr
    head = out.stdout.split("\n\n")[0]
    # each assumption with the value this run gave it (25 Gb/s * 45% / 8 = 1.41 GB/s, by hand)
    for needed in ("25 Gb/s", "45%", "1.41 GB/s", "alpha = 30 us", "ring allreduce", "25 MiB",
                   "overlap 50%", "67% of the step", "H200 table", "no stragglers", "host"):
        assert needed in head, (needed, head)
    # and with every prediction
    assert out.stdout.count("link 25 Gb/s at 45%, latency 30 us") == 2
