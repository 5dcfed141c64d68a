"""The run log: one training run's record, as JSON lines, written by train/ and read by views/.

    {"kind": "run", "format": "netdsl-runlog-1", "network": ..., "settings": ..., ...}   the header
    {"kind": "step", "epoch": 1, "step": 50, "images": 800, "loss": 0.61, ...}          every N steps
    {"kind": "epoch", "epoch": 1, "step": 90, "loss": 0.42, "test_accuracy": 0.93, ...} every epoch
    {"kind": "resume", "from_epoch": 1, "from_step": 90, "settings": ..., ...}          a --resume

JSON lines rather than CSV: the header holds structured values (the network's source, the command
line, the machine) that CSV would push into a side file or comments; a missing figure is null, not
an empty string; and a row cut short by a killed run is always invalid JSON (a cut CSV row such as
`0.12` of `0.1234` still parses), so a reader can tell a cut row from a short one. Each row is one
write followed by a flush: a run stopped at any moment leaves every row before the last whole.

A resume appends to the same log, so one run is one log. Rows written after the checkpoint the run
resumed from (work a killed run lost) are superseded by the resume: `read` drops them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import NetError
from .files import check_writable, os_error, write_atomic

FORMAT = "netdsl-runlog-1"
SUFFIX = ".log.jsonl"
MAX_LOG_BYTES = 256 << 20  # a run logging every step for a year stays far below this


def beside(checkpoint: str) -> str | None:
    """The default log of a run saving to `checkpoint`: run.safetensors -> run.log.jsonl (None for
    a path with no file name, such as `.`: the checkpoint itself is refused, naming it)."""
    p = Path(checkpoint)
    if not p.name or p.is_dir():
        return None
    return str(p.with_name(p.stem + SUFFIX) if p.suffix else p.with_name(p.name + SUFFIX))


def is_runlog(path: str | os.PathLike) -> bool:
    """Whether `path` starts with a netdsl run log's header (a file netdsl may replace)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        head = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and head.get("format") == FORMAT


def check_log_path(path: str, flag: str, appending: bool) -> None:
    """Before the first epoch: the log must be a file netdsl may write (absent, or a netdsl run
    log: never a checkpoint, a network or anything else) in a folder it can write."""
    p = Path(path)
    if p.exists() and not p.is_dir() and not is_runlog(p):
        raise NetError(f"{flag} {path}: that file is not a netdsl run log, and the run would "
                       f"{'append to' if appending else 'replace'} it", hint=f"name a new file, e.g. {flag} run{SUFFIX}")
    check_writable(p, flag)


class Writer:
    """Appends rows to a run log, each one whole on disk before the next step begins."""

    def __init__(self, path: str, header: Mapping[str, Any], resume: Mapping[str, Any] | None = None):
        """A new log (replacing an old run's) with `header`; or, with `resume`, the same run
        continued: the record is appended to the log already there (a new one if there is none)."""
        self.path = path
        p = Path(path)
        if resume is not None and p.exists():
            _drop_cut_row(p)
            self._file = open(p, "a", encoding="utf-8")
            self.row({"kind": "resume", **resume})
        else:
            first = {"kind": "run", "format": FORMAT, **header}
            if resume is not None:
                first["resumed_without_log"] = dict(resume)
            write_atomic(p, (json.dumps(first, default=_plain) + "\n").encode())
            self._file = open(p, "a", encoding="utf-8")

    def row(self, record: Mapping[str, Any]) -> None:
        try:
            self._file.write(json.dumps(record, default=_plain) + "\n")
            self._file.flush()
        except OSError as exc:
            raise os_error(exc, "write", self.path) from None

    def close(self) -> None:
        self._file.close()


def _plain(value):
    """numpy scalars and tuples as JSON's own values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def _drop_cut_row(p: Path) -> None:
    """A run killed mid-write leaves a last line without its newline: cut it off before appending,
    so the rows after it stay readable."""
    with open(p, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


@dataclass
class Run:
    """A run log read back: its header, its resumes, its rows by kind, and what the reader had to say."""
    path: str
    header: dict[str, Any]
    resumes: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings in force at the end (a resume may have overridden some)."""
        merged = dict(self.header.get("settings", {}))
        for r in self.resumes:
            merged.update(r.get("settings", {}))
        return merged

    @property
    def network(self) -> dict[str, Any]:
        return self.header.get("network", {})

    @property
    def seconds(self) -> float:
        return float(sum(e.get("seconds") or 0.0 for e in self.epochs))


def read(path: str | os.PathLike) -> Run:
    """A run log, checked line by line. A last row cut short (a killed run) is left out with a
    note; anything else that is not a run log's row is refused, naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise NetError(f"{path}: no such file" if not p.exists() else f"{path}: not a file, so not a run log")
    try:
        size = p.stat().st_size
        if size > MAX_LOG_BYTES:
            raise NetError(f"{path}: {size:,} bytes, more than a run log holds ({MAX_LOG_BYTES >> 20} MiB)")
        raw = p.read_bytes()
    except OSError as exc:
        raise os_error(exc, "read", path) from None
    lines = raw.split(b"\n")
    complete = raw.endswith(b"\n")
    if complete:
        lines = lines[:-1]
    run = None
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if last and run is not None and not complete:
                run.notes.append(f"{path}: its last row (line {number}) is cut short, as a run stopped while "
                                 f"writing it leaves it: read up to line {number - 1}")
                break
            if run is None:
                raise NetError(f"{path} is not a netdsl run log (line 1 is not a JSON record)",
                               hint="netdsl train writes one beside its --save checkpoint, or to --log PATH") from None
            raise NetError(f"{path}:{number}: not a JSON record: the log is damaged") from None
        if run is None:
            if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("kind") != "run":
                raise NetError(f"{path} is not a netdsl run log (no '{FORMAT}' header on line 1)",
                               hint="netdsl train writes one beside its --save checkpoint, or to --log PATH")
            run = Run(str(path), record)
            continue
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind == "epoch":
            run.epochs.append(record)
        elif kind == "step":
            run.steps.append(record)
        elif kind == "resume":
            _supersede(run, record)
            run.resumes.append(record)
        else:
            raise NetError(f"{path}:{number}: a record of kind {kind!r}, not one a run log holds")
    if run is None:
        raise NetError(f"{path} is empty, not a netdsl run log")
    return run


def _supersede(run: Run, resume: Mapping[str, Any]) -> None:
    """Rows of work after the checkpoint a resume started from were lost with the run that wrote
    them: the resumed run trains those steps again, and its rows are the ones that count."""
    epoch, step = resume.get("from_epoch", 0), resume.get("from_step", 0)
    run.epochs[:] = [e for e in run.epochs if e.get("epoch", 0) <= epoch]
    run.steps[:] = [s for s in run.steps if s.get("step", 0) <= step]
