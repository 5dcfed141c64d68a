"""From layers read out of a model file to netdsl text and a state dict, for every importer.

An importer reads its format into Layers (op, attributes, inputs, tensors: netdsl's terms) and
hands them here: the data-flow graph becomes netdsl's structure by its cut points (the
immediate dominators between the input and each output): between two cuts a single layer, or a
merge (concat/add) whose branches are the same decomposition again from the fork, `shortcut`
where a branch is the fork itself. A graph output off the trunk becomes a `side { }` after the
layer it leaves from. Then blocks.py recovers the repeated blocks, and the text is compiled
(what is written must compile) to name the state dict's tensors as netdsl names them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import networkx as nx
import numpy as np

from ..errors import NetError, cut
from ..ops import OPS
from .blocks import CallItem, LayerItem, MergeItem, RepeatItem, SideItem, layer_order, normalise_shortcuts, recover
from .labels import Labels, comment, default_like, plain, safe

# names a tool numbered its nodes with (n12, node_7, _3): they mean nothing, so they label nothing
NUMBERED = re.compile(r"^(n|node|op)?_?\d+$", re.IGNORECASE)


@dataclass
class Layer:
    """One netdsl layer: its op and attributes, the source's node it came from, its inputs (layer ids)."""

    id: str
    op: str
    attrs: dict
    inputs: list[str]
    source: str  # the source's name for it
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # param/buffer name -> array


class _Writer:
    def __init__(self, r, outputs: list[tuple[str, str]]):
        self.r = r
        self.g = nx.DiGraph()
        for lid, layer in r.layers.items():
            self.g.add_node(lid)
            for src in layer.inputs:
                self.g.add_edge(src, lid)
        trunk = outputs[0][1]
        on_trunk = nx.ancestors(self.g, trunk) | {trunk}
        self.sides: dict[str, list[tuple[str, str]]] = {}
        for name, end in outputs[1:]:
            own = (nx.ancestors(self.g, end) | {end}) - on_trunk
            roots = {src for n in own for src in self.g.predecessors(n) if src in on_trunk}
            if len(roots) != 1:
                raise NetError(f"{r.path}: output '{name}' leaves the trunk at {len(roots)} places; a netdsl side "
                               "output leaves from one layer")
            self.sides.setdefault(roots.pop(), []).append((name, end))
        self.trunk = trunk

    def item(self, lid: str) -> LayerItem:
        layer = self.r.layers[lid]
        return LayerItem(lid, layer.op, layer.attrs)

    def region(self, start: str, end: str) -> list:
        """The items after `start` up to `end`, through the cut points between them."""
        idom = nx.immediate_dominators(self.g.subgraph(self.between(start, end)), start)
        chain = [end]
        while chain[-1] != start:
            chain.append(idom[chain[-1]])
        chain.reverse()
        items: list = []
        for prev, cur in zip(chain, chain[1:]):
            items.append(self.step(prev, cur))
            for name, side_end in self.sides.get(cur, []):
                items.append(SideItem(name if plain(name) and name != "output" else None, self.region(cur, side_end)))
        return items

    def between(self, start: str, end: str) -> set[str]:
        """The nodes on paths from `start` to `end`: `end`'s ancestors, walked back no further than
        `start`. `start` dominates `end` (every path from the input to `end` passes it), so this is
        exactly the descendants of `start` that reach `end`, found in time proportional to the
        region itself, not to the whole graph (which made nested regions quadratic)."""
        seen = {start, end}
        stack = [end]
        while stack:
            for src in self.g.predecessors(stack.pop()):
                if src not in seen:
                    seen.add(src)
                    stack.append(src)
        return seen

    def step(self, prev: str, cur: str):
        layer = self.r.layers[cur]
        if layer.inputs == [prev]:
            return self.item(cur)
        if OPS[layer.op].kind != "merge":
            raise NetError(f"{self.r.path}: node '{layer.source}' reads from more than one place, which only "
                           "concat, add and gate do in netdsl")
        if layer.inputs.count(prev) > 1:
            raise NetError(f"{self.r.path}: {('node ' + repr(layer.source)) if layer.source else 'a ' + layer.op} "
                           f"reads the layer its branches leave from {layer.inputs.count(prev)} times",
                           hint=f"netdsl's {layer.op} holds its input once (one `shortcut` branch)")
        branches = []
        for src in layer.inputs:
            # the fork itself: add's shortcut (identity or projection), or in a concat (DenseNet's dense
            # layer) and a gate (squeeze-and-excitation's map) the input itself
            branches.append(None if src == prev else self.region(prev, src))
        return MergeItem(cur, layer.op, branches, source=layer.source if plain(layer.source) else None)


def render(items: list) -> list[str]:
    """netdsl lines for a list of items: `concat { {..} {..} }` with one branch a line where it fits."""
    out: list[str] = []
    for item in items:
        if isinstance(item, LayerItem):
            line = (f"{item.label}: " if item.label else "") + OPS[item.op].written(item.attrs)
            out.append(line + (f"  # {item.comment}" if item.comment else ""))
        elif isinstance(item, MergeItem):
            out.append(item.kind + " {")
            for branch in item.branches:
                if branch is None:
                    out.append("  shortcut" + (" zeropad" if item.shortcut_mode == "zeropad" else ""))
                    continue
                body = render(branch)
                if len(body) <= 9 and all("{" not in l and "}" not in l for l in body) and sum(map(len, body)) < 100:
                    out.append("  { " + "; ".join(body) + " }")
                else:
                    out += ["  {"] + ["    " + l for l in body] + ["  }"]
            out.append("}")
        elif isinstance(item, SideItem):
            out.append(f"{item.name + ': ' if item.name else ''}side {{")
            out += ["  " + l for l in render(item.body)]
            out.append("}")
        elif isinstance(item, CallItem):
            out.append(f"{item.label + ': ' if item.label else ''}{item.block} {' '.join(item.args)}".rstrip())
        elif isinstance(item, RepeatItem):
            out.append(f"repeat {item.count} {item.call.block} {' '.join(item.call.args)}".rstrip())
    return out


def write_network(layers: dict[str, Layer], shapes: dict, outputs: list[tuple[str, str]], input_shape: tuple,
                  name: str, comment: str, path: str) -> tuple[str, dict[str, np.ndarray]]:
    """(.net text, state dict) for the layers an importer read; `outputs`: (name, layer id), trunk first."""
    if not outputs:
        raise NetError(f"{path}: the model declares no output")
    w = _Writer(SimpleNamespace(layers=layers, path=path), outputs)
    items = w.region("input", w.trunk)
    normalise_shortcuts(items, shapes, "input")
    defs, items = recover(items, render)
    header = [f"# {comment}", f"network {network_name(name, path)}", "input " + "x".join(map(str, input_shape)), ""]
    order = layer_order(items)
    pending = _label(items, layers, defs)
    text = "\n".join(header + defs + render(items)) + "\n"
    net = _compile(text, path)
    produced = [n for n in net.graph.nodes if net.graph.nodes[n]["op"] != "input"]
    if len(produced) != len(order):
        raise NetError(f"{path}: the imported network has {len(produced)} layers for the model's {len(order)}")
    if pending:  # names netdsl might give itself (conv3): labels only where netdsl's name differs
        given = dict(zip(order, produced))
        names = set(produced)
        relabel = False
        for item, label, note in pending:
            if label == given[item.lid]:
                item.comment = note
            elif label not in names:
                item.label, item.comment = label, note
                names.add(label)
                relabel = True
        text = "\n".join(header + defs + render(items)) + "\n"
        if relabel:
            net = _compile(text, path)
            produced = [n for n in net.graph.nodes if net.graph.nodes[n]["op"] != "input"]
    return text, _state(layers, net, produced, order, path)


def _label(items: list, layers: dict[str, Layer], defs: list[str]) -> list:
    """Labels and comments for the top-level lines from the source's names (labels.py), every one
    unique and safe to parse. Returns (item, label, comment) for the labels netdsl might give
    itself (conv3, basic2): those wait until the compiled names are known."""
    blocks = {line[6:].split("(", 1)[0] for line in defs if line.startswith("block ")}
    taken = Labels(blocks)
    pending = []
    sides = 0
    for item in items:
        if isinstance(item, CallItem) and item.label is not None:
            item.label = taken.claim(item.label) if plain(item.label) and not default_like(item.label, blocks) else None
        elif isinstance(item, SideItem):
            sides += 1  # netdsl calls the k-th side output aux{k}: a name of that form only where it is that
            if item.name is not None and default_like(item.name, blocks):
                item.name = item.name if item.name == f"aux{sides}" else None
            elif item.name is not None:
                item.name = taken.claim(item.name)
    for item in items:
        if not isinstance(item, LayerItem):
            continue
        source = layers[item.lid].source or ""
        if not source or NUMBERED.match(source):
            continue  # a tool's numbering means nothing: netdsl's own name reads better
        label, note = (source, None) if plain(source) else (safe(source), comment(source))
        if default_like(label, blocks):
            if label not in taken.taken:
                pending.append((item, label, note))
            continue
        item.label, item.comment = taken.claim(label), note
    return pending


def _compile(text: str, path: str):
    """The imported text compiled (what is written must compile). The text's size is bounded as a
    .net file's is, so that what is written can be read back; a refusal names the model file and
    the line of the text it is about, never a .net file that does not exist."""
    from ..compiler import MAX_SOURCE_BYTES, compile_source
    size = len(text.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise NetError(f"{path}: its netdsl text would be {size:,} bytes, more than the {MAX_SOURCE_BYTES:,} a "
                       ".net file may hold", hint="netdsl reads .net files of at most 1 MiB (docs/interchange.md)")
    try:
        return compile_source(text, path + " (imported)")
    except NetError as err:
        lines = text.splitlines()
        line = err.span.line if err.span is not None and 1 <= err.span.line <= len(lines) else None
        where = f" (its netdsl text, line {line}: `{cut(lines[line - 1].strip(), 80)}`)" if line else ""
        raise NetError(f"{path}: {err.message}{where}", hint=err.hint) from None


def _state(layers: dict[str, Layer], net, produced: list[str], order: list[str], path: str) -> dict[str, np.ndarray]:
    """The layers' tensors under netdsl's names, each of the shape netdsl needs and finite in float32."""
    state: dict[str, np.ndarray] = {}
    for node, lid in zip(produced, order):
        needed = dict(net.graph.nodes[node]["params"]) | dict(net.graph.nodes[node]["buffers"])
        for pname, array in layers[lid].tensors.items():
            if tuple(np.shape(array)) != tuple(needed.get(pname, ())):
                raise NetError(f"{path}: node '{layers[lid].source}' has a {pname} of shape {list(np.shape(array))}; "
                               f"the layer netdsl reads it as needs {list(needed.get(pname, ()))}")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below, by name
                values = np.ascontiguousarray(array, dtype=np.float32)
            if not np.isfinite(values).all():
                raise NetError(f"{path}: node '{layers[lid].source}' has a {pname} holding NaN, infinite or values "
                               "beyond float32's range", hint="netdsl's weights are finite float32 numbers")
            state[f"{node}.{pname}"] = values
    return state


def network_name(name: str | None, path: str) -> str:
    """The model's own name where it can be a netdsl network name, else one from the file's name."""
    return name if plain(name) else stem_name(path)


def stem_name(path: str) -> str:
    """A network name from a file name: `bvlc_alexnet.prototxt` -> bvlc_alexnet."""
    base = os.path.basename(path).rsplit(".", 1)[0]
    return base if plain(base) else safe(base) if base.strip("._- ") else "imported"
