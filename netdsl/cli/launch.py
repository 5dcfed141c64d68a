"""`netdsl train ... --ranks N`: start N local ranks of the same command through mpiexec."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import NetError


def find_mpiexec() -> str:
    """The mpiexec beside this Python (the `mpich` wheel's, in the same environment), else the
    first on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise NetError("--ranks: no mpiexec found (neither beside this Python nor on PATH)",
                       hint="pip install 'netdsl[mpi]' brings MPICH's mpiexec with mpi4py")
    return found


def without_ranks(argv: list[str]) -> list[str]:
    """The command line with its --ranks flag taken out."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--ranks":
            skip = True
            continue
        if token.startswith("--ranks="):
            continue
        out.append(token)
    return out


def launch(ranks: int, argv: list[str]) -> int:
    """Run `netdsl <argv>` as `ranks` MPI ranks on this machine; their exit status."""
    from ..train.comm import launcher_world
    size, rank = launcher_world()
    if size > 1:
        raise NetError(f"--ranks {ranks}: this is already rank {rank} of {size} started by an MPI launcher",
                       hint="give the number of ranks to the launcher (mpiexec -n N) or to --ranks, not both")
    try:
        import mpi4py  # noqa: F401  (each rank needs it: say so once, here)
    except ImportError:
        raise NetError(f"--ranks {ranks}: mpi4py is not installed",
                       hint="pip install 'netdsl[mpi]' brings mpi4py and MPICH") from None
    command = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "netdsl", *without_ranks(argv),
               "--dist", "mpi"]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
