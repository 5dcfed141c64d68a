"""`netdsl run` (compile, summarise, time one training step) and `netdsl train`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..train.buckets import DEFAULT_BUCKET_BYTES
from .args import (common, compile_file, data_spec, nonneg_float, nonneg_int, parse_size, positive_float, positive_int,
                   warn)
from .paths import not_a_path, reads, writes


RESULT_PAUSE = 0.25  # seconds: see cmd_train


def cmd_run(args) -> int:
    from ..backend.device import get_device
    from ..train.budget import check_batch
    from ..train.timing import default_batch, run
    from ..views.summary import summary_table
    from .tune import algorithm_lines, say_notes
    say_notes()
    net = compile_file(args)
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"  # read when CuPy loads; without it, GPU matmuls stay full float32
    device = get_device(args.device)
    if args.tf32 and device.name == "cpu":  # --device cpu --tf32 is refused (usage.py); auto may land here
        print("note: --tf32 does nothing on the CPU, which --device auto chose: numpy computes in float32",
              file=sys.stderr)
    batch = args.batch or default_batch(net, device.memory_available())
    check_batch(net, batch, device.memory_available(), args.memory_limit, optimiser=False)
    if not args.json:
        warn(net, args)
        print(summary_table(net))
        print()
        print(f"device: {device.description}" + (" (chosen by --device auto)" if args.device == "auto" else ""))
    if args.infer:
        return _run_inference(net, device, batch, args)
    report = run(net, device, batch=batch, repeat=args.repeat, seed=args.seed, optimise=not args.no_optimise,
                 precision=args.precision)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
        return 0
    print(f"batch {report.batch}, median of {report.repeat} timed steps after a warm-up:")
    print(f"  forward   {report.forward_ms:10.1f} ms")
    print(f"  backward  {report.backward_ms:10.1f} ms")
    print(f"  {report.images_per_s:,.1f} images/s, {report.gflops:.1f} GFLOP/s achieved "
          f"(FLOPs = 3 x 2 x MACs per image: forward, and a backward of twice its work)")
    from ..passes.check_limits import human_bytes
    print(f"  peak memory of one training step: {human_bytes(report.peak_bytes)} (measured); "
          f"inference plan: {human_bytes(report.planned_peak_bytes)} (buffers shared across lifetimes)")
    if report.optimised:
        print("  (fused activations: see netdsl summary --optimised; --no-optimise runs the graph as written)")
    from types import SimpleNamespace
    choices = [SimpleNamespace(**a) for a in report.algorithms]
    print("\n".join(algorithm_lines(choices, f"conv algorithms (--precision {args.precision}; measured: timed "
                                              "in this run; cache: timed before; thresholds: NETDSL_TUNE=off):")))
    return 0


def cmd_train(args) -> int:
    if args.ranks is not None and args.ranks > 1:
        if args.dist == "none":
            from .usage import UsageError
            raise UsageError(f"--ranks {args.ranks} and --dist none: several ranks train together only over MPI",
                             hint="drop --dist none")
        from .launch import launch
        return launch(args)
    from ..train.comm import connect
    comm = connect(args.dist)  # first: a failure from here on stops every rank
    if comm.size > 1:
        _thresholds_on_every_rank(comm, args)
    from ..train import data as datasets
    from ..train import fit
    from ..backend.device import get_device
    from ..backend.executor import Model
    from ..train.budget import check_batch
    from ..train.loop import train
    chief = comm.rank == 0
    cfg = train_config(args)
    if cfg.batch % comm.size:
        from ..train.loop import check_batch_split
        from .usage import as_usage
        with as_usage():  # every rank finds it: rank 0 says it (main.py), and --ranks N before starting any
            check_batch_split(cfg.batch, comm.size)
    check_outputs_paths(args, cfg)
    net = compile_file(args)
    if chief:
        warn(net, args, tag="[rank 0] " if comm.size > 1 else "")
    classes = fit.check_outputs(net)  # before any data is read: an untrainable output, at its line
    from ..train.comm import local_rank
    device = get_device(args.device, local_rank() if comm.size > 1 else 0)  # one GPU a rank
    available = device.memory_available()
    if device.name == "cpu" and available is not None:
        from ..backend.cpu.threads import local_ranks
        available //= local_ranks()  # the ranks on this machine share its memory
    check_batch(net, cfg.batch // comm.size, available, args.memory_limit, optimiser=True, ranks=comm.size)
    ds = datasets.prepare(datasets.load(args.data), net.input_shape, classes, cfg.seed)
    say = (lambda text: None) if args.quiet or not chief else (lambda text: print(text, file=sys.stderr))
    ranks = f", {comm.size} ranks ({cfg.batch // comm.size} images each per step of {cfg.batch})" \
        if comm.size > 1 else ""
    say(f"{net.name} on {ds.name}: {ds.n_train:,} training and {ds.n_test:,} test images, "
        f"device {device.description}{ranks}")
    for line in fit.notes(net, ds, getattr(ds, "fitted", ())):
        say(line)
    if not cfg.log and not args.no_log:
        say("no run log: --save PATH keeps one beside the checkpoint, --log PATH names one")
    from .tune import say_notes
    say_notes()
    model = Model(net, device=device, seed=cfg.seed, precision=args.precision)
    result = train(model, ds, cfg, progress=_progress(args), log=None if not args.quiet else (lambda s: None),
                   comm=comm)
    if not chief:
        return 0
    if comm.size > 1:
        # an MPI launcher forwards a rank's stderr (the epoch lines) and stdout (the result) through
        # separate pipes, and reads them in its own order once the ranks stop taking the CPU: the
        # epoch lines are let through first, so the result line comes after them
        sys.stderr.flush()
        time.sleep(RESULT_PAUSE)
    trained = len(result.history)
    resumed = f", {trained} in this run" if trained != result.epochs else ""
    print(f"test accuracy {100 * result.test_accuracy:.2f}% on {ds.n_test:,} {ds.name} test images "
          + (f"after {result.epochs} epoch{'s' if result.epochs != 1 else ''} ({result.seconds:.1f} s{resumed})"
             if trained else "(no epoch trained in this run)"))
    if result.log:
        say(f"run log: {result.log} (netdsl plot {result.log} -o curves.png; netdsl runs {result.log})")
    if args.plot:
        _plot_at_end(args.plot, result, net, ds, say)
    return 0


# what `train --help` shows and a run takes when a flag is not given (and a resume does not supply it)
def _defaults() -> dict:
    """The settings a flag may leave unset, with TrainConfig's defaults (written there once)."""
    from dataclasses import fields

    from ..train.loop import TrainConfig
    names = ("epochs", "batch", "lr", "momentum", "weight_decay", "schedule", "seed")
    return {f.name: f.default for f in fields(TrainConfig) if f.name in names}


TRAIN_DEFAULTS = _defaults()
SCHEDULE_HELP = ("cosine: from --lr down to 0 along half a cosine over the planned --epochs; step: --lr, divided "
                 "by 10 at 50%% and 75%% of the epochs; constant: --lr throughout")


def train_config(args):
    """The TrainConfig the flags say: a setting not given takes its default, or, on --resume, the
    checkpoint's (TrainConfig.given names the ones given)."""
    from ..runlog import beside
    from ..train.loop import TrainConfig
    given = tuple(sorted(k for k in TRAIN_DEFAULTS if getattr(args, k) is not None))
    chosen = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in TRAIN_DEFAULTS.items()}
    if args.stop_after is not None and args.stop_after > chosen["epochs"] and "epochs" in given:
        from .usage import UsageError
        raise UsageError(f"--stop-after {args.stop_after} is past --epochs {chosen['epochs']}: --stop-after stops a run "
                         "before its planned --epochs")
    home = args.save or args.resume
    log = args.log or (beside(home) if home and not args.no_log else None)
    return TrainConfig(**chosen, save=args.save, resume=args.resume, bucket_bytes=args.bucket_size,
                       overlap=args.overlap, sync_bn=args.sync_bn, check_replicas=args.check_replicas,
                       stop_after=args.stop_after, given=given if args.resume else None,
                       other_network=args.other_network, log=log, log_every=args.log_every,
                       command=("netdsl", *args.argv))


def check_outputs_paths(args, cfg) -> None:
    """Refused before any training: a run log beside --save that is one of the run's other files
    (no flag names that log, so main.py's check of the flags' files cannot see it), and a --plot
    in a format netdsl does not draw."""
    from .paths import same_file
    from .usage import UsageError
    if cfg.log is not None and not args.log:
        for flag, taken in {"FILE": args.file, "--save": args.save, "--resume": args.resume,
                            "--plot": args.plot}.items():
            if taken is not None and same_file(cfg.log, taken):
                raise UsageError(f"the run log beside --save, {cfg.log}, is also {flag}: the run would write one "
                                 "over the other", hint="name the log with --log PATH, or drop it with --no-log")
    if args.plot:
        from ..files import check_writable
        from ..views.curves import check_plot_path
        check_plot_path(args.plot, "--plot")
        check_writable(args.plot, "--plot")


def _thresholds_on_every_rank(comm, args) -> None:
    """Ranks that each timed their own conv algorithms could choose differently and train
    different bits: under MPI every rank takes the fixed thresholds (backend/tuner.py's `off`)."""
    from ..backend.tuner import ENV
    asked = os.environ.get(ENV, "").strip().lower()
    os.environ[ENV] = "off"
    if asked not in ("", "off") and comm.rank == 0 and not args.quiet:  # said only where the user set it
        print(f"note: {ENV}={asked} is set aside under MPI: every rank takes the fixed thresholds, so all "
              "ranks run the same conv algorithms", file=sys.stderr)


def _progress(args):
    from ..train.progress import Progress, Silent
    return Silent() if args.quiet else Progress()


def _plot_at_end(path: str, result, net, ds, say) -> None:
    """train --plot: the curves of this run (from its log, or from memory where there is none)."""
    from .. import runlog
    from ..views.curves import plot_runs, run_from_rows
    run = runlog.read(result.log) if result.log else run_from_rows(net.name, ds.name, result.settings,
                                                                  result.history, result.step_rows)
    plot_runs([run], path)
    say(f"curves: {path}")


def precision_flag(p) -> None:
    p.add_argument("--precision", choices=("fast", "default", "exact"), default="default",
                   help="the convolutions' float32 error budget: default keeps a deep network's error within 2x of "
                        "plain float32 im2col's (F(2x2) Winograd, direct); fast admits F(4x4) and F(2x2, 5x5) "
                        "Winograd too; exact im2col only (docs/speed.md)")


def _run_inference(net, device, batch: int, args) -> int:
    """`run --infer`: the inference path (Model.predict, backend/inference.py) timed at one batch."""
    import numpy as np
    from ..backend.executor import Model
    from ..passes.check_limits import human_bytes
    model = Model(net, device=device, seed=args.seed, precision=args.precision)
    x = np.random.default_rng(args.seed).standard_normal((batch, *net.input_shape)).astype(np.float32)
    start = time.perf_counter()
    model.predict(x)  # prepares the plan for this batch size
    prepare_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - start) * 1000)
    median = sorted(times)[len(times) // 2]
    engine = model._inference
    plan = engine.plan(batch) if hasattr(engine, "plan") else None
    figures = {"batch": batch, "repeat": args.repeat, "inference_ms": median, "images_per_s": batch * 1000 / median,
               "first_call_ms": prepare_ms, "buffers_bytes": plan.nbytes if plan else None,
               "conv_algorithms": plan.algorithms if plan else None}
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"batch {batch}, inference path (optimised graph, prepared call list), median of {args.repeat} calls "
          f"after a first one of {prepare_ms:.1f} ms that prepared it:")
    print(f"  inference {median:10.3f} ms, {figures['images_per_s']:,.1f} images/s")
    if plan:
        print(f"  buffers: {human_bytes(plan.nbytes)} (the memory plan's, allocated once for this batch size, "
              "and shared scratch)")
        for name, algorithm in plan.algorithms.items():
            print(f"  {name}: {algorithm}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="compile, print the summary, time one batch forward and backward")
    common(p)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--batch", type=positive_int, default=None, help="images per batch (default: what fits 2 GiB, at most 16)")
    p.add_argument("--repeat", type=positive_int, default=3, help="timed repetitions after one warm-up (median)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--no-optimise", action="store_true", help="run the graph as written, without fusion")
    p.add_argument("--infer", action="store_true",
                   help="time the inference path (model.predict: the optimised graph as one prepared call list) "
                        "instead of a training step")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core matmuls on the GPU (off by default)")
    precision_flag(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train on a data set with SGD + momentum",
                       description="Train a network on a data set with SGD + momentum; live progress, a run log, "
                                   "checkpoints. On --resume, a setting not given here is the checkpoint's.")
    common(p)
    not_a_path(p.add_argument("--data", default="digits", type=data_spec,
                              help="digits (built in), mnist:FOLDER, fashion:FOLDER, cifar10:FOLDER, or folder:DIR "
                                   "(DIR/train/CLASS/*.jpg and DIR/val/CLASS/*.jpg, streamed from disk)"))
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="the run's planned total of epochs; the schedule spans it (default 20)")
    p.add_argument("--batch", type=positive_int, default=None, help="images per step (default 16)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.05)")
    p.add_argument("--momentum", type=nonneg_float, default=None, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help="L2 penalty on weights, not biases or batch norm (default 0.0005)")
    p.add_argument("--schedule", choices=("cosine", "step", "constant"), default=None,
                   help=SCHEDULE_HELP + " (default cosine)")
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="initial weights, shuffling and dropout (default 0; the test split never depends on it)")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="EPOCH",
                   help="stop after this epoch, before the planned --epochs; --resume goes on on the same schedule")
    writes(p.add_argument("--save", metavar="PATH", help="write a safetensors checkpoint after every epoch (atomically; "
                                                         "missing folders are made)"), may_replace=("resume",))
    reads(p.add_argument("--resume", metavar="PATH",
                         help="continue from a checkpoint, with its settings unless given here"))
    precision_flag(p)
    p.add_argument("--other-network", action="store_true",
                   help="--resume from a checkpoint of a network with other layers whose tensors fit this one")
    r = p.add_argument_group("what a run leaves")
    writes(r.add_argument("--log", metavar="PATH", help="the run log, JSON lines (default: beside --save, e.g. "
                                                        "run.log.jsonl for run.safetensors; appended on --resume)"))
    r.add_argument("--no-log", action="store_true", help="write no run log")
    r.add_argument("--log-every", type=nonneg_int, default=50, metavar="STEPS",
                   help="a log row every STEPS steps besides one per epoch (default 50; 0: epochs only)")
    writes(r.add_argument("--plot", metavar="OUT", help="draw the run's curves at the end (.png, .svg or .pdf)"))
    d = p.add_argument_group("many ranks (data-parallel over MPI; --batch is the global batch)")
    d.add_argument("--dist", choices=("auto", "mpi", "none"), default="auto",
                   help="auto: over MPI when an MPI launcher started several ranks; mpi: always; none: never")
    d.add_argument("--ranks", type=positive_int, default=None, metavar="N",
                   help="start N ranks on this machine through mpiexec (at most one a core)")
    d.add_argument("--oversubscribe", action="store_true",
                   help="let --ranks start more ranks than this machine has cores (each then runs slower)")
    d.add_argument("--sync-bn", action="store_true",
                   help="batch norm over the global batch (default: over each rank's share, as DDP and Horovod)")
    d.add_argument("--bucket-size", type=parse_size, default=DEFAULT_BUCKET_BYTES, metavar="SIZE",
                   help="gradients are summed across ranks in buckets of this size (default 25MiB)")
    d.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=False,
                   help="sum each bucket while the backward pass goes on (default: after it; measured no faster "
                        "on a 2-core machine)")
    d.add_argument("--check-replicas", action="store_true",
                   help="after every step, check that every rank holds bit-identical parameters")
    p.set_defaults(func=cmd_train)
