"""`netdsl check`, `summary` and `explain`: what the analysis found, for people and for tools."""
from __future__ import annotations

import shutil
import sys

from ..views.tables import FORMATS
from .args import common, compile_file, warn
from .paths import not_a_path


def cmd_check(args) -> int:
    net = compile_file(args)
    warn(net, args)
    t = net.totals()
    print(f"{args.file}: ok: {net.name}, {len(net.layers)} layers, {t.params:,} parameters, {t.macs:,} MACs")
    return 0


def _show(report, fmt: str) -> None:
    """A report in the asked format; on a terminal the text is fitted to its width and coloured."""
    from ..views.tables import render
    if fmt == "text" and sys.stdout.isatty():
        print(render(report.document, "text", color=True, width=shutil.get_terminal_size().columns))
    else:
        print(render(report.document, fmt), end="" if fmt in ("csv", "md", "latex") else "\n")


def cmd_summary(args) -> int:
    from ..compiler import optimise
    from ..views.summary import summary
    from .args import printer
    net = compile_file(args)
    if args.optimised:
        net = optimise(net, "inference", debug=args.debug or args.print_after_all, print_after=printer(args))
    fmt = "json" if args.json else args.format
    if fmt == "text":
        warn(net, args)
    _show(summary(net, blocks=args.blocks), fmt)
    if args.optimised and fmt == "text":
        from ..backend.algorithms import plan
        from .tune import algorithm_lines
        print("\n".join(algorithm_lines(plan(net, 1, training=False), "conv algorithms on this CPU (batch 1, "
                                         "inference; cache: measured before; not measured: the thresholds' choice "
                                         "until netdsl tune FILE or a run measures it):")))
    return 0


def cmd_explain(args) -> int:
    from ..views.explain import explain
    _show(explain(compile_file(args), args.layer), args.format)
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="check a network: ok, or every error")
    common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    common(p)
    p.add_argument("--json", action="store_true", help="one JSON object (stable keys) instead of the table")
    p.add_argument("--blocks", action="store_true",
                   help="one row per block instance (nested ones indented), the layers inside folded away")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (the terminal), md (GitHub markdown), csv, latex (booktabs), html, json")
    p.add_argument("--optimised", "--optimized", action="store_true",
                   help="the table after the inference passes (bn folding, fusion, dropout and dead outputs removed)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("explain", help="the arithmetic behind a layer, block, group, branch, range or the network")
    common(p)
    not_a_path(p.add_argument("layer", metavar="NAME",
                   help="a layer (conv1), block (inception3a, conv3_x/bottleneck2), group or stage (conv3_x), branch "
                        "(inception3a/b2), side output (aux1), range (conv3_1..conv3_3) or 'network'"))
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (the terminal), md (GitHub markdown), csv, latex (booktabs), html, json")
    p.set_defaults(func=cmd_explain)
