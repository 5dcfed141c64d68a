"""`netdsl check`, `summary` and `explain`: what the analysis found, for people and for tools."""
from __future__ import annotations

import json

from .args import common, compile_file, warn
from .paths import not_a_path


def cmd_check(args) -> int:
    net = compile_file(args)
    warn(net, args)
    t = net.totals()
    print(f"{args.file}: ok: {net.name}, {len(net.layers)} layers, {t.params:,} parameters, {t.macs:,} MACs")
    return 0


def cmd_summary(args) -> int:
    from ..compiler import optimise
    from ..views.summary import summary_dict, summary_table
    from .args import printer
    net = compile_file(args)
    if args.optimised:
        net = optimise(net, "inference", debug=args.debug or args.print_after_all, print_after=printer(args))
    if args.json:
        print(json.dumps(summary_dict(net), indent=1))
    else:
        warn(net, args)
        print(summary_table(net))
    return 0


def cmd_explain(args) -> int:
    from ..views.explain import explain
    print(explain(compile_file(args), args.layer))
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="check a network: ok, or every error")
    common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    common(p)
    p.add_argument("--json", action="store_true", help="one JSON object (stable keys) instead of the table")
    p.add_argument("--optimised", "--optimized", action="store_true",
                   help="the table after the inference passes (bn folding, fusion, dropout and dead outputs removed)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("explain", help="the arithmetic behind one layer")
    common(p)
    not_a_path(p.add_argument("layer", help="the layer's name, e.g. conv1 or inception3a/b2/conv2"))
    p.set_defaults(func=cmd_explain)
