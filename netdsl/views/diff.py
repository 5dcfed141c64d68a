"""`netdsl diff A B`: what changed between two networks, layer by layer (matched by name)."""
from __future__ import annotations

from dataclasses import dataclass

from ..compiler import LayerInfo, Network
from ..ops import shape_text


@dataclass(frozen=True)
class Change:
    name: str
    status: str  # added | removed | changed (as written) | follows (same layer, changed by what feeds it)
    before: LayerInfo | None
    after: LayerInfo | None

    def describe(self) -> list[str]:
        a, b = self.before, self.after
        if a is None:
            return [f"{b.written} -> {shape_text(b.shape)}, {b.params:+,} params, {b.macs:+,} MACs"]
        if b is None:
            return [f"{a.written} ({shape_text(a.shape)}), {-a.params:+,} params, {-a.macs:+,} MACs"]
        full = a.written != b.written  # the layer itself changed; else only what feeds it did
        # (what, full line, compact line) for each fact that differs, in a fixed order
        facts = [
            (a.shape != b.shape, f"output {shape_text(a.shape)} => {shape_text(b.shape)}", None),
            (a.params != b.params, f"params {a.params:,} => {b.params:,} ({b.params - a.params:+,})",
             f"params {b.params - a.params:+,}"),
            (a.macs != b.macs, f"MACs {a.macs:,} => {b.macs:,} ({b.macs - a.macs:+,})", f"MACs {b.macs - a.macs:+,}"),
            (a.rf.size != b.rf.size, f"receptive field {a.rf.text()} => {b.rf.text()}",
             f"RF {a.rf.text()} => {b.rf.text()}"),
        ]
        if not full:  # a consequence of a change upstream: one line
            return ["(follows) " + "; ".join(compact or line for differs, line, compact in facts if differs)]
        return [f"{a.written}  =>  {b.written}"] + [line for differs, line, _ in facts if differs]


def compare(a: Network, b: Network) -> list[Change]:
    before = {l.name: l for l in a.layers}
    after = {l.name: l for l in b.layers}
    changes = []
    for l in a.layers:
        if l.name not in after:
            changes.append(Change(l.name, "removed", l, None))
        else:
            m = after[l.name]
            if l.written != m.written:
                changes.append(Change(l.name, "changed", l, m))
            elif (l.shape, l.params, l.macs, l.rf.size) != (m.shape, m.params, m.macs, m.rf.size):
                changes.append(Change(l.name, "follows", l, m))
    for l in b.layers:
        if l.name not in before:
            changes.append(Change(l.name, "added", None, l))
    return changes


def report(a: Network, b: Network, changes: list[Change]) -> str:
    lines = [f"{a.name} ({a.file}) => {b.name} ({b.file})"]
    if not changes:
        lines.append("no differences: the same layers, shapes, parameters and MACs")
    for c in changes:
        mark = {"added": "+", "removed": "-", "changed": "~", "follows": "."}[c.status]
        details = c.describe()
        lines.append(f"{mark} {c.name:24} {details[0] if details else ''}")
        lines.extend(f"  {'':24} {d}" for d in details[1:])
    ta, tb = a.totals(), b.totals()
    lines.append("")
    lines.append(f"total params  {ta.params:>16,} => {tb.params:>16,}  ({tb.params - ta.params:+,})")
    lines.append(f"total MACs    {ta.macs:>16,} => {tb.macs:>16,}  ({tb.macs - ta.macs:+,})")
    lines.append(f"activations   {ta.activations:>16,} => {tb.activations:>16,}  ({tb.activations - ta.activations:+,})")
    counts = {s: sum(1 for c in changes if c.status == s) for s in ("added", "removed", "changed", "follows")}
    lines.append(f"{counts['changed']} changed, {counts['added']} added, {counts['removed']} removed, "
                 f"{counts['follows']} following from those")
    return "\n".join(lines)


def side_by_side(a: Network, b: Network, changes: list[Change], rankdir: str = "TB"):
    """Both networks in one picture, changed layers outlined (orange changed, green added,
    red removed)."""
    import graphviz

    from .render import DrawOptions, diagram
    status = {c.name: c.status for c in changes if c.status != "follows"}
    g = graphviz.Digraph(name="diff", graph_attr={
        "rankdir": rankdir, "fontname": "Helvetica", "labelloc": "t", "newrank": "true",
        "label": f"{a.name} vs {b.name}: orange changed, green added, red removed"})
    for tag, net, marks in (("A", a, {k: v for k, v in status.items() if v != "added"}),
                            ("B", b, {k: v for k, v in status.items() if v != "removed"})):
        g.subgraph(diagram(net, DrawOptions(rankdir=rankdir, legend=False, changed=marks, id_prefix=f"{tag}_",
                                            title=f"{tag}: {net.name}", as_cluster=f"cluster_{tag}")))
    return g
