"""Every benchmark script (a benchmarks/*.py with a __main__ block) answers --help with its usage
and exit 0, without running a benchmark (issue 22: compile_speed.py took --help for a file)."""
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if '__name__ == "__main__"' in p.read_text())


def test_every_script_answers_help():
    assert {"compile_speed.py", "train_step.py", "conv_error.py"} <= set(SCRIPTS)
    running = {s: subprocess.Popen([sys.executable, str(BENCHMARKS / s), "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=BENCHMARKS.parent) for s in SCRIPTS}
    for script, proc in running.items():  # all at once: each mostly waits for its imports
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{script}: {err}"
        assert out.startswith("usage:"), script
