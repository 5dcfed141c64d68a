"""Training runs shown to a person: their curves (matplotlib) and a table comparing them.

Both read run logs (netdsl/runlog.py) and nothing else: `netdsl plot`, `netdsl runs`, `train
--plot` and the History that `netdsl.train()` returns all draw from the same rows. Runs are told
apart by what differs between them (their settings, their network, their data), so a legend
says `lr 0.1` and `lr 0.01`, not two file names.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ..errors import NetError
from ..runlog import Run

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
AXES = ("epoch", "images")
# settings as a legend and a table name them, in the order they are listed
SHOWN = (("lr", "lr"), ("batch", "batch"), ("schedule", "schedule"), ("epochs", "epochs"),
         ("momentum", "momentum"), ("weight_decay", "weight decay"), ("warmup_steps", "warm-up"), ("seed", "seed"))


def check_plot_path(path: str, flag: str) -> str:
    """The matplotlib format a plot path asks for, from its suffix; a NetError naming the flag."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise NetError(f"{flag} {path}: a plot is written as .png, .svg or .pdf, not '{suffix or 'no suffix'}'",
                       hint=f"e.g. {flag} curves.png")
    return FORMATS[suffix]


def run_from_rows(network: str, data: str, settings: dict, epochs: list[dict], steps: Sequence[dict] = (),
                  path: str = "(this run)") -> Run:
    """A Run built from rows in memory (a run that wrote no log)."""
    return Run(path, {"network": {"name": network}, "data": {"name": data}, "settings": dict(settings)},
               [], [{"kind": "epoch", **e} for e in epochs], [dict(s) for s in steps])


def differences(runs: Sequence[Run]) -> list[list[tuple[str, str]]]:
    """For each run, (name, value) of every setting, network or data set that differs between the runs."""
    facts = []
    for run in runs:
        s = run.settings
        one = {"network": run.network.get("name", "?")}
        if len({r.network.get("fingerprint") for r in runs}) > 1 and \
                len({r.network.get("name") for r in runs}) == 1:
            one["network"] = f"{run.network.get('name', '?')} ({str(run.network.get('fingerprint', ''))[:8]})"
        one["data"] = run.header.get("data", {}).get("name", "?")
        one.update({label: _value(s.get(key)) for key, label in SHOWN})
        facts.append(one)
    keys = [k for k in facts[0] if len({f.get(k) for f in facts}) > 1] if len(runs) > 1 else []
    return [[(k, f[k]) for k in keys] for f in facts]


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "?" if v is None else str(v)


def labels(runs: Sequence[Run]) -> list[str]:
    """A legend entry per run: what differs, else the log's file name."""
    out = []
    for run, diff in zip(runs, differences(runs)):
        out.append(", ".join(f"{k} {v}" for k, v in diff) or Path(run.path).name.removesuffix(".log.jsonl"))
    if len(set(out)) < len(out):  # the same settings twice: the files tell them apart
        out = [f"{label} ({Path(run.path).name})" for label, run in zip(out, runs)]
    return out


def _common(runs: Sequence[Run]) -> str:
    """What all the runs share, for the title."""
    run = runs[0]
    differing = {k for d in differences(runs) for k, _ in d}
    s = run.settings
    parts = [] if "network" in differing else [run.network.get("name", "?")]
    if "data" not in differing:
        parts.append(f"on {run.header.get('data', {}).get('name', '?')}")
    shared = [f"{label} {_value(s.get(key))}" for key, label in SHOWN[:3] if label not in differing and key in s]
    return " ".join(parts) + (f" ({', '.join(shared)})" if shared else "")


def plot_runs(runs: Sequence[Run], path: str | None = None, x: str = "epoch"):
    """Loss and accuracy, train (solid) and test (dashed), against epochs or images seen; one
    colour a run. Writes `path` (png, svg, pdf by its suffix) when given; returns the figure."""
    import matplotlib
    if path is not None:
        matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    if x not in AXES:
        raise NetError(f"--x {x}: curves go against {' or '.join(AXES)}")
    empty = [r.path for r in runs if not r.epochs and not r.steps]
    if empty:
        raise NetError(f"{empty[0]}: no rows yet (the run stopped before its first logged step)")
    fig = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]
    for k, (run, label) in enumerate(zip(runs, labels(runs))):
        colour = colours(k % 10)
        n_train = run.header.get("data", {}).get("train") or 1

        def where(row, fractional=False):
            if x == "images":
                return row.get("images", 0)
            return row["images"] / n_train if fractional and row.get("images") is not None else row.get("epoch", 0)
        if run.steps:  # within epochs: the running figures, faint
            xs = [where(r, True) for r in run.steps]
            loss_ax.plot(xs, [r["loss"] for r in run.steps], color=colour, alpha=0.3, linewidth=0.8)
            acc_ax.plot(xs, [100 * r["accuracy"] for r in run.steps], color=colour, alpha=0.3, linewidth=0.8)
        e = run.epochs
        xs = [where(r) for r in e]
        loss_ax.plot(xs, [r["loss"] for r in e], color=colour, marker="o", markersize=3.5, label=f"{label}")
        acc_ax.plot(xs, [100 * r["train_accuracy"] for r in e], color=colour, marker="o", markersize=3.5,
                    label=f"{label}")
        tests = [(xv, r) for xv, r in zip(xs, e) if r.get("test_loss") is not None]
        loss_ax.plot([t[0] for t in tests], [t[1]["test_loss"] for t in tests], color=colour, linestyle="--",
                     marker="s", markersize=3.5)
        acc_ax.plot(xs, [100 * r["test_accuracy"] for r in e], color=colour, linestyle="--", marker="s",
                    markersize=3.5)
    xlabel = "epoch" if x == "epoch" else "images seen"
    loss_ax.set(xlabel=xlabel, ylabel="loss (cross-entropy)", title="loss")
    acc_ax.set(xlabel=xlabel, ylabel="accuracy (%)", title="accuracy")
    losses = [r["loss"] for run in runs for r in run.epochs + run.steps if r.get("loss") is not None]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 30:
        loss_ax.set_yscale("log")  # a loss falling by orders of magnitude reads best on a log scale
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    from matplotlib.lines import Line2D
    style = [Line2D([], [], color="0.3", marker="o", markersize=3.5, label="train"),
             Line2D([], [], color="0.3", linestyle="--", marker="s", markersize=3.5, label="test")]
    handles, names = loss_ax.get_legend_handles_labels()
    loss_ax.legend(handles=style + handles, fontsize=8, loc="upper right")
    fig.suptitle(f"training curves: {_common(runs)}", fontsize=11)
    if path is not None:
        fmt = check_plot_path(path, "-o")
        from ..files import write_atomic
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=None if fmt != "png" else {"Software": "netdsl"})
        write_atomic(path, buffer.getvalue())
    return fig


# the table of runs ---------------------------------------------------------------------------

def runs_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run: its name, final and best figures, time, and what sets it apart."""
    rows = []
    diffs = differences(runs)
    networks = _network_changes(runs)
    for run, diff, change in zip(runs, diffs, networks):
        e = run.epochs
        last = e[-1] if e else {}
        best = max(e, key=lambda r: r["test_accuracy"]) if e else {}
        rows.append({
            "run": Path(run.path).name, "epochs": last.get("epoch", 0),
            "final test acc": _pct(last.get("test_accuracy")), "best test acc": _pct(best.get("test_accuracy")),
            "best at": best.get("epoch", ""), "final train acc": _pct(last.get("train_accuracy")),
            "final loss": _num(last.get("loss")), "final test loss": _num(last.get("test_loss")),
            "time": f"{run.seconds:.1f} s",
            "differs": "; ".join(f"{k} {v}" for k, v in diff if k != "network") or ("-" if len(runs) > 1 else ""),
            "network": change,
        })
    return rows


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _network_changes(runs: Sequence[Run]) -> list[str]:
    """Each run's network against the first run's, as netdsl diff sees it (matched by layer name)."""
    first = runs[0].network
    out = [first.get("name", "?")]
    base = None
    for run in runs[1:]:
        net = run.network
        if net.get("fingerprint") and net.get("fingerprint") == first.get("fingerprint"):
            out.append("same")
            continue
        try:
            from ..compiler import compile_source
            from .diff import compare
            base = base or compile_source(first.get("source", ""), f"{runs[0].path} (its network)")
            other = compile_source(net.get("source", ""), f"{run.path} (its network)")
        except NetError:
            out.append(f"{net.get('name', '?')} (its source does not compile)")
            continue
        changes = compare(base, other)
        if not changes:
            out.append("same layers")
            continue
        lead = changes[0]
        first_line = lead.describe()[0] if lead.describe() else lead.status
        more = f" (+{len(changes) - 1} more)" if len(changes) > 1 else ""
        out.append(f"{other.name}: {lead.status} {lead.name}: {first_line}{more}")
    return out


def runs_table(runs: Sequence[Run], fmt: str = "text") -> str:
    """The table in `fmt`: text (aligned columns), md, csv or json."""
    rows = runs_rows(runs)
    if fmt == "json":
        return json.dumps(rows, indent=1)
    keys = [k for k in rows[0] if any(str(r[k]) for r in rows)]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    cells = [keys] + [[str(r[k]) for k in keys] for r in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines.insert(1, "|" + "|".join("---" for _ in keys) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


class History:
    """What `netdsl.train()` returns: the run's rows (one per epoch; `steps`: every N steps), its
    final figures, and its curves."""

    def __init__(self, run: Run, result: Any = None):
        self.run = run
        self.result = result

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.run.epochs

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.run.steps

    @property
    def test_accuracy(self) -> float | None:
        return self.rows[-1]["test_accuracy"] if self.rows else None

    def plot(self, path: str | None = None, x: str = "epoch"):
        """The curves as a matplotlib figure (shown inline in Jupyter); written to `path` if given."""
        return plot_runs([self.run], path, x)

    def __repr__(self) -> str:
        last = self.rows[-1] if self.rows else None
        figures = f", test accuracy {100 * last['test_accuracy']:.2f}% after epoch {last['epoch']}" if last else ""
        return f"History({len(self.rows)} epochs{figures})"

    def _repr_html_(self) -> str:
        return "<pre>" + runs_table([self.run]) + "</pre>"
