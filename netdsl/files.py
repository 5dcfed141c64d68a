"""Files netdsl reads and writes for a user.

Reading: a user's file is read up to a bound (`read_bounded`), so `/dev/zero` or a 50 MB file
named by mistake is refused at once, never read whole.

Writing: every output (a diagram, a checkpoint, an exported model) is written under a temporary
name in the target's folder, flushed to disk, then renamed over the target: an interrupted or
failed write leaves the file the user had untouched. A temporary left by a killed run is removed
by the next write to the same target. The operating system's refusals (permission, a read-only
or full disk, a folder where a file should be) are the user's to fix: NetErrors naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import NetError


def os_error(exc: OSError, doing: str, path: str | os.PathLike) -> NetError:
    """An OSError as the user's problem: what was being done, to which path, and why not."""
    reason = exc.strerror or str(exc)
    hints = {errno.ENOSPC: "the disk is full", errno.EROFS: "that file system is read-only",
             errno.EACCES: "you lack permission there", errno.EISDIR: "a folder has that name",
             errno.ENOTDIR: "part of the path is a file, not a folder"}
    return NetError(f"cannot {doing} {path}: {reason}", hint=hints.get(exc.errno))


def read_bounded(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is a NetError."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise NetError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise NetError(f"{path} is a directory, not {what}") from None
    except OSError as exc:
        raise os_error(exc, "read", path) from None
    if len(data) > limit:
        raise NetError(f"{path} is larger than {limit // 2**20} MiB: too large for {what}",
                       hint="is it the right file?")
    return data


def _check_folders(path: str | os.PathLike, target: Path, doing: str) -> None:
    """A path that runs through a file (`notes.txt/out.svg`) is refused by that file's name."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NetError(f"cannot {doing} {path}: {parent} is a file, not a folder")
            return


def read_text(path: str | os.PathLike, limit: int, what: str) -> str:
    """A user's text file (a prototxt, a cfg): bounded as read_bounded, UTF-8 or a NetError."""
    data = read_bounded(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NetError(f"{path} is not UTF-8 text, so not {what}") from None


def _temporaries(target: Path) -> list[Path]:
    return list(target.parent.glob(f".{target.name}.*.tmp"))


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically, with the permissions an ordinary new file gets."""
    target = Path(path)
    if target.is_dir():
        raise NetError(f"cannot write {path}: it is a folder", hint="name a file inside it")
    _check_folders(path, target, "write")
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in _temporaries(target):  # what a killed earlier write left behind
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the user's file is an ordinary one
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise os_error(exc, "write", path) from None
    except BaseException:
        _remove(tmp)
        raise
    return target


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Fail now, naming the flag and the path, if write_atomic could not write `path` later."""
    target = Path(path)
    if target.is_dir():
        raise NetError(f"{flag} {path}: it is a folder", hint="name a file inside it")
    try:
        _check_folders(path, target, "write")
    except NetError as err:
        raise NetError(f"{flag} {path}: " + err.message.split(": ", 1)[1]) from None
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        err = os_error(exc, "write", path)
        raise NetError(f"{flag} {path}: " + err.message.split(": ", 1)[1], hint=err.hint) from None


def _remove(tmp: str | None) -> None:
    if tmp and os.path.exists(tmp):
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            os.unlink(tmp)
