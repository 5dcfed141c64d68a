"""The training settings a checkpoint keeps, and what a resume does with them.

A checkpoint stores the settings its run was started with (SETTINGS). A resume continues with
them: a setting the user did not give comes from the checkpoint, and one the user gave that
differs is an override, said in a line that tells what it changes. `epochs` is the run's planned
total: the learning-rate schedule is defined over it, so a run planned for 4 epochs, stopped
after 2 and resumed, takes the same steps as 4 straight, bit for bit.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .optim import SCHEDULES

SETTINGS = ("epochs", "batch", "lr", "momentum", "weight_decay", "schedule", "warmup_steps", "seed")
_SCHEDULE_NAMES = tuple(SCHEDULES)


def stored(cfg) -> dict[str, Any]:
    """What a checkpoint keeps of `cfg`."""
    return {k: getattr(cfg, k) for k in SETTINGS}


def to_vector(settings: dict[str, Any] | None) -> np.ndarray:
    """Settings as float64 numbers, to broadcast from the rank that read the checkpoint (counts and
    rates are exact in float64; the schedule goes by its index). All zero: none were stored."""
    vec = np.zeros(len(SETTINGS) + 1)
    if settings and all(k in settings for k in SETTINGS) and settings["schedule"] in _SCHEDULE_NAMES:
        vec[0] = 1
        for i, k in enumerate(SETTINGS, 1):
            vec[i] = _SCHEDULE_NAMES.index(settings[k]) if k == "schedule" else settings[k]
    return vec


def from_vector(vec: np.ndarray) -> dict[str, Any] | None:
    if not vec[0]:
        return None
    out = {}
    for i, k in enumerate(SETTINGS, 1):
        out[k] = _SCHEDULE_NAMES[int(vec[i])] if k == "schedule" else \
            float(vec[i]) if k in ("lr", "momentum", "weight_decay") else int(vec[i])
    return out


def resolve(cfg, saved: dict[str, Any] | None, step: int, epoch: int, n_train: int, source: str):
    """(the settings to continue with, lines saying every override). `cfg.given` names the
    settings the user gave (None: all of them, as through the Python API)."""
    if saved is None:
        return cfg, [f"{source} holds no training settings (written before netdsl kept them): "
                     f"continuing with this run's"]
    given = set(SETTINGS) if cfg.given is None else set(cfg.given)
    chosen = {k: (getattr(cfg, k) if k in given else saved[k]) for k in SETTINGS}
    resolved = dataclasses.replace(cfg, **chosen)
    notes = [_explain(k, saved, resolved, step, epoch, n_train, source)
             for k in SETTINGS if chosen[k] != saved[k]]
    return resolved, notes


def steps_per_epoch(n_train: int, batch: int) -> int:
    return math.ceil(n_train / batch)


def _explain(key: str, saved: dict[str, Any], new, step: int, epoch: int, n_train: int, source: str) -> str:
    flag = "--" + key.replace("_", "-")
    head = f"{flag} {getattr(new, key)} overrides {saved[key]} from {source}"
    if key in ("epochs", "lr", "schedule", "warmup_steps"):
        old_steps = steps_per_epoch(n_train, saved["batch"]) * saved["epochs"]
        new_steps = steps_per_epoch(n_train, new.batch) * new.epochs
        before = SCHEDULES[saved["schedule"]](saved["lr"], step, old_steps, saved["warmup_steps"])
        after = SCHEDULES[new.schedule](new.lr, new_step(step, epoch, saved["batch"], new.batch, n_train),
                                        new_steps, new.warmup_steps)
        what = {"epochs": f"the run's planned total; the {new.schedule} schedule now spans {new.epochs} epochs",
                "lr": "the peak learning rate", "schedule": "the learning-rate schedule",
                "warmup_steps": "the warm-up"}[key]
        return f"{head}: {what}; the learning rate from here is {after:.4g} (it would have been {before:.4g})"
    if key == "batch":
        return (f"{head}: {steps_per_epoch(n_train, new.batch)} steps an epoch instead of "
                f"{steps_per_epoch(n_train, saved['batch'])}; the schedule goes on from the start of epoch {epoch + 1}")
    if key == "seed":
        return f"{head}: the epochs from here are shuffled in another order (the test split does not depend on it)"
    return f"{head}: it applies from the next step"


def new_step(step: int, epoch: int, old_batch: int, batch: int, n_train: int) -> int:
    """The schedule's step counter on resuming: the checkpoint's own, or, when the batch changed,
    the start of the epoch counted in the new batch's steps."""
    return step if old_batch == batch else epoch * steps_per_epoch(n_train, batch)


def describe(cfg, start_epoch: int, stop_epoch: int, from_checkpoint: set[str]) -> str:
    """The settings in force, as the first line of a run says them."""
    def mark(k: str) -> str:
        return "*" if k in from_checkpoint else ""
    span = f"epochs {start_epoch + 1}-{stop_epoch} of {cfg.epochs}" if (start_epoch, stop_epoch) != (0, cfg.epochs) \
        else f"{cfg.epochs} epochs"
    schedule = {"cosine": f"cosine from {cfg.lr:g} to 0 over {cfg.epochs} epochs",
                "step": f"step: {cfg.lr:g}, /10 at 50% and 75% of {cfg.epochs} epochs",
                "constant": f"constant {cfg.lr:g}"}[cfg.schedule]
    warm = f", warm-up {cfg.warmup_steps} steps{mark('warmup_steps')}" if cfg.warmup_steps else ""
    lr_mark = "*" if {"lr", "schedule"} & from_checkpoint else ""
    text = (f"settings: {span}{mark('epochs')}, batch {cfg.batch}{mark('batch')}, lr {schedule}{lr_mark}"
            f"{warm}, momentum {cfg.momentum:g}{mark('momentum')}, weight decay "
            f"{cfg.weight_decay:g}{mark('weight_decay')}, seed {cfg.seed}{mark('seed')}")
    return text + ("  (* from the checkpoint)" if from_checkpoint else "")
