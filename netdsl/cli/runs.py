"""`netdsl plot` (training curves from run logs), `netdsl runs` (runs compared in a table) and
`netdsl completion` (a shell's tab completion for every command and flag)."""
from __future__ import annotations

import sys

from .paths import reads, writes


def cmd_plot(args) -> int:
    from ..files import check_writable
    from ..views.curves import check_plot_path, plot_runs
    check_plot_path(args.output, "-o")
    check_writable(args.output, "-o")
    runs = _read(args.logs)
    plot_runs(runs, args.output, x=args.x)
    print(f"{args.output}: {len(runs)} run{'s' if len(runs) != 1 else ''}, loss and accuracy against "
          f"{'epochs' if args.x == 'epoch' else 'images seen'}", file=sys.stderr)
    return 0


def cmd_runs(args) -> int:
    from ..views.curves import runs_table
    print(runs_table(_read(args.logs), args.format))
    return 0


def cmd_completion(args) -> int:
    import shtab
    print(shtab.complete(args.parser, shell=args.shell))
    return 0


def _read(paths: list[str]):
    from .. import runlog
    runs = []
    for path in paths:
        run = runlog.read(path)
        for note in run.notes:
            print(f"note: {note}", file=sys.stderr)
        runs.append(run)
    return runs


def register(sub) -> None:
    p = sub.add_parser("plot", help="training curves from run logs (loss and accuracy, train and test)")
    reads(p.add_argument("logs", nargs="+", metavar="LOG", help="run logs (netdsl train writes one beside --save)"))
    writes(p.add_argument("-o", "--output", required=True, metavar="OUT", help="the picture: .png, .svg or .pdf"))
    p.add_argument("--x", choices=("epoch", "images"), default="epoch",
                   help="against epochs or images seen (default epoch)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("runs", help="runs compared: final and best figures, time, what differs")
    reads(p.add_argument("logs", nargs="+", metavar="LOG", help="run logs (netdsl train writes one beside --save)"))
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text",
                   help="the table's format (default text)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("completion", help="print a shell's tab-completion script for netdsl",
                       description="Print the tab-completion script for a shell. Bash: "
                                   "netdsl completion bash > ~/.local/share/bash-completion/completions/netdsl; "
                                   "zsh: netdsl completion zsh > ~/.zfunc/_netdsl (with ~/.zfunc on fpath).")
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    p.set_defaults(func=cmd_completion)
