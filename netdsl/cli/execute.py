"""`netdsl run` (compile, summarise, time one training step) and `netdsl train`."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import NetError
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
    net = compile_file(args)
    if args.tf32:
        import os
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
    report = run(net, device, batch=batch, repeat=args.repeat, seed=args.seed, optimise=not args.no_optimise)
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
    from ..train import data as datasets
    from ..backend.device import get_device
    from ..backend.executor import Model
    from ..train.budget import check_batch
    from ..train.loop import TrainConfig, train
    chief = comm.rank == 0
    if args.batch % comm.size:
        from ..train.loop import check_batch_split
        from .usage import as_usage
        with as_usage():  # every rank finds it: rank 0 says it (main.py), and --ranks N before starting any
            check_batch_split(args.batch, comm.size)
    net = compile_file(args)
    if chief:
        warn(net, args, tag="[rank 0] " if comm.size > 1 else "")
    from ..train.comm import local_rank
    device = get_device(args.device, local_rank() if comm.size > 1 else 0)  # one GPU a rank
    classes = net.layer(net.outputs[0][1]).shape
    if len(classes) != 1:
        raise NetError(f"{net.name} ends in a {'x'.join(map(str, classes))} feature map, not class scores",
                       hint="end the network with fc N and softmax (or svm)")
    available = device.memory_available()
    if device.name == "cpu" and available is not None:
        from ..backend.cpu.threads import local_ranks
        available //= local_ranks()  # the ranks on this machine share its memory
    check_batch(net, args.batch // comm.size, available, args.memory_limit, optimiser=True, ranks=comm.size)
    ds = datasets.prepare(datasets.load(args.data, seed=args.seed), net.input_shape, classes[0], args.seed)
    ranks = f", {comm.size} ranks ({args.batch // comm.size} images each per step of {args.batch})" \
        if comm.size > 1 else ""
    if chief:
        print(f"{net.name} on {ds.name}: {ds.n_train:,} training and {ds.n_test:,} test images, "
              f"device {device.description}{ranks}", file=sys.stderr)
    model = Model(net, device=device, seed=args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr, momentum=args.momentum,
                      weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                      save=args.save, resume=args.resume, bucket_bytes=args.bucket_size,
                      overlap=args.overlap, sync_bn=args.sync_bn, check_replicas=args.check_replicas)
    result = train(model, ds, cfg, comm=comm)
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
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core matmuls on the GPU (off by default)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train on a data set with SGD + momentum")
    common(p)
    not_a_path(p.add_argument("--data", default="digits", type=data_spec,
                              help="digits (built in), mnist:FOLDER, fashion:FOLDER, cifar10:FOLDER, or folder:DIR "
                                   "(DIR/train/CLASS/*.jpg and DIR/val/CLASS/*.jpg, streamed from disk)"))
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate")
    p.add_argument("--momentum", type=nonneg_float, default=0.9)
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    p.add_argument("--seed", type=nonneg_int, default=0)
    writes(p.add_argument("--save", metavar="PATH", help="write a safetensors checkpoint after every epoch (atomically; "
                                                         "missing folders are made)"), may_replace=("resume",))
    reads(p.add_argument("--resume", metavar="PATH", help="continue from a checkpoint"))
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
