"""Diagrams with graphviz: block instances as clusters, residual skips drawn plainly, blocks
collapsible to one node and runs of identical blocks folded to one node marked x N.

`diagram(net, ...)` returns a graphviz.Digraph (a notebook shows it inline); `write(...)` turns
it into .svg/.png/.pdf through the system's `dot`, or .dot text, which needs no graphviz.
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from ..compiler import LayerInfo, Network
from ..errors import NetError
from ..files import write_atomic
from ..ops import OPS, STYLES, shape_text

FOLDABLE = ("activation",)  # styles folded into the layer before them: "conv 64 3x3 · relu"
FORMATS = ("svg", "png", "pdf", "dot")


@dataclass
class DrawOptions:
    shapes: bool = False  # tensor shapes on the edges
    rankdir: str = "TB"
    depth: int | None = None  # expand block instances down to this nesting depth (0: all collapsed)
    highlight: tuple[str, ...] = ()
    fold_activations: bool = True
    focus: str | None = None  # draw only this block instance (and what feeds it)
    legend: bool = True
    title: str | None = None
    changed: dict[str, str] = field(default_factory=dict)  # name -> 'added' | 'removed' | 'changed' (diff)
    id_prefix: str = ""  # keeps two networks apart in one picture (diff)
    as_cluster: str | None = None  # draw as a cluster of that name, to embed in another graph


@dataclass
class Unit:
    """One box in the picture: a layer (with folded activations), or a collapsed block run."""

    id: str
    layers: list[LayerInfo]
    cluster: tuple[tuple[str, str], ...]  # the expanded block instances around it
    collapsed: tuple[str, str] | None = None  # (instance path, block name) when it stands for a block
    instances: list[str] = field(default_factory=list)  # folded run: the instance paths

    @property
    def last(self) -> LayerInfo:
        return self.layers[-1]


def _signature(path: str, layers: list[LayerInfo]) -> tuple:
    """What a block instance looks like from inside: names relative to it, layers, shapes."""
    prefix = path + "/"
    return tuple((l.name[len(prefix):], l.written, l.shape) for l in layers if l.name.startswith(prefix))


def _units(net: Network, opts: DrawOptions) -> tuple[list[Unit], dict[str, str]]:
    depth = opts.depth
    units: list[Unit] = []
    owner: dict[str, str] = {}  # layer name -> unit id
    by_instance: dict[str, Unit] = {}
    layers = net.layers
    if opts.focus:
        prefix = opts.focus + "/"
        inside = [l for l in layers if l.name.startswith(prefix) or l.name == opts.focus]
        if not inside:
            raise NetError(f"--focus {opts.focus}: no block instance or layer of that name in {net.name}")
        feeding = {s for l in inside for s in l.inputs} - {l.name for l in inside}
        layers = [l for l in net.layers if l.name in feeding] + inside
    for layer in layers:
        block = layer.block
        if depth is not None and len(block) > depth:
            inst = block[depth]
            unit = by_instance.get(inst[0])
            if unit is None:
                unit = Unit(inst[0], [], block[:depth], collapsed=inst, instances=[inst[0]])
                by_instance[inst[0]] = unit
                units.append(unit)
            unit.layers.append(layer)
        else:
            unit = Unit(layer.name, [layer], block)
            units.append(unit)
        owner[layer.name] = unit.id
    units = _fold_runs(net, units, owner)
    if opts.fold_activations:
        units = _fold_activations(net, units, owner)
    return units, owner


def _fold_runs(net: Network, units: list[Unit], owner: dict[str, str]) -> list[Unit]:
    """Consecutive collapsed instances of the same block, identical inside and chained one into
    the next, become one unit marked x N (ResNet's identical bottlenecks)."""
    # each instance's signature from its own layers, once (asking the whole network per pair of
    # neighbours made a long run of blocks quadratic)
    signature = {u.collapsed[0]: _signature(u.collapsed[0], u.layers) for u in units if u.collapsed}
    out: list[Unit] = []
    for unit in units:
        prev = out[-1] if out else None
        if (prev is not None and unit.collapsed and prev.collapsed and prev.collapsed[1] == unit.collapsed[1]
                and prev.cluster == unit.cluster
                and signature[prev.instances[0]] == signature[unit.collapsed[0]]
                and {owner[s] for l in unit.layers for s in l.inputs} - {unit.id} == {prev.id}):
            prev.instances.append(unit.collapsed[0])
            prev.layers.extend(unit.layers)
            for l in unit.layers:
                owner[l.name] = prev.id
            continue
        out.append(unit)
    return out


def _fold_activations(net: Network, units: list[Unit], owner: dict[str, str]) -> list[Unit]:
    consumers: dict[str, int] = {}
    for l in net.layers:
        for s in l.inputs:
            consumers[s] = consumers.get(s, 0) + 1
    ids = {u.id: u for u in units}
    out: list[Unit] = []
    kept: set[str] = set()  # the ids in out: a set, since asking the list made long chains quadratic
    for unit in units:
        first = unit.layers[0]
        if (unit.collapsed is None and OPS[first.op].style in FOLDABLE and len(first.inputs) == 1
                and consumers.get(first.inputs[0], 0) == 1):
            host = ids.get(owner.get(first.inputs[0], ""))
            if host is not None and host.collapsed is None and host.cluster == unit.cluster and host.id in kept:
                host.layers.append(first)
                owner[first.name] = host.id
                continue
        out.append(unit)
        kept.add(unit.id)
    return out


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _short(name: str, cluster) -> str:
    if cluster:
        prefix = cluster[-1][0] + "/"
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _layer_label(unit: Unit) -> str:
    head = unit.layers[0]
    if head.op == "input":
        return f"<<b>input</b><br/>{_esc(shape_text(head.shape))}>"
    rest = [l.written for l in unit.layers[1:]]
    written = " · ".join([head.written] + rest)
    facts = shape_text(unit.last.shape)
    params = sum(l.params for l in unit.layers)
    if params:
        facts += f" · {params:,} params"
    return (f"<<b>{_esc(_short(head.name, unit.cluster))}</b><br/>{_esc(written)}"
            f"<br/><font point-size='9' color='#444444'>{_esc(facts)}</font>>")


def _collapsed_label(net: Network, unit: Unit) -> str:
    path, block = unit.collapsed
    depth = len(unit.cluster)
    children: dict[str, set[str]] = {}
    for l in unit.layers:
        if len(l.block) > depth + 1:
            child_path, child_block = l.block[depth + 1]
            children.setdefault(child_block, set()).add(child_path)
    n = len(unit.instances)
    if children:
        inside = ", ".join(f"{name} x {len(paths)}" for name, paths in children.items())
    else:
        inside = f"{len(unit.layers) // n} layers" + (" each" if n > 1 else "")
    title = _short(path, unit.cluster) if n == 1 else \
        f"{_short(unit.instances[0], unit.cluster)} .. {_short(unit.instances[-1], unit.cluster)}"
    kind = f"{block} x {n}" if n > 1 else block
    params = sum(l.params for l in unit.layers)
    macs = sum(l.macs for l in unit.layers)
    return (f"<<b>{_esc(title)}</b><br/>{_esc(kind)}: {_esc(inside)}<br/>"
            f"<font point-size='9' color='#444444'>{_esc(shape_text(unit.last.shape))} · {params:,} params"
            f" · {macs / 1e6:,.1f}M MACs</font>>")


def _skip_edges(net: Network) -> set[tuple[str, str]]:
    """Edges of the shortest branch into every add: the residual skip (identity or projection)."""
    g = net.graph
    skips: set[tuple[str, str]] = set()
    for layer in net.layers:
        if layer.op != "add":
            continue
        paths = []
        for src in layer.inputs:
            path, node = [(src, layer.name)], src
            while g.out_degree(node) == 1 and g.in_degree(node) == 1:
                (prev,) = g.predecessors(node)
                path.append((prev, node))
                node = prev
            paths.append(path)
        skips.update(min(paths, key=len))
    return skips


def diagram(net: Network, opts: DrawOptions | None = None) -> graphviz.Digraph:
    opts = opts or DrawOptions()
    if opts.rankdir not in ("TB", "LR", "BT", "RL"):
        raise NetError(f"--rankdir {opts.rankdir}: expected TB, LR, BT or RL")
    units, owner = _units(net, opts)
    known = {l.name for l in net.layers} | {p for l in net.layers for p, _ in l.block}
    for name in opts.highlight:
        if name not in known:
            from ..bind import did_you_mean
            raise NetError(f"--highlight {name}: no layer or block of that name in {net.name}",
                           hint=did_you_mean(name, known) or "netdsl summary lists the names")
    pre = opts.id_prefix
    dot = graphviz.Digraph(name=opts.as_cluster or net.name, graph_attr={
        "rankdir": opts.rankdir, "fontname": "Helvetica", "fontsize": "12", "nodesep": "0.25", "ranksep": "0.35",
        "ordering": "out", "labelloc": "t", "label": opts.title or f"{net.name}  ({net.totals().params:,} parameters, "
                                                f"{net.totals().macs / 1e9:.2f} GMACs)", "newrank": "true"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10",
                   "margin": "0.08,0.03", "penwidth": "0.8"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "arrowsize": "0.6", "color": "#555555"})
    # the cluster tree: instance path -> (block name, child clusters, units)
    tree: dict = {"children": {}, "units": [], "info": None}
    for unit in units:
        node = tree
        for inst in unit.cluster:
            node = node["children"].setdefault(inst[0], {"children": {}, "units": [], "info": inst})
        node["units"].append(unit)
    used_styles = set()

    def emit(graph, node):
        for unit in node["units"]:
            style = "block" if unit.collapsed else OPS[unit.layers[0].op].style
            used_styles.add(style)
            fill = STYLES[style][0] if style in STYLES else "#fdebd0"
            attrs = {"fillcolor": fill}
            names = {l.name for l in unit.layers} | set(unit.instances)
            if names & set(opts.highlight) or any(
                    any(p == h for p, _ in l.block) for l in unit.layers for h in opts.highlight):
                attrs.update(color="#e74c3c", penwidth="3")
            status = {opts.changed.get(n) for n in names} - {None}
            if status:
                colour = {"added": "#27ae60", "removed": "#c0392b", "changed": "#e67e22"}[sorted(status)[0]]
                attrs.update(color=colour, penwidth="3", style="rounded,filled,bold")
            if unit.collapsed:
                attrs.update(shape="box3d" if len(unit.instances) > 1 else "box", style="filled", margin="0.12,0.06")
            graph.node(pre + unit.id, _collapsed_label(net, unit) if unit.collapsed else _layer_label(unit), **attrs)
        for path, child in node["children"].items():
            inst_path, block = child["info"]
            with graph.subgraph(name=f"cluster_{pre}{path}") as sub:
                highlighted = path in opts.highlight
                sub.attr(label=f"{_short(path, ())} ({'side output' if block == 'side' else block})",
                         style="rounded,dashed" if block == "side" else "rounded", fontsize="11",
                         color="#e74c3c" if highlighted else "#888888", penwidth="3" if highlighted else "1",
                         fontname="Helvetica-Bold", bgcolor="#fbfcfc")
                emit(sub, child)

    emit(dot, tree)
    skips = _skip_edges(net)
    drawn: set[tuple[str, str]] = set()
    shapes = {l.name: l.shape for l in net.layers}
    for layer in net.layers:
        for src in layer.inputs:
            a, b = owner.get(src), owner.get(layer.name)
            if a is None or b is None or a == b or (a, b) in drawn:
                continue
            drawn.add((a, b))
            attrs = {}
            if opts.shapes:
                attrs["label"] = shape_text(shapes[src])
            if (src, layer.name) in skips:
                attrs.update(color="#c0392b", penwidth="2", style="bold")
                if not opts.shapes:
                    attrs["label"] = "skip"
                    attrs["fontcolor"] = "#c0392b"
            dot.edge(pre + a, pre + b, **attrs)
    if opts.legend:
        with dot.subgraph(name="cluster_legend") as leg:
            leg.attr(label="legend", fontsize="10", style="rounded", color="#bbbbbb", rank="same")
            order = [s for s in STYLES if s in used_styles] + (["block"] if "block" in used_styles else [])
            prev = None
            for style in order:
                fill, text = STYLES.get(style, ("#fdebd0", "collapsed block (x N: identical blocks folded)"))
                leg.node(f"legend_{style}", text, fillcolor=fill, fontsize="9", shape="box", style="filled")
                if prev:
                    leg.edge(prev, f"legend_{style}", style="invis")
                prev = f"legend_{style}"
    return dot


def dot_program() -> str | None:
    return shutil.which("dot")


def write(dot: graphviz.Digraph, out: str | os.PathLike) -> Path:
    """Render to the format the extension names; written atomically (temporary name, rename)."""
    target = Path(out)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise NetError(f"-o {out}: unknown diagram format '.{fmt}'", hint="use .svg, .png, .pdf or .dot")
    if fmt == "dot":
        data = dot.source.encode("utf-8")
    else:
        if dot_program() is None:
            raise NetError(f"-o {out}: graphviz's 'dot' program is not installed, and .{fmt} needs it",
                           hint="install graphviz (apt-get install graphviz, brew install graphviz); "
                                "'-o FILE.dot' works without it")
        try:
            data = subprocess.run(["dot", f"-T{fmt}"], input=dot.source.encode("utf-8"), capture_output=True,
                                  check=True, timeout=600).stdout
        except subprocess.CalledProcessError as exc:
            raise NetError(f"dot failed to draw {out}: {exc.stderr.decode(errors='replace').strip()}") from None
    write_atomic(target, data)
    return target
