"""`netdsl draw` and `netdsl diff`: pictures of a network, and what changed between two."""
from __future__ import annotations

from ..passes.check_limits import DEFAULT_LIMIT
from .args import common, compile_file, diagram_file, load_network, nonneg_int, parse_size
from .paths import not_a_path, reads, writes

RANKDIRS = ("TB", "LR", "BT", "RL")
STYLES = ("diagram", "volumes")


def cmd_draw(args) -> int:
    from ..views.render import DrawOptions, diagram, write
    net = compile_file(args)
    if args.style == "volumes":
        from ..views import volumes
        out = volumes.write(volumes.volumes(net, collapse=args.collapse, focus=args.focus), args.output)
        print(f"wrote {out}")
        return 0
    depth = 0 if args.collapse else args.depth
    opts = DrawOptions(shapes=args.shapes, rankdir=args.rankdir or "TB", depth=depth,
                       highlight=tuple(args.highlight or ()), fold_activations=not args.no_fold, focus=args.focus,
                       legend=not args.no_legend)
    out = write(diagram(net, opts), args.output)
    print(f"wrote {out}")
    return 0


def cmd_page(args) -> int:
    from ..views import page
    out = page.write(compile_file(args), args.output)
    print(f"wrote {out}")
    return 0


def cmd_diff(args) -> int:
    from ..views.diff import compare, report, side_by_side
    from ..views.render import write
    a = load_network(args.a, memory_limit=args.memory_limit)
    b = load_network(args.b, memory_limit=args.memory_limit)
    changes = compare(a, b)
    print(report(a, b, changes))
    if args.output:
        out = write(side_by_side(a, b, changes, args.rankdir), args.output)
        print(f"wrote {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("draw", help="a diagram: .svg, .png, .pdf (through graphviz's dot) or .dot text")
    common(p)
    writes(p.add_argument("-o", "--output", required=True, metavar="OUT", type=diagram_file,
                          help="the file (.svg, .png, .pdf or .dot); its extension picks the format"))
    p.add_argument("--style", choices=STYLES, default="diagram",
                   help="diagram: graphviz boxes and arrows; volumes: feature maps as boxes, as the lecture draws "
                        "them (.svg, .png, .pdf; --collapse and --focus apply)")
    p.add_argument("--shapes", action="store_true", help="tensor shapes on the edges")
    p.add_argument("--rankdir", choices=RANKDIRS, default=None, help="top-to-bottom (TB, the default) or left-to-right")
    p.add_argument("--collapse", action="store_true",
                   help="each block instance as one node; runs of identical blocks fold to one node x N")
    p.add_argument("--depth", type=nonneg_int, default=None, metavar="K", help="expand blocks down to nesting depth K")
    not_a_path(p.add_argument("--highlight", action="append", metavar="NAME", help="outline a layer or block (repeatable)"))
    not_a_path(p.add_argument("--focus", metavar="BLOCK", help="draw only this block instance and what feeds it"))
    p.add_argument("--no-fold", action="store_true", help="draw activations as their own nodes")
    p.add_argument("--no-legend", action="store_true")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("page", help="one self-contained HTML page to explore the network in a browser, offline")
    common(p)
    writes(p.add_argument("-o", "--output", required=True, metavar="OUT.html", help="the .html file"))
    p.set_defaults(func=cmd_page)

    p = sub.add_parser("diff", help="what changed between two networks; -o draws both side by side")
    reads(p.add_argument("a", metavar="A", help="a network: a .net file or a model file"))
    reads(p.add_argument("b", metavar="B", help="the network to compare it with"))
    writes(p.add_argument("-o", "--output", metavar="OUT", type=diagram_file,
                          help="draw both networks, changed layers highlighted (.svg, .png, .pdf or .dot)"))
    p.add_argument("--rankdir", choices=RANKDIRS, default="TB")
    p.add_argument("--memory-limit", type=parse_size, default=DEFAULT_LIMIT, metavar="SIZE",
                   help="refuse a layer that needs more than this (default 8GiB)")
    p.set_defaults(func=cmd_diff)
