"""Subcommands that live with their own concern (run, train) register here."""
from __future__ import annotations

import json
import sys

from .cli import _EXTENSIONS, _compile, _warn, nonneg_float, nonneg_int, positive_float, positive_int
from .errors import NetError


def cmd_run(args) -> int:
    from .backend.device import get_device
    from .backend.run import run
    from .report import summary_table
    net = _compile(args)
    if args.tf32:
        import os
        os.environ["CUPY_TF32"] = "1"  # read when CuPy loads; without it, GPU matmuls stay full float32
    device = get_device(args.device)
    if not args.json:
        _warn(net, args)
        print(summary_table(net))
        print()
        print(f"device: {device.description}" + (" (chosen by --device auto)" if args.device == "auto" else ""))
    report = run(net, device, batch=args.batch, repeat=args.repeat, seed=args.seed, optimise=not args.no_optimise)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
        return 0
    print(f"batch {report.batch}, median of {report.repeat} timed steps after a warm-up:")
    print(f"  forward   {report.forward_ms:10.1f} ms")
    print(f"  backward  {report.backward_ms:10.1f} ms")
    print(f"  {report.images_per_s:,.1f} images/s, {report.gflops:.1f} GFLOP/s achieved "
          f"(FLOPs = 3 x 2 x MACs per image: forward, and a backward of twice its work)")
    from .passes.check_limits import human_bytes
    print(f"  peak memory of one training step: {human_bytes(report.peak_bytes)} (measured); "
          f"inference plan: {human_bytes(report.planned_peak_bytes)} (buffers shared across lifetimes)")
    if report.optimised:
        print("  (fused activations: see netdsl summary --optimised; --no-optimise runs the graph as written)")
    return 0


def cmd_train(args) -> int:
    from .backend import data as datasets
    from .backend.device import get_device
    from .backend.executor import Model
    from .backend.train import TrainConfig, train
    net = _compile(args)
    _warn(net, args)
    device = get_device(args.device)
    classes = net.layer(net.outputs[0][1]).shape
    if len(classes) != 1:
        raise NetError(f"{net.name} ends in a {'x'.join(map(str, classes))} feature map, not class scores",
                       hint="end the network with fc N and softmax (or svm)")
    ds = datasets.prepare(datasets.load(args.data, seed=args.seed), net.input_shape, classes[0])
    print(f"{net.name} on {ds.name}: {len(ds.x_train):,} training and {len(ds.x_test):,} test images, "
          f"device {device.description}", file=sys.stderr)
    model = Model(net, device=device, seed=args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr, momentum=args.momentum,
                      weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                      save=args.save, resume=args.resume)
    result = train(model, ds, cfg)
    print(f"test accuracy {100 * result.test_accuracy:.2f}% on {len(ds.x_test):,} {ds.name} test images "
          f"after {result.epochs} epochs ({result.seconds:.1f} s)")
    return 0


def register(sub, common) -> None:
    p = sub.add_parser("run", help="compile, print the summary, time one batch forward and backward")
    common(p)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--batch", type=positive_int, default=None, help="images per batch (default: what fits 2 GiB, at most 16)")
    p.add_argument("--repeat", type=positive_int, default=3, help="timed repetitions after one warm-up (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--no-optimise", action="store_true", help="run the graph as written, without fusion")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core matmuls on the GPU (off by default)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train on a data set with SGD + momentum")
    common(p)
    p.add_argument("--data", default="digits", help="digits (built in), mnist:FOLDER, fashion:FOLDER or cifar10:FOLDER")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate")
    p.add_argument("--momentum", type=nonneg_float, default=0.9)
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="PATH", help="write a safetensors checkpoint after every epoch (atomically)")
    p.add_argument("--resume", metavar="PATH", help="continue from a checkpoint")
    p.set_defaults(func=cmd_train)


_EXTENSIONS.append(register)


def cmd_draw(args) -> int:
    from .render import DrawOptions, diagram, write
    net = _compile(args)
    depth = 0 if args.collapse else args.depth
    opts = DrawOptions(shapes=args.shapes, rankdir=args.rankdir, depth=depth, highlight=tuple(args.highlight or ()),
                       fold_activations=not args.no_fold, focus=args.focus, legend=not args.no_legend)
    out = write(diagram(net, opts), args.output)
    print(f"wrote {out}")
    return 0


def cmd_diff(args) -> int:
    from .compiler import load
    from .diff import compare, report, side_by_side
    from .render import write
    a = load(args.a, memory_limit=args.memory_limit)
    b = load(args.b, memory_limit=args.memory_limit)
    changes = compare(a, b)
    print(report(a, b, changes))
    if args.output:
        out = write(side_by_side(a, b, changes, args.rankdir), args.output)
        print(f"wrote {out}")
    return 0


def register_draw(sub, common) -> None:
    from .cli import parse_size
    p = sub.add_parser("draw", help="a diagram: .svg, .png, .pdf (through graphviz's dot) or .dot text")
    common(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file; its extension picks the format")
    p.add_argument("--shapes", action="store_true", help="tensor shapes on the edges")
    p.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB", help="top-to-bottom or left-to-right")
    p.add_argument("--collapse", action="store_true",
                   help="each block instance as one node; runs of identical blocks fold to one node x N")
    p.add_argument("--depth", type=nonneg_int, default=None, metavar="K", help="expand blocks down to nesting depth K")
    p.add_argument("--highlight", action="append", metavar="NAME", help="outline a layer or block (repeatable)")
    p.add_argument("--focus", metavar="BLOCK", help="draw only this block instance and what feeds it")
    p.add_argument("--no-fold", action="store_true", help="draw activations as their own nodes")
    p.add_argument("--no-legend", action="store_true")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("diff", help="what changed between two networks; -o draws both side by side")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("-o", "--output", metavar="OUT", help="draw both networks, changed layers highlighted")
    p.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB")
    p.add_argument("--memory-limit", type=parse_size, default=None, metavar="SIZE")
    p.set_defaults(func=cmd_diff)


_EXTENSIONS.append(register_draw)
