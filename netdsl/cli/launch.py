"""`netdsl train ... --ranks N`: start N local ranks of the same command through mpiexec.

What every rank would find alike is found here first, once, before N processes start and each
says it: more ranks than cores (unless --oversubscribe), a batch the ranks cannot split, a mistake
in the network, and an MPI library that is missing or does not load.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import NetError
from ..train.comm import INSTALL_MPI
from .usage import UsageError, as_usage


def find_mpiexec() -> str:
    """The mpiexec beside this Python (the `mpich` wheel's, in the same environment), else the
    first on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise NetError("--ranks: no mpiexec found (neither beside this Python nor on PATH)",
                       hint=f"{INSTALL_MPI}; it brings MPICH's mpiexec with mpi4py")
    return found


def without_ranks(argv: list[str]) -> list[str]:
    """The command line with its --ranks and --oversubscribe flags taken out."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--ranks":
            skip = True
            continue
        if token.startswith("--ranks=") or token == "--oversubscribe":
            continue
        out.append(token)
    return out


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_cores(ranks: int, oversubscribe: bool) -> None:
    available = cores()
    if ranks > available and not oversubscribe:
        raise UsageError(f"--ranks {ranks}: this machine has {available} core{'s' if available != 1 else ''}, and "
                         f"{ranks} ranks would share them, each slower than one rank alone",
                         hint=f"--ranks {available} or fewer; or add --oversubscribe to start {ranks} anyway")


# Loads the MPI library as a rank would, without starting MPI: a child process, so that this one
# (which only waits for mpiexec) never holds an uninitialised MPI.
_LOAD_MPI = "import mpi4py; mpi4py.rc.initialize = mpi4py.rc.finalize = False; from mpi4py import MPI"


def check_mpi(ranks: int) -> None:
    """mpi4py is installed and the MPI library it loads is there, said once rather than by each rank."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise NetError(f"--ranks {ranks}: mpi4py is not installed", hint=INSTALL_MPI) from None
    done = subprocess.run([sys.executable, "-c", _LOAD_MPI], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise NetError(f"--ranks {ranks}: mpi4py cannot load the MPI library: "
                       + (lines[-1] if lines else f"exit status {done.returncode}"),
                       hint=f"{INSTALL_MPI}; or set MPI4PY_LIBMPI to your site's libmpi.so")


def mpiexec_flags(mpiexec: str, oversubscribe: bool) -> list[str]:
    """Open MPI's mpiexec refuses more ranks than cores unless told; MPICH's (Hydra) never does."""
    if not oversubscribe:
        return []
    try:
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return ["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []


def launch(args) -> int:
    """Run the command in args.argv as args.ranks MPI ranks on this machine; their exit status."""
    from ..train.comm import launcher_world
    from ..train.loop import TrainConfig, check_batch_split
    from .args import compile_file
    ranks = args.ranks
    size, rank = launcher_world()
    if size > 1:
        raise UsageError(f"--ranks {ranks}: this is already rank {rank} of {size} started by an MPI launcher",
                         hint="give the number of ranks to the launcher (mpiexec -n N) or to --ranks, not both")
    check_cores(ranks, args.oversubscribe)
    if args.batch is not None or not args.resume:  # on --resume without --batch, the checkpoint's: the ranks check it
        with as_usage():
            check_batch_split(args.batch if args.batch is not None else TrainConfig.batch, ranks)
    compile_file(args)  # a mistake in the network: said once, at its place, not by every rank
    check_mpi(ranks)
    mpiexec = find_mpiexec()
    command = [mpiexec, *mpiexec_flags(mpiexec, args.oversubscribe or ranks > cores()), "-n", str(ranks),
               sys.executable, "-m", "netdsl", *without_ranks(args.argv), "--dist", "mpi"]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
