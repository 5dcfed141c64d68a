"""The lecture's design arguments about a group of layers, each computed by rewriting the IR and
analysing the result with the same passes as any network (never from stored numbers):

- 1x1 reductions (inception, bottleneck): the group without every 1x1 conv that only feeds a
  larger conv or follows a pool ("naive"), beside the real one;
- stacked small filters (VGG): a run of stride-1 convs beside the one conv of the same receptive
  field, input and output depth;
- residual joins: what the shortcut costs, and a bottleneck beside a basic block of the same
  output width.

Each rule returns None where it does not apply: then the view says nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import networkx as nx

from ..compiler import Network, compile_source
from ..errors import NetError
from ..ir import inputs, schedule
from ..ops import OPS, freeze, shape_text, window_geometry
from ..passes import ANALYSIS, run_pipeline
from ..passes.rewrite import bypass, sole_consumer
from .model import Analysis, Group


@dataclass(frozen=True)
class Variant:
    label: str
    shape: tuple[int, ...]
    weights: int
    params: int
    macs: int
    depth: int
    nonlinearities: int


@dataclass(frozen=True)
class Argument:
    title: str
    variants: tuple[Variant, ...]
    lines: tuple[str, ...]


# sub-networks: a group cut out of its net, rewritten, analysed again ---------------------------------


def subgraph(an: Analysis, group: Group) -> nx.DiGraph | None:
    """The group as a network of its own: its one entry becomes the input. None for a group fed
    by several nodes or read from several (a range with a side output inside)."""
    if len(group.entries) != 1 or len(group.exits) != 1:
        return None
    src_graph, entry = an.graph, group.entries[0]
    g = nx.DiGraph()
    shape = an.layers[entry].shape
    g.add_node("input", op="input", attrs=freeze({"shape": shape}), span=None, block=(),
               written=OPS["input"].written({"shape": shape}))
    for n in group.members:
        d = src_graph.nodes[n]
        g.add_node(n, op=d["op"], attrs=d["attrs"], span=d["span"], block=d["block"], written=d["written"])
        for s in inputs(src_graph, n):
            g.add_edge("input" if s == entry else s, n, slot=src_graph.edges[s, n]["slot"])
    g.graph.update(name=group.name, input_shape=shape, source=an.net.source, file=an.net.file,
                   outputs=(("output", group.exits[0]),), warnings=(),
                   memory_limit=an.graph.graph.get("memory_limit", 1 << 62))
    return g


def subnet(an: Analysis, group: Group) -> Network | None:
    g = subgraph(an, group)
    return None if g is None else analysed(g)


def analysed(g: nx.DiGraph) -> Network | None:
    """The passes' verdict on a rewritten graph; None where the rewrite makes no valid network."""
    try:
        return Network(run_pipeline(g, ANALYSIS))
    except NetError:
        return None


def variant(label: str, net: Network) -> Variant:
    an = Analysis(net)
    t = net.totals()
    return Variant(label, net.layer(net.outputs[0][1]).shape, t.weights, t.params, t.macs, an.depth,
                   sum(1 for l in net.layers if OPS[l.op].style == "activation"))


# the rules ------------------------------------------------------------------------------------------


def _is_pointwise(g: nx.DiGraph, n: str) -> bool:
    """A weighted 1x1 window at stride 1 without groups: a 1x1 conv (from the op table, not the name)."""
    d = g.nodes[n]
    op = OPS[d["op"]]
    if not op.weighted or "kernel" not in d["attrs"]:
        return False
    return window_geometry([g.nodes[inputs(g, n)[0]]["shape"]], d["attrs"]) == ((1, 1), (1, 1), (0, 0)) \
        and d["attrs"].get("groups", 1) == 1


def _area(g: nx.DiGraph, n: str) -> int:
    d = g.nodes[n]
    if not OPS[d["op"]].weighted or "kernel" not in d["attrs"]:
        return 0
    (kh, kw), _, _ = window_geometry([g.nodes[inputs(g, n)[0]]["shape"]], d["attrs"])
    return kh * kw


def _chain_after(g: nx.DiGraph, n: str) -> tuple[list[str], str | None]:
    """`n` and the elementwise layers after it (bn, relu), and the node they feed."""
    chain, nxt = [n], sole_consumer(g, n)
    while nxt is not None and OPS[g.nodes[nxt]["op"]].kind == "elementwise" and len(inputs(g, nxt)) == 1:
        chain.append(nxt)
        nxt = sole_consumer(g, nxt)
    return chain, nxt


def _before(g: nx.DiGraph, n: str) -> str:
    """What feeds `n`, looking back past elementwise layers."""
    (src,) = inputs(g, n)
    while OPS[g.nodes[src]["op"]].kind == "elementwise" and len(inputs(g, src)) == 1:
        (src,) = inputs(g, src)
    return src


def reductions(g: nx.DiGraph) -> list[tuple[list[str], str]]:
    """(the 1x1 conv and its elementwise tail, why) for every 1x1 conv that only feeds a larger conv
    or follows a pool."""
    found = []
    for n in schedule(g):
        if g.nodes[n]["op"] == "input" or not _is_pointwise(g, n):
            continue
        if g.nodes[n]["shape"][0] >= g.nodes[inputs(g, n)[0]]["shape"][0]:
            continue  # keeps or widens the depth: not a reduction
        chain, nxt = _chain_after(g, n)
        if nxt is not None and _area(g, nxt) > 1:
            (kh, kw), _, _ = window_geometry([g.nodes[inputs(g, nxt)[0]]["shape"]], g.nodes[nxt]["attrs"])
            found.append((chain, f"reduces depth before a {kh}x{kw}"))
        elif OPS[g.nodes[_before(g, n)]["op"]].kind == "reduction":
            found.append((chain, "projects after a pool"))
    return found


def one_by_one_reductions(an: Analysis, group: Group) -> Argument | None:
    if group.kind in ("layer", "network"):
        return None
    real = subnet(an, group)
    if real is None:
        return None
    g = real.graph
    found = reductions(g)
    if not found:
        return None
    naive_graph = g.copy()
    for chain, _ in found:
        for n in chain:
            bypass(naive_graph, n)
    naive = analysed(naive_graph)
    if naive is None:
        return None
    a, b = variant("with 1x1 reductions (as written)", real), variant("naive: the 1x1 reductions removed", naive)
    lines = ["removed: " + "; ".join(f"{chain[0]} ({g.nodes[chain[0]]['written']}: {why})" for chain, why in found)]
    lines.append(f"the reductions cut multiply-adds {b.macs:,} -> {a.macs:,} ({b.macs / max(a.macs, 1):.1f}x fewer), "
                 f"parameters {b.params:,} -> {a.params:,}, output depth {b.shape[0]:,} -> {a.shape[0]:,}")
    return Argument("1x1 reductions", (a, b), tuple(lines))


def runs(g: nx.DiGraph) -> list[list[str]]:
    """Runs of two or more stride-1 convs with the same square kernel (larger than 1x1), each
    feeding the next through elementwise layers only."""
    found, used = [], set()
    for n in schedule(g):
        if n in used or not _stackable(g, n):
            continue
        run, k = [n], g.nodes[n]["attrs"]["kernel"]
        while True:
            chain, nxt = _chain_after(g, run[-1])
            if nxt is None or not _stackable(g, nxt) or g.nodes[nxt]["attrs"]["kernel"] != k:
                break
            run.append(nxt)
        if len(run) >= 2:
            found.append(run)
            used.update(run)
    return found


def _stackable(g: nx.DiGraph, n: str) -> bool:
    d = g.nodes[n]
    if d["op"] == "input" or _area(g, n) <= 1:
        return False
    (kh, kw), stride, _ = window_geometry([g.nodes[inputs(g, n)[0]]["shape"]], d["attrs"])
    return (kh == kw and stride == (1, 1) and d["attrs"].get("groups", 1) == 1
            and d["attrs"].get("padend", (0, 0)) == (0, 0))


def stacked_filters(an: Analysis, group: Group) -> Argument | None:
    if group.kind in ("layer", "network"):
        return None
    net = subnet(an, group)
    if net is None:
        return None
    g = net.graph
    found = runs(g)
    if not found:
        return None
    run = found[0]
    # the run's own non-linearities, the one after its last conv too (in the network, past the group)
    tail, _ = _chain_after(an.graph, run[-1])
    stacked = _cut(an.graph, _span(an.graph, run[0], tail[-1]))
    first = g.nodes[run[0]]
    (k, _), _, _ = window_geometry([g.nodes[inputs(g, run[0])[0]]["shape"]], first["attrs"])
    big = len(run) * (k - 1) + 1
    pads = [window_geometry([g.nodes[inputs(g, r)[0]]["shape"]], g.nodes[r]["attrs"])[2][0] for r in run]
    attrs = {**dict(first["attrs"]), "kernel": (big, big), "pad": (sum(pads), sum(pads)),
             "out": g.nodes[run[-1]]["attrs"]["out"]}
    single = nx.DiGraph()
    single.add_node("input", **stacked.nodes["input"])
    single.add_node(run[0], op="conv", attrs=freeze(attrs), span=first["span"], block=first["block"],
                    written=OPS["conv"].written(attrs))
    single.add_edge("input", run[0], slot=0)
    prev = run[0]
    for n in tail[1:]:
        single.add_node(n, **{k_: stacked.nodes[n][k_] for k_ in ("op", "attrs", "span", "block", "written")})
        single.add_edge(prev, n, slot=0)
        prev = n
    single.graph.update({**stacked.graph, "outputs": (("output", prev),)})
    a_net, b_net = analysed(stacked), analysed(single)
    if a_net is None or b_net is None:
        return None
    a = variant(f"{len(run)} stacked {k}x{k} convs (as written)", a_net)
    b = variant(f"one {big}x{big} conv, the same receptive field", b_net)
    cin, cout = stacked.graph["input_shape"][0], a.shape[0]
    widths = {cin} | {g.nodes[r]["attrs"]["out"] for r in run}
    lines = [f"receptive field: {len(run)} {k}x{k} convs at stride 1 see {big}x{big} of their input, as one "
             f"{big}x{big} conv does"]
    if len(widths) == 1:
        c = cin
        lines.append(f"weights: {len(run)}*{k}*{k}*C*C = {len(run) * k * k}C² = {a.weights:,} against "
                     f"{big}*{big}*C*C = {big * big}C² = {b.weights:,} (C = {c})")
    else:
        lines.append(f"weights: {a.weights:,} stacked against {b.weights:,} for one {big}x{big} "
                     f"({cin} channels in, {cout} out)")
    lines.append(f"non-linearities: {a.nonlinearities} against {b.nonlinearities}; weighted layers: {a.depth} against "
                 f"{b.depth}; multiply-adds {a.macs:,} against {b.macs:,}")
    if len(found) > 1:
        lines.append(f"(the first of {len(found)} runs here; name a range to see another)")
    return Argument("stacked small filters", (a, b), tuple(lines))


def _span(g: nx.DiGraph, first: str, last: str) -> list[str]:
    order = schedule(g)
    return order[order.index(first): order.index(last) + 1]


def _cut(g: nx.DiGraph, members: list[str]) -> nx.DiGraph:
    """The members (a chain in `g`) as a network of their own."""
    entry = inputs(g, members[0])[0]
    h = nx.DiGraph()
    shape = _shape_of(g, entry)
    h.add_node("input", op="input", attrs=freeze({"shape": shape}), span=None, block=(),
               written=OPS["input"].written({"shape": shape}))
    for n in members:
        d = g.nodes[n]
        h.add_node(n, op=d["op"], attrs=d["attrs"], span=d["span"], block=d["block"], written=d["written"])
        for s in inputs(g, n):
            h.add_edge(s if s in members else "input", n, slot=g.edges[s, n]["slot"])
    h.graph.update({**g.graph, "input_shape": shape, "outputs": (("output", members[-1]),)})
    return h


def _shape_of(g: nx.DiGraph, n: str) -> tuple[int, ...]:
    if "shape" in g.nodes[n]:
        return g.nodes[n]["shape"]
    return g.nodes[n]["attrs"]["shape"]  # the input node of a sub-network


def residual_join(an: Analysis, group: Group) -> Argument | None:
    """What the shortcut costs, and the block against a basic block of the same output width where
    its residual branch has 1x1 reductions (a bottleneck)."""
    if group.join is None or not _sums(an, group.join):
        return None
    parts = an.parts(group)
    shortcut = min(parts, key=lambda p: (p.depth, p.params))
    residual = max(parts, key=lambda p: (p.depth, p.params))
    lines = ["shortcut: " + shortcut_text(an, shortcut, group)]
    variants: tuple[Variant, ...] = ()
    real = subnet(an, group)
    branch = subnet(an, residual) if residual.kind == "branch" else None
    if real is not None and branch is not None and _is_bottleneck(branch.graph, an.layers[group.join].shape[0]):
        basic = _basic_block(an, group, residual)
        if basic is not None:
            width = real.layer(real.outputs[0][1]).shape[0]
            a = variant(f"{group.block} (as written)", real)
            b = variant(f"basic block: two 3x3 convs at {width}", basic)
            variants = (a, b)
            lines.append(f"against a basic block of the same output width ({width} channels): parameters "
                         f"{a.params:,} against {b.params:,}, multiply-adds {a.macs:,} against {b.macs:,} "
                         f"({b.macs / max(a.macs, 1):.1f}x), weighted layers {a.depth} against {b.depth}")
    return Argument("residual join", variants, tuple(lines))


def _is_bottleneck(g: nx.DiGraph, width: int) -> bool:
    """A residual branch whose 1x1 conv narrows the depth for a larger conv, below the block's width."""
    for n in schedule(g):
        if g.nodes[n]["op"] != "input" and _is_pointwise(g, n):
            _, nxt = _chain_after(g, n)
            if nxt is not None and _area(g, nxt) > 1 and g.nodes[n]["shape"][0] < width:
                return True
    return False


def _sums(an: Analysis, join: str) -> bool:
    """A join that adds (every input has the output's shape), not one that stacks channels."""
    out = an.layers[join].shape
    ins = an.in_shapes(join)
    return len(ins) > 1 and all(s == out for s in ins)


def shortcut_kind(an: Analysis, shortcut: Group) -> str:
    """`identity`, or `1x1 conv /2 projection, 131,072 weights`."""
    if shortcut.kind == "identity":
        return "identity"
    weighted = [n for n in shortcut.members if OPS[an.layers[n].op].weighted]
    if len(weighted) != 1 or "kernel" not in an.graph.nodes[weighted[0]]["attrs"]:
        return f"{len(weighted)} weighted layers, {shortcut.weights:,} weights"
    (kh, kw), (sh, _), _ = window_geometry(an.in_shapes(weighted[0]), an.graph.nodes[weighted[0]]["attrs"])
    return f"{kh}x{kw} conv /{sh} projection, {an.layers[weighted[0]].weights:,} weights"


def shortcut_text(an: Analysis, shortcut: Group, group: Group) -> str:
    if shortcut.kind == "identity":
        return "identity (the input itself: no weights, no multiply-adds)"
    weighted = [an.layers[n] for n in shortcut.members if OPS[an.layers[n].op].weighted]
    what = " + ".join(an.layers[n].written for n in shortcut.members)
    share = shortcut.params / group.params if group.params else 0
    kind = "projection" if weighted else "branch"
    return (f"{what} {kind}: {sum(l.weights for l in weighted):,} weights, {shortcut.params:,} parameters in all "
            f"({share:.1%} of the block's), {shortcut.macs:,} multiply-adds")


def _basic_block(an: Analysis, group: Group, residual: Group) -> Network | None:
    """The basic block (two 3x3 convs and a shortcut) on the same input, with the same output
    width, stride and normalisation, analysed as a network of its own."""
    (c, h, w) = an.layers[group.entries[0]].shape if len(an.layers[group.entries[0]].shape) == 3 else (0, 0, 0)
    if not c:
        return None
    out = an.layers[group.join].shape[0]
    convs = [an.layers[n] for n in residual.members if OPS[an.layers[n].op].weighted]
    stride = max(an.graph.nodes[l.name]["attrs"].get("stride", (1, 1))[0] for l in convs)
    bias = "" if all(an.graph.nodes[l.name]["attrs"].get("bias", True) for l in convs) else " nobias"
    norm = "; bn" if any(OPS[an.layers[n].op].kind == "elementwise" and an.layers[n].params
                         for n in residual.members) else ""
    slash = f" /{stride}" if stride != 1 else ""
    text = (f"network basic\ninput {c}x{h}x{w}\nadd {{\n"
            f"  {{ conv {out} 3x3{slash} pad 1{bias}{norm}; relu; conv {out} 3x3 pad 1{bias}{norm} }}\n"
            f"  shortcut\n}}\nrelu\n")
    try:
        return compile_source(text, "<basic block>")
    except NetError:
        return None


RULES: tuple[Callable[[Analysis, Group], Argument | None], ...] = (one_by_one_reductions, stacked_filters,
                                                                   residual_join)


def arguments(an: Analysis, group: Group) -> list[Argument]:
    return [a for a in (rule(an, group) for rule in RULES) if a is not None]

