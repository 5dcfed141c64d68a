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

from ..errors import NetError
from ..ops import OPS
from .blocks import CallItem, LayerItem, MergeItem, RepeatItem, SideItem, layer_order, normalise_shortcuts, recover

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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
        between = (nx.descendants(self.g, start) | {start}) & (nx.ancestors(self.g, end) | {end})
        idom = nx.immediate_dominators(self.g.subgraph(between), start)
        chain = [end]
        while chain[-1] != start:
            chain.append(idom[chain[-1]])
        chain.reverse()
        items: list = []
        for prev, cur in zip(chain, chain[1:]):
            items.append(self.step(prev, cur))
            for name, side_end in self.sides.get(cur, []):
                items.append(SideItem(name if NAME.match(name) and name != "output" else None,
                                      self.region(cur, side_end)))
        return items

    def step(self, prev: str, cur: str):
        layer = self.r.layers[cur]
        if layer.inputs == [prev]:
            return self.item(cur)
        if layer.op not in ("concat", "add"):
            raise NetError(f"{self.r.path}: node '{layer.source}' reads from more than one place, which only "
                           "concat and add do in netdsl")
        branches = []
        for src in layer.inputs:
            if src == prev:
                if layer.op != "add":
                    raise NetError(f"{self.r.path}: {('node ' + repr(layer.source)) if layer.source else 'a concat'} "
                                   "concatenates the layer its branches leave from with a later one",
                                   hint="netdsl's concat branches each hold layers; an identity branch is "
                                        "add's shortcut only")
                branches.append(None)
            else:
                branches.append(self.region(prev, src))
        label = layer.source if NAME.match(layer.source or "") and layer.source not in OPS else None
        return MergeItem(cur, layer.op, branches, source=label)


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
                    out.append("  shortcut")
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
    from ..compiler import compile_source

    w = _Writer(SimpleNamespace(layers=layers, path=path), outputs)
    items = w.region("input", w.trunk)
    normalise_shortcuts(items, shapes, "input")
    defs, items = recover(items, render)
    header = [f"# {comment}", f"network {name}", "input " + "x".join(map(str, input_shape)), ""]
    order = layer_order(items)
    top = [item for item in items if isinstance(item, LayerItem)]
    for _ in range(3):  # the source's names as labels on the trunk's own lines, where netdsl's differ
        text = "\n".join(header + defs + render(items)) + "\n"
        net = compile_source(text, path + ".net")
        produced = [n for n in net.graph.nodes if net.graph.nodes[n]["op"] != "input"]
        if len(produced) != len(order):
            raise NetError(f"{path}: the imported network has {len(produced)} layers for the model's {len(order)}")
        given = dict(zip(order, produced))
        relabel = [item for item in top if item.label is None and layers[item.lid].source != given[item.lid]
                   and NAME.match(layers[item.lid].source or "") and not NUMBERED.match(layers[item.lid].source)
                   and layers[item.lid].source not in given.values()
                   and layers[item.lid].source not in OPS and layers[item.lid].source != "output"]
        for item in top:  # a name that cannot be a label is kept as a comment
            source = layers[item.lid].source or ""
            if source and not NAME.match(source) and source != given[item.lid] and "\n" not in source:
                item.comment = source
        if not relabel:
            text = "\n".join(header + defs + render(items)) + "\n"
            break
        for item in relabel:
            item.label = layers[item.lid].source
    state: dict[str, np.ndarray] = {}
    for node, lid in zip(produced, order):
        needed = dict(net.graph.nodes[node]["params"]) | dict(net.graph.nodes[node]["buffers"])
        for pname, array in layers[lid].tensors.items():
            if tuple(np.shape(array)) != tuple(needed.get(pname, ())):
                raise NetError(f"{path}: node '{layers[lid].source}' has a {pname} of shape {list(np.shape(array))}; "
                               f"the layer netdsl reads it as needs {list(needed.get(pname, ()))}")
            state[f"{node}.{pname}"] = np.ascontiguousarray(array, dtype=np.float32)
    return text, state


def stem_name(path: str) -> str:
    """A network name from a file name: `bvlc_alexnet.prototxt` -> bvlc_alexnet."""
    base = os.path.basename(path).rsplit(".", 1)[0]
    clean = re.sub(r"[^A-Za-z0-9_]", "_", base) or "imported"
    return clean if NAME.match(clean) else "n_" + clean
