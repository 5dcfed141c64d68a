"""What machine this is, in the words a person compares machines by: the CPU's model name, which
the tuner's cache is keyed by, run logs record and every benchmark prints."""
from __future__ import annotations

import contextlib
import platform


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo: x86's "model name", ARM's "Hardware" or
    "cpu model"), else what platform says."""
    with contextlib.suppress(OSError):  # no /proc: platform's answer below
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"
