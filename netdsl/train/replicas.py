"""Keeping the ranks' copies of a model the same: the start-up agreement, the start state from
rank 0, batch-norm running statistics averaged, and a check that the copies are bit-identical."""
from __future__ import annotations

import ast
import hashlib
import zlib

import numpy as np

from ..errors import NetError
from ..ir import fingerprint

AGREED = ("network (a hash of the IR)", "parameter shapes", "training images", "test images", "settings")


def _code(text: str) -> int:
    """63 bits of a text's sha256: as an int64 it travels in one allgather with the counts."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def check_same(model, n_train: int, n_test: int, settings: str, comm) -> None:
    """Every rank compiled the same network, with the same parameter shapes, the same data set
    sizes and the same settings; otherwise an error naming the ranks that differ from rank 0."""
    shapes = ";".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in model.state_dict().items())
    mine = np.array([_code(fingerprint(model.net.graph)), _code(shapes), n_train, n_test, _code(settings)],
                    dtype=np.int64)
    every = comm.allgather(mine, "the start-up check that all ranks run the same network")
    for k, what in enumerate(AGREED):
        differ = [r for r in range(comm.size) if every[r, k] != every[0, k]]
        if differ:
            ranks = ", ".join(map(str, differ))
            seen = f" ({every[0, k]:,} on rank 0, {every[differ[0], k]:,} on rank {differ[0]})" if k in (2, 3) else ""
            if what == "settings":  # every rank takes this branch: the texts travel, to name the setting
                seen = _which_setting(settings, differ[0], comm)
            raise NetError(f"rank{'s' if len(differ) > 1 else ''} {ranks} and rank 0 have different {what}{seen}: "
                           f"data-parallel training needs the same on every rank",
                           hint="start every rank with the same .net file, flags and data")


# TrainConfig's fields as the flags that set them, where the name differs
FLAGS = {"bucket_bytes": "--bucket-size", "saves": "--save", "resumes": "--resume"}


def _which_setting(settings: str, other: int, comm) -> str:
    """` (--lr 0.1 on rank 0, 0.05 on rank 1)`: the first setting in which rank `other` differs
    from rank 0, from the settings' texts gathered from every rank."""
    data = np.frombuffer(settings.encode(), dtype=np.uint8)
    lengths = comm.allgather(np.array([len(data)], dtype=np.int64), "the lengths of the ranks' settings")[:, 0]
    padded = np.zeros(int(lengths.max()), dtype=np.uint8)
    padded[:len(data)] = data
    texts = comm.allgather(padded, "the ranks' settings")
    mine, theirs = (_settings(bytes(texts[r, :lengths[r]]).decode()) for r in (0, other))
    for key in sorted(mine.keys() | theirs.keys()):
        if mine.get(key) != theirs.get(key):
            flag = FLAGS.get(key, "--" + key.replace("_", "-"))
            said = [("given" if v else "not given") if isinstance(v, bool) or v is None else v
                    for v in (mine.get(key), theirs.get(key))]
            return f" ({flag} {said[0]} on rank 0, {said[1]} on rank {other})"
    return ""


def _settings(text: str) -> dict:
    """TrainConfig.settings()'s text (a dict's repr) as that dict; {} for anything else."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return value if isinstance(value, dict) else {}


def broadcast_state(model, optimizer, comm) -> None:
    """Parameters, buffers and the optimiser's momentum go out from rank 0: every rank starts
    bit-identical (fresh or resumed), whatever its own seed or files gave it."""
    device, xp = model.device, model.xp
    params = model.parameters()
    has = np.array([name in optimizer.velocity for name in params], dtype=np.int8)
    comm.broadcast(has, "the start state's list of momentum buffers")
    for name, value in model.state_dict().items():
        _broadcast_array(device, xp, value, comm, f"the start state's {name}")
    for (name, w), present in zip(params.items(), has):
        if not present:
            optimizer.velocity.pop(name, None)
            continue
        if name not in optimizer.velocity:
            optimizer.velocity[name] = xp.zeros_like(w)
        _broadcast_array(device, xp, optimizer.velocity[name], comm, f"the start state's momentum of {name}")


def _broadcast_array(device, xp, value, comm, what: str) -> None:
    host = np.ascontiguousarray(device.asnumpy(value))
    comm.broadcast(host, what)
    value[...] = xp.asarray(host)


def average_buffers(model, comm) -> None:
    """Batch norm's running statistics, kept per rank while training without --sync-bn, become
    their mean over the ranks (before every evaluation and checkpoint): every rank then holds the
    same, and a checkpoint holds what every rank saw."""
    if comm.size == 1:
        return
    device, xp = model.device, model.xp
    for name, value in model.buffers().items():
        host = np.ascontiguousarray(device.asnumpy(value), dtype=np.float64)
        comm.allreduce(host, f"the mean of {name} over the ranks")
        value[...] = xp.asarray(host / comm.size, dtype=value.dtype)


def check_identical(model, comm, when: str, buffers: bool = True) -> None:
    """Every rank holds bit-identical parameters (and buffers, unless batch norm's statistics are
    per rank until they are next averaged): a CRC of their bytes compared."""
    crc = 0
    for value in (model.state_dict() if buffers else model.parameters()).values():
        crc = zlib.crc32(np.ascontiguousarray(model.device.asnumpy(value)).tobytes(), crc)
    every = comm.allgather(np.array([crc], dtype=np.int64), f"the replica check {when}")[:, 0]
    differ = [r for r in range(comm.size) if every[r] != every[0]]
    if differ:
        raise NetError(f"{when}: rank{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} hold "
                       f"parameters that differ from rank 0's: the replicas have drifted apart")
