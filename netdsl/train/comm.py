"""The communicator the training loop is given: `local` (one process, no MPI) or MPI through
mpi4py. Every collective the loop needs, on host numpy arrays, each named by what it carries so
that a rank stuck in one can say what it was waiting for.

    comm = connect("auto")        # MPI where an MPI launcher started more than one rank
    comm.allreduce(buf, "gradient bucket 3")

Buffers are always host memory: GPU ranks stage through it (an MPI from a wheel is never assumed
to be CUDA-aware). Collectives run non-blocking and are waited on here, which is where
NETDSL_DIST_TIMEOUT (seconds) turns a hang into an error naming the collective.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

import numpy as np

from ..errors import NetError

TIMEOUT_VARIABLE = "NETDSL_DIST_TIMEOUT"
# netdsl installs from a clone (README): the mpi extra brings mpi4py and MPICH, mpiexec included
INSTALL_MPI = "install the mpi extra in the netdsl clone: .venv/bin/pip install -e '.[mpi]'"
ABORT_GRACE = 1.0  # seconds between saying why a rank fails and stopping every rank
# A rank other than 0 that fails waits this long to hear whether rank 0 failed the same way (then
# rank 0 alone says it, once for all); past it, or told of another error, it says its own.
SAME_ERROR_WAIT = 5.0
ERROR_TAG = 0x6E64  # the point-to-point tag rank 0 sends its error's digest under

# What each MPI launcher tells the processes it starts: (world size variable, rank variable).
# Hydra (MPICH, Intel MPI), Open MPI's mpirun, MVAPICH, and Slurm's srun.
LAUNCHERS = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
             ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"), ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"))


def launcher_world() -> tuple[int, int]:
    """(ranks, this rank) as an MPI launcher set them in the environment; (1, 0) where none did."""
    for size_var, rank_var in LAUNCHERS:
        size = os.environ.get(size_var, "")
        if size.isdigit() and int(size) >= 1:
            rank = os.environ.get(rank_var, "0")
            return int(size), int(rank) if rank.isdigit() else 0
    return 1, 0


LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def local_rank() -> int:
    """This rank's number among the ranks on its machine (which GPU it takes); 0 outside MPI."""
    for name in LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class Pending:
    """A collective started and not yet waited on."""

    def __init__(self, request: Any, what: str):
        self.request, self.what = request, what


class LocalComm:
    """One process: every collective is the identity."""

    name = "local"
    rank = 0
    size = 1

    def __init__(self):
        self.seconds = 0.0  # time spent waiting in collectives (none here)

    def allreduce(self, buf: np.ndarray, what: str) -> None:
        """The sum over one rank: the buffer as it is."""

    def start_allreduce(self, buf: np.ndarray, what: str) -> Pending:
        return Pending(None, what)

    def wait(self, pending: Pending) -> None:
        """Nothing was started: nothing to wait for."""

    def test(self, pending: Pending) -> bool:
        return True

    def broadcast(self, buf: np.ndarray, what: str) -> None:
        """Rank 0's buffer is this one already."""

    def allgather(self, vec: np.ndarray, what: str) -> np.ndarray:
        return np.asarray(vec)[None].copy()

    def barrier(self, what: str) -> None:
        """No other rank to wait for."""

    def duplicate(self) -> "LocalComm":
        return self

    def abort(self, code: int) -> None:
        sys.exit(code)


class MpiComm:
    """MPI_COMM_WORLD (or a duplicate of it) through mpi4py."""

    name = "mpi"

    def __init__(self, comm=None, timeout: float | None = None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = read_timeout() if timeout is None else timeout
        self.seconds = 0.0

    def _finish(self, request, what: str) -> None:
        t0 = time.perf_counter()
        if not self.timeout:
            request.Wait()
        else:
            deadline = t0 + self.timeout
            pause = 0.0
            while not request.Test():
                now = time.perf_counter()
                if now > deadline:
                    raise NetError(f"waited {self.timeout:g} s in {what} for the other ranks ({TIMEOUT_VARIABLE}"
                                   f"={self.timeout:g}): a rank is stuck, slow, or runs a different sequence of steps",
                                   hint=f"raise {TIMEOUT_VARIABLE} if a step can take longer than that")
                time.sleep(pause)
                pause = min(0.001, pause + 0.00005)  # spin first: most collectives finish in microseconds
        self.seconds += time.perf_counter() - t0

    def allreduce(self, buf: np.ndarray, what: str) -> None:
        self.wait(self.start_allreduce(buf, what))

    def start_allreduce(self, buf: np.ndarray, what: str) -> Pending:
        return Pending(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)

    def wait(self, pending: Pending) -> None:
        if pending.request is not None:
            self._finish(pending.request, pending.what)
            pending.request = None

    def test(self, pending: Pending) -> bool:
        """Whether it has finished; each call also lets MPI move it along (overlap needs that)."""
        if pending.request is None:
            return True
        done = pending.request.Test()
        if done:
            pending.request = None
        return done

    def broadcast(self, buf: np.ndarray, what: str) -> None:
        self._finish(self.comm.Ibcast(buf, root=0), what)

    def allgather(self, vec: np.ndarray, what: str) -> np.ndarray:
        vec = np.ascontiguousarray(vec)
        out = np.empty((self.size,) + vec.shape, dtype=vec.dtype)
        self._finish(self.comm.Iallgather(vec, out), what)
        return out

    def barrier(self, what: str) -> None:
        self._finish(self.comm.Ibarrier(), what)

    def duplicate(self) -> "MpiComm":
        """The same ranks on a separate channel: collectives on it never pair with the original's."""
        return MpiComm(self.comm.Dup(), self.timeout)

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # the launcher forwards our output through a pipe and stops reading once it kills the job:
        # a moment first, or a loaded machine can lose the message that says why (seen under pytest)
        time.sleep(ABORT_GRACE)
        self.comm.Abort(code)


    def abort_saying(self, text: str, code: int) -> None:
        """Say why this rank fails (each line tagged with the rank) and stop every rank. An error
        every rank finds (a batch they cannot split, a mistake in the network) is said once, by
        rank 0: it sends a digest of its message to the others, and a rank holding the same one
        stays silent while rank 0's abort ends the job."""
        tagged = "\n".join(f"[rank {self.rank}] {line}" for line in text.splitlines())
        digest = np.array([int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1], dtype=np.int64)
        world = self.MPI.COMM_WORLD  # point-to-point: it pairs with no collective, pending or not
        if self.rank == 0:
            sent = [world.Isend(digest, dest=r, tag=ERROR_TAG) for r in range(1, world.Get_size())]
            print(tagged, file=sys.stderr)
            self.abort(code)
            del sent
            return
        heard = np.zeros(1, dtype=np.int64)
        request = world.Irecv(heard, source=0, tag=ERROR_TAG)
        deadline = time.monotonic() + SAME_ERROR_WAIT
        while not request.Test():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        else:
            if heard[0] == digest[0]:
                time.sleep(SAME_ERROR_WAIT)  # rank 0 has said it and is stopping every rank, this one too
                self.comm.Abort(code)
                return
        print(tagged, file=sys.stderr)
        self.abort(code)


_ACTIVE: list[MpiComm] = []


def active() -> MpiComm | None:
    """The MPI communicator this process trains with, if it has joined one (the command line
    stops every rank through it when this one fails)."""
    return _ACTIVE[0] if _ACTIVE else None


def read_timeout() -> float | None:
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise NetError(f"{TIMEOUT_VARIABLE}={text!r}: give the seconds a rank may wait in one collective, "
                       "a number more than 0")
    return value


def connect(dist: str = "auto") -> LocalComm | MpiComm:
    """The communicator for `--dist auto|mpi|none`: auto takes MPI where a launcher started more
    than one rank, mpi takes it always, none never (and refuses to run as one of many ranks: every
    rank would train the whole model alone and write the same checkpoint)."""
    size, rank = launcher_world()
    if dist == "none":
        if size > 1:
            raise NetError(f"--dist none, but an MPI launcher started this as rank {rank} of {size}: "
                           f"each rank would train alone and overwrite the others' checkpoints",
                           hint="start one process, or drop --dist none to train on all ranks together")
        return LocalComm()
    if dist == "auto" and size <= 1:
        return LocalComm()
    read_timeout()  # a bad value is said before MPI starts
    try:
        import mpi4py
    except ImportError:
        raise NetError(f"--dist {dist}: " + (f"an MPI launcher started {size} ranks, but " if size > 1 else "")
                       + "mpi4py is not installed", hint=f"{INSTALL_MPI} (mpi4py and MPICH)") from None
    mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI (the prefetch thread never does)
    try:
        comm = MpiComm()
    except (ImportError, RuntimeError, OSError) as exc:  # mpi4py is there, the MPI library it loads is not
        reason = [line for line in str(exc).splitlines() if line.strip()]
        raise NetError(f"--dist {dist}: mpi4py cannot load the MPI library"
                       + (f": {reason[-1]}" if reason else f" ({type(exc).__name__})"),
                       hint=f"{INSTALL_MPI} (it brings MPICH's library); or set MPI4PY_LIBMPI to your site's "
                            "libmpi.so") from None
    if size > 1 and comm.size != size:
        raise NetError(f"the MPI launcher started {size} ranks, but MPI here sees {comm.size}: mpi4py is linked to "
                       "another MPI than the mpiexec that started it",
                       hint="use the mpiexec of the MPI mpi4py was built with (python -c 'import mpi4py; "
                            "print(mpi4py.get_config())' names it)")
    _ACTIVE[:] = [comm]
    return comm
