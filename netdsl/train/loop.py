"""Training: minibatch SGD over a data set with a schedule, progress, evaluation, checkpoints."""
from __future__ import annotations

import io
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from pathlib import Path

import numpy as np

from ..errors import NetError
from . import replicas
from .buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from .comm import LocalComm
from .data import Dataset
from .optim import SCHEDULES, SGD
from .shards import eval_plan, train_plan
from .sync_bn import BatchNormSync


@dataclass
class TrainConfig:
    epochs: int = 20
    batch: int = 16          # the global batch: each of N ranks takes batch / N of it
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    seed: int = 0
    save: str | None = None
    resume: str | None = None
    # data-parallel training (ignored on one rank)
    bucket_bytes: int = DEFAULT_BUCKET_BYTES
    overlap: bool = False    # sum each gradient bucket while the backward pass goes on
    sync_bn: bool = False    # batch norm over the global batch instead of each rank's share
    check_replicas: bool = False  # after every step, check that all ranks hold the same bits

    def settings(self) -> str:
        """What every rank must agree on (the start-up check compares it)."""
        agreed = {k: v for k, v in sorted(vars(self).items()) if k not in ("save", "resume")}
        # the paths may differ (each machine its own disk), but not whether there is one: a
        # resume is a broadcast every rank must take part in
        return repr({**agreed, "saves": self.save is not None, "resumes": self.resume is not None})


@dataclass
class TrainResult:
    test_accuracy: float
    train_accuracy: float
    final_loss: float
    seconds: float
    epochs: int  # the epochs the model has now had, a resumed checkpoint's included
    history: list[dict] = field(default_factory=list)  # one entry per epoch trained in this run
    comm_seconds: float = 0.0  # time waiting in collectives across ranks (0 on one rank)
    steps: int = 0             # steps taken in this run


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """The share of `x` the model classifies as `y`."""
    data = Dataset("evaluate", x[:0], y[:0], x, y, 0)
    return _evaluate(model, data, LocalComm(), batch)["accuracy"]


def _evaluate(model, data, comm, batch: int = 256) -> dict:
    """Accuracy (and the mean loss where the trunk ends in softmax) over the whole test set, each
    rank taking its shard and the counts summed: the figure one process gets, exactly. Also
    whether every output was finite: weights that diverged to huge but finite values show here,
    as NaN or inf outputs, before they could be saved as a good state."""
    xp = model.xp
    trunk = model.nodes[model.outputs[0][1]]
    with_loss = trunk.op == "softmax"
    totals = np.zeros(4)  # correct, count, loss sum, non-finite outputs
    for xb, yb in data.test_batches(eval_plan(data.n_test, comm.rank, comm.size, batch)):
        out = model(xb)
        totals[3] += int((~xp.isfinite(out)).any())
        pred = model.device.asnumpy(out.argmax(axis=1))
        totals[0] += int((pred == yb).sum())
        totals[1] += len(yb)
        if with_loss:
            p = model.device.asnumpy(out[xp.arange(len(yb)), xp.asarray(yb)]).astype(np.float64)
            totals[2] += float(-np.log(np.maximum(p, np.finfo(np.float64).tiny)).sum())
    comm.allreduce(totals, "the evaluation's counts")
    count = max(1.0, totals[1])
    return {"accuracy": totals[0] / count, "loss": totals[2] / count if with_loss else None,
            "finite": totals[3] == 0, "count": int(totals[1])}


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


def check_batch_split(batch: int, ranks: int) -> None:
    """The global batch must split into equal shares, one a rank."""
    if batch % ranks:
        lower, higher = batch // ranks * ranks, -(-batch // ranks) * ranks
        raise NetError(f"--batch {batch} does not split over {ranks} ranks: each rank takes an equal share "
                       f"of the global batch ({batch} / {ranks} = {batch / ranks:.4g})",
                       hint=f"use --batch {higher}" + (f" or {lower}" if lower else ""))


class _Quiet(Progress):
    """What ranks other than 0 show: nothing (rank 0 prints for all)."""

    def __init__(self):
        super().__init__(io.StringIO())

    def update(self, text: str, done: bool = False) -> None:
        """Rank 0 shows the progress of all."""


def train(model, data: Dataset, cfg: TrainConfig, progress: Progress | None = None,
          log: Callable[[str], None] | None = None, comm=None) -> TrainResult:
    """Minibatch SGD; with a communicator of N ranks, data-parallel: every rank runs this same
    loop on its share of each global batch of cfg.batch images, and the result is the model one
    process would train, up to the order of floating-point sums."""
    comm = comm or LocalComm()
    chief = comm.rank == 0
    progress = (progress or Progress()) if chief else _Quiet()
    tag = f"[rank {comm.rank}] " if comm.size > 1 else ""  # every rank's warnings say whose they are
    log = log or (lambda s: print(tag + s, file=sys.stderr))
    say = log if chief else (lambda s: None)  # progress and notes come from rank 0 alone
    check_batch_split(cfg.batch, comm.size)
    if cfg.save and chief:
        check_save_path(cfg.save)
    opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    distributed = comm.size > 1
    if distributed:
        replicas.check_same(model, data.n_train, data.n_test, cfg.settings(), comm)
    start_epoch = 0
    last_good = None  # (checkpoint path, epoch) of the last state known to be good
    if cfg.resume:
        start_epoch = _resume(model, opt, cfg, comm, log, say)
        last_good = (cfg.resume, start_epoch)
    buckets = _join_replicas(model, opt, cfg, comm, say) if distributed else None
    schedule = SCHEDULES[cfg.schedule]
    n = data.n_train
    steps_per_epoch = math.ceil(n / cfg.batch)
    total_steps = steps_per_epoch * cfg.epochs
    history = []
    t0 = time.perf_counter()
    loss_value = float("nan")
    steps = 0

    def diverged(what: str) -> NetError:
        kept = (f"; the last good state is {last_good[0]} (after epoch {last_good[1]}), untouched: "
                f"--resume {last_good[0]} continues from it") if last_good else \
            f"; {cfg.save}, which this run has not written yet, is untouched" if cfg.save and Path(cfg.save).exists() \
            else ""
        return NetError(f"{what}: training stopped{kept}", hint="lower --lr, or check the data for extreme values")

    # overflow shows as divergence, said once below, not as numpy's warnings on every step
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(start_epoch, cfg.epochs):
            plan = train_plan(epoch_order(cfg.seed, epoch, n), cfg.batch, comm.rank, comm.size)
            totals = np.zeros(3)  # loss sum, correct, images (this rank's)
            te = time.perf_counter()
            batches = data.train_batches([idx for idx, _ in plan if len(idx)], epoch)
            for b, (idx, count) in enumerate(plan):
                opt.lr = schedule(cfg.lr, opt.steps, total_steps, cfg.warmup_steps)
                if model.bn_sync is not None:
                    model.bn_sync.weight = len(idx) / count
                if len(idx):
                    xb, yb = next(batches)
                    loss_value = model.loss(xb, yb, training=True)
                    if not math.isfinite(loss_value):
                        raise diverged(f"the loss became {loss_value} at step {opt.steps + 1} "
                                       f"(epoch {epoch + 1}, batch {b + 1})")
                    if buckets is not None:
                        buckets.begin(len(idx) / count)
                    model.backward(on_ready=buckets.ready if buckets is not None else None)
                    pred = model.device.asnumpy(model.forward_outputs_argmax())
                    totals += (loss_value * len(idx), int((pred == yb).sum()), len(idx))
                else:  # fewer images in the last batch than ranks: this rank adds nothing, but takes part
                    buckets.begin(0.0)
                    if model.bn_sync is not None:
                        model.bn_sync.join(model)
                opt.step(buckets.finish() if buckets is not None else None)
                steps += 1
                if cfg.check_replicas and distributed:
                    replicas.check_identical(model, comm, f"after step {opt.steps}", buffers=model.bn_sync is not None)
                seen = min(n, (b + 1) * cfg.batch)
                rate = seen / (time.perf_counter() - te)
                shown = max(1.0, totals[2])
                progress.update(f"epoch {epoch + 1}/{cfg.epochs} {_bar(seen / n)} {seen}/{n} "
                                f"loss {totals[0] / shown:.4f} acc {100 * totals[1] / shown:.1f}% {rate:,.0f} img/s "
                                f"lr {opt.lr:.4g}")
            comm.allreduce(totals, "the epoch's training loss and accuracy")
            if not model.bn_sync:
                replicas.average_buffers(model, comm)
            result = _evaluate(model, data, comm)
            if not result["finite"]:
                raise diverged(f"after epoch {epoch + 1} the weights give NaN or inf outputs")
            test_acc = result["accuracy"]
            entry = {"epoch": epoch + 1, "loss": totals[0] / totals[2], "train_accuracy": totals[1] / totals[2],
                     "test_accuracy": test_acc, "test_loss": result["loss"], "seconds": time.perf_counter() - te}
            history.append(entry)
            progress.update(f"epoch {epoch + 1}/{cfg.epochs} {_bar(1)} loss {entry['loss']:.4f} "
                            f"train {100 * entry['train_accuracy']:.1f}% test {100 * test_acc:.1f}% "
                            f"({entry['seconds']:.1f} s, {n / entry['seconds']:,.0f} img/s)", done=True)
            if cfg.save:
                comm.barrier("the barrier before rank 0 writes the checkpoint")
                if chief:
                    model.save(cfg.save, opt, {"epoch": epoch + 1, "step": opt.steps, "test_accuracy": test_acc,
                                               "world_size": comm.size})
                last_good = (cfg.save, epoch + 1)
    seconds = time.perf_counter() - t0
    if history:
        test_acc, train_acc = history[-1]["test_accuracy"], history[-1]["train_accuracy"]
    else:
        test_acc, train_acc = _evaluate(model, data, comm)["accuracy"], float("nan")
    return TrainResult(test_acc, train_acc, loss_value, seconds, max(start_epoch, cfg.epochs if history else 0),
                       history, comm.seconds, steps)


def _join_replicas(model, opt, cfg: TrainConfig, comm, say) -> GradientBuckets:
    """The start of data-parallel training: every rank takes rank 0's state, its own dropout
    stream, batch norm over the global batch or a word that it is per rank; the gradient buckets."""
    replicas.broadcast_state(model, opt, comm)  # every rank starts from rank 0's bits
    model.reseed(model.seed + 1 + 7919 * comm.rank)  # dropout: each rank its own masks (rank 0: one process's)
    if cfg.sync_bn:
        model.bn_sync = BatchNormSync(comm, model.device)
    elif any(n.op == "bn" for n in model.nodes):
        say(f"batch norm: statistics per rank ({cfg.batch // comm.size} images each), running statistics "
            f"averaged over the {comm.size} ranks before every evaluation and checkpoint (--sync-bn: over "
            f"the global batch of {cfg.batch})")
    return GradientBuckets(model, comm, cfg.bucket_bytes, cfg.overlap)


def _resume(model, opt, cfg: TrainConfig, comm, log, say) -> int:
    """Rank 0 reads the checkpoint (the other ranks get its state by broadcast); every rank
    learns the epoch, the step and the number of ranks that wrote it. Returns the epoch."""
    info_vec = np.zeros(3, dtype=np.int64)  # epoch, step, world size it was written at
    if comm.rank == 0:
        info = model.load(cfg.resume, opt, warn=log)
        saved_world = info.get("world_size", 1)
        info_vec[:] = (_whole(info.get("epoch", 0), cfg.resume, "epoch"), _whole(info.get("step", 0), cfg.resume, "step"),
                       _whole(saved_world, cfg.resume, "world_size") or 1)
    comm.broadcast(info_vec, "the checkpoint's epoch and step from rank 0")
    start_epoch, opt.steps, saved_world = (int(v) for v in info_vec)
    if start_epoch >= cfg.epochs:
        say(f"{cfg.resume} already holds {start_epoch} epoch(s), and --epochs is {cfg.epochs}: nothing to train"
            f" (raise --epochs to go on)")
    else:
        say(f"resumed from {cfg.resume} after epoch {start_epoch}")
    if saved_world != comm.size:
        say(f"{cfg.resume} was written by {saved_world} rank{'s' if saved_world != 1 else ''}, this run has "
            f"{comm.size}: training continues from its state, with the same global batch, but not bit for bit as "
            f"{saved_world} rank{'s' if saved_world != 1 else ''} would have (floating-point sums run in another order"
            + (", and batch norm sees other per-rank batches" if not cfg.sync_bn and
               any(n.op == "bn" for n in model.nodes) else "") + ")")
    return start_epoch


def _whole(value, path: str, key: str) -> int:
    """A count from a checkpoint's info: a whole number, 0 or more, or the file is refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetError(f"{path}: its info says {key} {value!r}, not a whole number of {key}s")
    return value
