"""Training: minibatch SGD over a data set with a schedule, progress, evaluation, checkpoints."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from pathlib import Path

import numpy as np

from .. import checkpoint, runlog
from ..backend.cpu.machine import cpu_model
from ..errors import NetError
from . import fit, replicas, settings
from .buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from .comm import LocalComm
from .data import Dataset
from .optim import SCHEDULES, SGD
from .progress import Progress, Silent
from .shards import eval_plan, train_plan
from .sync_bn import BatchNormSync


@dataclass
class TrainConfig:
    epochs: int = 20         # the run's planned total: the schedule spans it, across resumes
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
    stop_after: int | None = None  # stop after this epoch; a --resume goes on to `epochs` on the same schedule
    # on --resume, the settings (train/settings.py SETTINGS) the user gave; the others come from
    # the checkpoint. None: all of them were given (the Python API's TrainConfig says everything)
    given: tuple[str, ...] | None = None
    other_network: bool = False  # resume from a checkpoint of another network whose tensors fit
    log: str | None = None   # the run log (runlog.py): rows per epoch and every `log_every` steps
    log_every: int = 50
    command: tuple[str, ...] = ()  # the command line, for the run log's header

    def settings(self) -> str:
        """What every rank must agree on (the start-up check compares it)."""
        agreed = {k: v for k, v in sorted(vars(self).items()) if k not in ("save", "resume", "log", "command")}
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
    step_rows: list[dict] = field(default_factory=list)  # the rows logged every cfg.log_every steps
    log: str | None = None     # the run log written, if any
    settings: dict = field(default_factory=dict)  # the settings trained with (a resume's included)


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


def check_batch_split(batch: int, ranks: int) -> None:
    """The global batch must split into equal shares, one a rank."""
    if batch % ranks:
        lower, higher = batch // ranks * ranks, -(-batch // ranks) * ranks
        raise NetError(f"--batch {batch} does not split over {ranks} ranks: each rank takes an equal share "
                       f"of the global batch ({batch} / {ranks} = {batch / ranks:.4g})",
                       hint=f"use --batch {higher}" + (f" or {lower}" if lower else ""))


def train(model, data: Dataset, cfg: TrainConfig, progress: Progress | None = None,
          log: Callable[[str], None] | None = None, comm=None) -> TrainResult:
    """Minibatch SGD; with a communicator of N ranks, data-parallel: every rank runs this same
    loop on its share of each global batch of cfg.batch images, and the result is the model one
    process would train, up to the order of floating-point sums. Every rank takes every step,
    the empty ones included (see _Run.join_empty_shard): each step's collectives need them all."""
    run = _Run(model, data, cfg, comm or LocalComm(), progress, log)
    # overflow shows as divergence, said once (_Run.diverged), not as numpy's warnings every step
    with np.errstate(over="ignore", invalid="ignore"), run:
        for epoch in range(run.start_epoch, run.stop_epoch):
            plan = train_plan(epoch_order(run.cfg.seed, epoch, data.n_train), run.cfg.batch, run.comm.rank,
                              run.comm.size)
            run.begin_epoch(epoch)
            batches = data.train_batches([idx for idx, _ in plan if len(idx)], epoch)
            for b, (idx, count) in enumerate(plan):
                run.set_learning_rate()
                if len(idx):
                    run.step(next(batches), len(idx) / count, epoch, b)
                else:
                    run.join_empty_shard()
                run.progress(epoch, b)
            run.end_epoch(epoch)
    return run.result()


class _Run:
    """One call of train(): the state its steps share, and the steps by name."""

    def __init__(self, model, data, cfg: TrainConfig, comm, progress: Progress | None, log):
        self.model, self.data, self.comm = model, data, comm
        self.chief = comm.rank == 0
        self.show = (progress or Progress()) if self.chief else Silent()
        tag = f"[rank {comm.rank}] " if comm.size > 1 else ""  # every rank's warnings say whose they are
        self.log = log or (lambda s: print(tag + s, file=sys.stderr))
        self.say = self.log if self.chief else (lambda s: None)  # notes come from rank 0 alone
        check_batch_split(cfg.batch, comm.size)
        if self.chief:
            if cfg.save:
                check_save_path(cfg.save)
            if cfg.log:
                runlog.check_log_path(cfg.log, "--log", appending=cfg.resume is not None)
        self.opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.distributed = comm.size > 1
        if self.distributed:
            replicas.check_same(model, data.n_train, data.n_test, cfg.settings(), comm)
        self.cfg, self.start_epoch, self.last_good = cfg, 0, None  # last_good: (checkpoint, epoch) known good
        self.overrides: list[str] = []
        self.from_checkpoint: set[str] = set()
        if cfg.resume:
            self.start_epoch = self._resume()
            self.last_good = (cfg.resume, self.start_epoch)
        self.buckets = _join_replicas(model, self.opt, self.cfg, comm, self.say) if self.distributed else None
        self.schedule = SCHEDULES[self.cfg.schedule]
        self.steps_per_epoch = settings.steps_per_epoch(data.n_train, self.cfg.batch)
        self.total_steps = self.steps_per_epoch * self.cfg.epochs  # the schedule spans the planned total
        self.stop_epoch = min(self.cfg.epochs, self.cfg.stop_after or self.cfg.epochs)
        self.history: list[dict] = []
        self.step_rows: list[dict] = []
        self.loss_value = float("nan")
        self.steps = 0
        self.show.note(settings.describe(self.cfg, self.start_epoch, self.stop_epoch, self.from_checkpoint))
        self.writer = self._open_log() if self.chief and self.cfg.log else None
        self.t0 = time.perf_counter()

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *exc) -> None:
        self.show.close()
        if self.writer is not None:
            self.writer.close()

    # the steps -----------------------------------------------------------------------------------

    def begin_epoch(self, epoch: int) -> None:
        self.totals = np.zeros(3)  # loss sum, correct, images (this rank's)
        self.epoch_start = self.last_step_end = time.perf_counter()
        self.show.start(epoch + 1, self.cfg.epochs, self.data.n_train)

    def set_learning_rate(self) -> None:
        self.opt.lr = self.schedule(self.cfg.lr, self.opt.steps, self.total_steps, self.cfg.warmup_steps)

    def step(self, batch, share: float, epoch: int, b: int) -> None:
        """Forward, loss, backward (gradients summed across ranks in buckets) and the update of one
        batch; `share`: this rank's images over the global batch's."""
        model, buckets = self.model, self.buckets
        if model.bn_sync is not None:
            model.bn_sync.weight = share
        xb, yb = batch
        self.loss_value = model.loss(xb, yb, training=True)
        if not math.isfinite(self.loss_value):
            raise self.diverged(f"the loss became {self.loss_value} at step {self.opt.steps + 1} "
                                f"(epoch {epoch + 1}, batch {b + 1})")
        if buckets is not None:
            buckets.begin(share)
        model.backward(on_ready=buckets.ready if buckets is not None else None)
        pred = model.device.asnumpy(model.forward_outputs_argmax())
        self.totals += (self.loss_value * len(yb), int((pred == yb).sum()), len(yb))
        self._update()

    def join_empty_shard(self) -> None:
        """Fewer images in the last batch than ranks leave this rank none. It still takes the step:
        the other ranks sum their gradients (and, with --sync-bn, batch-norm statistics) with every
        rank, and a collective waits for all, so this one joins each with a zero share."""
        if self.model.bn_sync is not None:
            self.model.bn_sync.weight = 0.0
        self.buckets.begin(0.0)
        if self.model.bn_sync is not None:
            self.model.bn_sync.join(self.model)
        self._update()

    def _update(self) -> None:
        self.opt.step(self.buckets.finish() if self.buckets is not None else None)
        self.steps += 1
        if self.cfg.check_replicas and self.distributed:
            replicas.check_identical(self.model, self.comm, f"after step {self.opt.steps}",
                                     buffers=self.model.bn_sync is not None)

    def progress(self, epoch: int, b: int) -> None:
        """The running figures of the epoch (this rank's share) to the display and, every
        cfg.log_every steps, to the run log."""
        n = self.data.n_train
        now = time.perf_counter()
        seen = min(n, (b + 1) * self.cfg.batch)
        shown = max(1.0, self.totals[2])
        loss, accuracy = self.totals[0] / shown, self.totals[1] / shown
        remaining = (self.stop_epoch - epoch) * self.steps_per_epoch - (b + 1)
        eta = (now - self.t0) / self.steps * remaining
        self.show.step(seen, n, loss, accuracy, self.opt.lr, seen / (now - self.epoch_start), eta)
        if self.cfg.log_every and self.opt.steps % self.cfg.log_every == 0:
            step_seconds = now - self.last_step_end
            self.step_rows.append({"kind": "step", "epoch": epoch + 1, "step": self.opt.steps,
                                   "images": epoch * n + seen, "loss": loss, "accuracy": accuracy,
                                   "lr": self.opt.lr, "step_seconds": step_seconds,
                                   "images_per_s": self.cfg.batch / step_seconds if step_seconds > 0 else None})
            if self.writer is not None:
                self.writer.row(self.step_rows[-1])
        self.last_step_end = now

    def end_epoch(self, epoch: int) -> None:
        """The epoch's figures summed over ranks, the test set, the kept line, the checkpoint and
        the log row."""
        model, comm, n = self.model, self.comm, self.data.n_train
        comm.allreduce(self.totals, "the epoch's training loss and accuracy")
        if not model.bn_sync:
            replicas.average_buffers(model, comm)
        result = _evaluate(model, self.data, comm)
        if not result["finite"]:
            raise self.diverged(f"after epoch {epoch + 1} the weights give NaN or inf outputs")
        seconds = time.perf_counter() - self.epoch_start
        entry = {"epoch": epoch + 1, "loss": self.totals[0] / self.totals[2],
                 "train_accuracy": self.totals[1] / self.totals[2], "test_accuracy": result["accuracy"],
                 "test_loss": result["loss"], "seconds": seconds, "step": self.opt.steps,
                 "images": (epoch + 1) * n, "lr": self.opt.lr, "images_per_s": n / seconds,
                 "elapsed": time.perf_counter() - self.t0}
        self.history.append(entry)
        left = self.stop_epoch - epoch - 1
        self.show.epoch_done(entry, entry["elapsed"] / len(self.history) * left if left else None)
        if self.cfg.save:
            comm.barrier("the barrier before rank 0 writes the checkpoint")
            if self.chief:
                model.save(self.cfg.save, self.opt, {"epoch": epoch + 1, "step": self.opt.steps,
                                                     "test_accuracy": result["accuracy"], "world_size": comm.size,
                                                     "settings": settings.stored(self.cfg),
                                                     "data": self.data.info()})
            self.last_good = (self.cfg.save, epoch + 1)
        if self.writer is not None:
            self.writer.row({"kind": "epoch", **entry})

    def diverged(self, what: str) -> NetError:
        """The error that stops a diverged run, naming the last good state it leaves."""
        cfg, last_good = self.cfg, self.last_good
        kept = (f"; the last good state is {last_good[0]} (after epoch {last_good[1]}), untouched: "
                f"--resume {last_good[0]} continues from it") if last_good else \
            f"; {cfg.save}, which this run has not written yet, is untouched" if cfg.save and Path(cfg.save).exists() \
            else ""
        return NetError(f"{what}: training stopped{kept}", hint="lower --lr, or check the data for extreme values")

    def result(self) -> TrainResult:
        seconds = time.perf_counter() - self.t0
        if self.history:
            test_acc, train_acc = self.history[-1]["test_accuracy"], self.history[-1]["train_accuracy"]
        else:
            test_acc, train_acc = _evaluate(self.model, self.data, self.comm)["accuracy"], float("nan")
        return TrainResult(test_acc, train_acc, self.loss_value, seconds, self.start_epoch + len(self.history),
                           self.history, self.comm.seconds, self.steps, self.step_rows, self.cfg.log,
                           settings.stored(self.cfg))

    # the start -----------------------------------------------------------------------------------

    def _resume(self) -> int:
        """Rank 0 reads the checkpoint (the other ranks get its state by broadcast); every rank
        learns the epoch, the step, the number of ranks that wrote it and its settings, and
        continues with them where the user gave no other. Returns the epoch."""
        model, opt, cfg, comm = self.model, self.opt, self.cfg, self.comm
        info_vec = np.zeros(3, dtype=np.int64)  # epoch, step, world size it was written at
        saved_vec = np.zeros(len(settings.SETTINGS) + 1)
        if self.chief:
            info = _load_checkpoint(model, opt, cfg, self.log)
            saved_world = info.get("world_size", 1)
            info_vec[:] = (_whole(info.get("epoch", 0), cfg.resume, "epoch"),
                           _whole(info.get("step", 0), cfg.resume, "step"),
                           _whole(saved_world, cfg.resume, "world_size") or 1)
            saved_vec[:] = settings.to_vector(info.get("settings"))
        comm.broadcast(info_vec, "the checkpoint's epoch and step from rank 0")
        comm.broadcast(saved_vec, "the checkpoint's training settings from rank 0")
        start_epoch, step, saved_world = (int(v) for v in info_vec)
        saved = settings.from_vector(saved_vec)
        self.cfg, self.overrides = settings.resolve(cfg, saved, step, start_epoch, self.data.n_train, cfg.resume)
        if saved is not None:
            self.from_checkpoint = {k for k in settings.SETTINGS if cfg.given is not None and k not in cfg.given}
            check_batch_split(self.cfg.batch, comm.size)
            opt.momentum, opt.weight_decay = self.cfg.momentum, self.cfg.weight_decay
        opt.steps = settings.new_step(step, start_epoch, saved["batch"] if saved else self.cfg.batch,
                                      self.cfg.batch, self.data.n_train)
        for line in self.overrides:
            self.say(line)
        if start_epoch >= self.cfg.epochs:
            self.say(f"{cfg.resume} already holds {start_epoch} epoch(s), and --epochs is {self.cfg.epochs}: "
                     f"nothing to train (raise --epochs to go on)")
        else:
            self.say(f"resumed from {cfg.resume} after epoch {start_epoch}")
        if saved_world != comm.size:
            self.say(f"{cfg.resume} was written by {saved_world} rank{'s' if saved_world != 1 else ''}, this run "
                     f"has {comm.size}: training continues from its state, with the same global batch, but not bit "
                     f"for bit as {saved_world} rank{'s' if saved_world != 1 else ''} would have (floating-point "
                     f"sums run in another order" + (", and batch norm sees other per-rank batches" if not
                                                     self.cfg.sync_bn and any(n.op == "bn" for n in model.nodes)
                                                     else "") + ")")
        return start_epoch

    def _open_log(self) -> runlog.Writer:
        header = _log_header(self.model, self.data, self.cfg, self.comm)
        if self.cfg.resume:
            resume = {**header, "from_epoch": self.start_epoch, "from_step": self.opt.steps,
                      "overrides": self.overrides}
            return runlog.Writer(self.cfg.log, header, resume=resume)
        return runlog.Writer(self.cfg.log, header)

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


def _load_checkpoint(model, opt, cfg: TrainConfig, log) -> dict:
    """Rank 0's read of the checkpoint to resume from: refused, before any weight is loaded, where
    it was saved from a network of another structure whose tensors happen to fit (unless
    cfg.other_network); its info returned."""
    with checkpoint.Checkpoint(cfg.resume) as ck:
        theirs = ck.meta.get("source")
    difference = fit.first_difference(theirs, model.net, cfg.resume) if theirs and theirs != model.net.source \
        else None
    if difference and not cfg.other_network:
        raise NetError(f"{cfg.resume} was saved from another network whose tensors fit this one: {difference}",
                       hint="--other-network loads its weights all the same (as a starting point for this network)")
    if difference:
        log(f"{cfg.resume} was saved from another network ({difference}): its weights are loaded, as "
            f"--other-network asks")
    # the sources may still differ in name, comments or layout: the same layers, said by nobody
    return model.load(cfg.resume, opt, warn=lambda message: None)


def _log_header(model, data, cfg: TrainConfig, comm) -> dict:
    """What a run log says about its run before the first row: the network, the data, the settings,
    the command and the machine."""
    import platform
    from datetime import datetime, timezone

    from ..ir import fingerprint
    from ..version import __version__
    net = model.net
    return {
        "network": {"name": net.name, "file": getattr(net, "file", None), "fingerprint": fingerprint(net.graph),
                    "source": net.source, "params": net.totals().params},
        "data": {"name": data.name, "train": data.n_train, "test": data.n_test, "classes": data.classes},
        "settings": settings.stored(cfg), "command": list(cfg.command),
        "netdsl": __version__, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "system": platform.platform(), "processor": cpu_model(),
                    "python": platform.python_version(), "device": model.device.description, "ranks": comm.size},
        "log_every": cfg.log_every,
    }



def _whole(value, path: str, key: str) -> int:
    """A count from a checkpoint's info: a whole number, 0 or more, or the file is refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetError(f"{path}: its info says {key} {value!r}, not a whole number of {key}s")
    return value
