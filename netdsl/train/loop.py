"""Training: minibatch SGD over a data set with a schedule, progress, evaluation, checkpoints."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from pathlib import Path

import numpy as np

from ..errors import NetError
from .data import Dataset
from .optim import SCHEDULES, SGD


@dataclass
class TrainConfig:
    epochs: int = 20
    batch: int = 16
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    seed: int = 0
    save: str | None = None
    resume: str | None = None


@dataclass
class TrainResult:
    test_accuracy: float
    train_accuracy: float
    final_loss: float
    seconds: float
    epochs: int  # the epochs the model has now had, a resumed checkpoint's included
    history: list[dict] = field(default_factory=list)  # one entry per epoch trained in this run


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """The share of `x` the model classifies as `y`."""
    return _evaluate(model, x, y, batch)[0]


def _evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, bool]:
    """(accuracy, whether every output was finite): weights that diverged to huge but finite
    values show here, as NaN or inf outputs, before they could be saved as a good state."""
    correct = 0
    finite = True
    xp = model.xp
    for lo in range(0, len(x), batch):
        out = model(x[lo:lo + batch])
        finite = finite and bool(xp.isfinite(out).all())
        pred = model.device.asnumpy(out.argmax(axis=1))
        correct += int((pred == y[lo:lo + batch]).sum())
    return correct / max(1, len(x)), finite


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Epoch `epoch`'s shuffle of n examples, drawn from (seed, epoch) alone: a resumed run takes
    the same order as an uninterrupted one without replaying the epochs before it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def check_save_path(path: str, source: str | None = None) -> None:
    """Before the first epoch: `--save` must name a file netdsl may replace (absent, or a netdsl
    checkpoint: never the network's own .net file or anything else) in a folder it can write."""
    from .. import checkpoint
    from ..files import check_writable
    p = Path(path)
    if p.exists() and not p.is_dir():
        try:
            with checkpoint.Checkpoint(p) as ck:
                ck.info  # a readable header and metadata: a checkpoint netdsl may replace
        except NetError:
            raise NetError(f"--save {path}: that file is not a netdsl checkpoint, and saving would replace it",
                           hint="name a new file, e.g. --save run.safetensors") from None
    check_writable(p, "--save")


class Progress:
    """One updating line on a terminal; one line per epoch elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def update(self, text: str, done: bool = False) -> None:
        if self.tty:
            now = time.perf_counter()
            if done or now - self._last > 0.1:
                self.stream.write("\r\x1b[2K" + text + ("\n" if done else ""))
                self.stream.flush()
                self._last = now
        elif done:
            self.stream.write(text + "\n")
            self.stream.flush()


def _bar(frac: float, width: int = 24) -> str:
    filled = int(frac * width)
    return "[" + "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1) + "]"


def train(model, data: Dataset, cfg: TrainConfig, progress: Progress | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    progress = progress or Progress()
    log = log or (lambda s: print(s, file=sys.stderr))
    if cfg.save:
        check_save_path(cfg.save)
    opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start_epoch = 0
    last_good = None  # (checkpoint path, epoch) of the last state known to be good
    if cfg.resume:
        info = model.load(cfg.resume, opt, warn=log)
        start_epoch = _whole(info.get("epoch", 0), cfg.resume, "epoch")
        opt.steps = _whole(info.get("step", 0), cfg.resume, "step")
        last_good = (cfg.resume, start_epoch)
        if start_epoch >= cfg.epochs:
            log(f"{cfg.resume} already holds {start_epoch} epoch(s), and --epochs is {cfg.epochs}: nothing to train"
                f" (raise --epochs to go on)")
        else:
            log(f"resumed from {cfg.resume} after epoch {start_epoch}")
    schedule = SCHEDULES[cfg.schedule]
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / cfg.batch)
    total_steps = steps_per_epoch * cfg.epochs
    history = []
    t0 = time.perf_counter()
    loss_value = float("nan")

    def diverged(what: str) -> NetError:
        kept = (f"; the last good state is {last_good[0]} (after epoch {last_good[1]}), untouched: "
                f"--resume {last_good[0]} continues from it") if last_good else \
            f"; {cfg.save}, which this run has not written yet, is untouched" if cfg.save and Path(cfg.save).exists() \
            else ""
        return NetError(f"{what}: training stopped{kept}", hint="lower --lr, or check the data for extreme values")

    # overflow shows as divergence, said once below, not as numpy's warnings on every step
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(start_epoch, cfg.epochs):
            order = epoch_order(cfg.seed, epoch, n)
            seen = correct = 0
            loss_sum = 0.0
            te = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch:(b + 1) * cfg.batch]
                xb, yb = data.x_train[idx], data.y_train[idx]
                opt.lr = schedule(cfg.lr, opt.steps, total_steps, cfg.warmup_steps)
                loss_value = model.loss(xb, yb, training=True)
                if not math.isfinite(loss_value):
                    raise diverged(f"the loss became {loss_value} at step {opt.steps + 1} "
                                   f"(epoch {epoch + 1}, batch {b + 1})")
                model.backward()
                opt.step()
                pred = model.device.asnumpy(model.forward_outputs_argmax())
                correct += int((pred == yb).sum())
                seen += len(idx)
                loss_sum += loss_value * len(idx)
                rate = seen / (time.perf_counter() - te)
                progress.update(f"epoch {epoch + 1}/{cfg.epochs} {_bar(seen / n)} {seen}/{n} "
                                f"loss {loss_sum / seen:.4f} acc {100 * correct / seen:.1f}% {rate:,.0f} img/s "
                                f"lr {opt.lr:.4g}")
            test_acc, finite = _evaluate(model, data.x_test, data.y_test)
            if not finite:
                raise diverged(f"after epoch {epoch + 1} the weights give NaN or inf outputs")
            entry = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                     "test_accuracy": test_acc, "seconds": time.perf_counter() - te}
            history.append(entry)
            progress.update(f"epoch {epoch + 1}/{cfg.epochs} {_bar(1)} loss {entry['loss']:.4f} "
                            f"train {100 * entry['train_accuracy']:.1f}% test {100 * test_acc:.1f}% "
                            f"({entry['seconds']:.1f} s, {n / entry['seconds']:,.0f} img/s)", done=True)
            if cfg.save:
                model.save(cfg.save, opt, {"epoch": epoch + 1, "step": opt.steps, "test_accuracy": test_acc})
                last_good = (cfg.save, epoch + 1)
    seconds = time.perf_counter() - t0
    test_acc = history[-1]["test_accuracy"] if history else evaluate(model, data.x_test, data.y_test)
    train_acc = history[-1]["train_accuracy"] if history else float("nan")
    return TrainResult(test_acc, train_acc, loss_value, seconds, max(start_epoch, cfg.epochs if history else 0),
                       history)


def _whole(value, path: str, key: str) -> int:
    """A count from a checkpoint's info: a whole number, 0 or more, or the file is refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetError(f"{path}: its info says {key} {value!r}, not a whole number of {key}s")
    return value
