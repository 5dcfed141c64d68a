"""The analysed network every view reads: per node and per group of nodes (block instance,
labelled group, side output, branch, range of trunk layers, the whole network) the shapes,
counts, receptive field and depth. Views lay these facts out; they compute none of their own.

Depth is the lecture's: weighted layers (conv and fc, the op table's `weighted`) on the longest
path. A group's receptive field "added" is the field its output has on its own input: the same
growth rule as passes/receptive_field, started from one pixel at the group's entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..compiler import LayerInfo, Network
from ..errors import NetError
from ..ir import ReceptiveField
from ..ops import OPS
from ..passes.receptive_field import grow

NETWORK = "network"  # the name that means the whole net
RANGE = ".."  # `conv3_1..conv3_3`: trunk layers from one to the other
DEPTH_RULE = ("depth: weighted layers (conv and fc) on the longest input-to-output path; pooling, activations, "
              "normalisation, joins and the head do not count, nor side outputs")
ONE = ReceptiveField((1, 1), (1, 1), (0.5, 0.5))


@dataclass(frozen=True)
class Group:
    """A named set of layers and what it adds up to."""

    name: str
    kind: str  # block | group | side | branch | range | network
    block: str  # the block's name (inception, bottleneck, stage), or the kind again
    members: tuple[str, ...]  # node names in schedule order
    entries: tuple[str, ...]  # nodes outside the group that feed it
    exits: tuple[str, ...]  # members read outside the group, or an output of the network
    join: str | None  # the merge node that makes the group's output, where there is one
    weights: int
    biases: int
    macs: int
    activations: int
    depth: int
    rf: ReceptiveField  # on the group's own input

    @property
    def params(self) -> int:
        return self.weights + self.biases


class Analysis:
    """One network, analysed for people: `analysis.group(name)` for anything a person can name."""

    def __init__(self, net: Network):
        self.net = net
        self.graph = net.graph
        self.layers: dict[str, LayerInfo] = {l.name: l for l in net.layers}
        self.order = [l.name for l in net.layers]
        self.depth_to: dict[str, int] = {}  # weighted layers on the longest path from the input, inclusive
        for l in net.layers:
            self.depth_to[l.name] = OPS[l.op].weighted + max((self.depth_to[s] for s in l.inputs), default=0)

    # the network ---------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self.depth_to[self.net.outputs[0][1]]

    def in_shapes(self, name: str) -> list[tuple[int, ...]]:
        return [self.layers[s].shape for s in self.layers[name].inputs]

    # what a person can name ----------------------------------------------------------------------
    @cached_property
    def instances(self) -> dict[str, str]:
        """Block instances, labelled groups and side outputs: path -> block name, in source order."""
        found: dict[str, str] = {}
        for l in self.net.layers:
            for path, block in l.block:
                found.setdefault(path, block)
        return found

    @cached_property
    def branches(self) -> dict[str, str]:
        """Branch path (`inception3a/b2`) -> the merge node it feeds."""
        found: dict[str, str] = {}
        for l in self.net.layers:
            if OPS[l.op].kind != "merge":
                continue
            prefix = l.name[: l.name.rfind("/") + 1]
            for src in l.inputs:
                rest = src[len(prefix):] if src.startswith(prefix) else ""
                if "/" in rest:
                    found.setdefault(prefix + rest.split("/")[0], l.name)
        return found

    @cached_property
    def members(self) -> dict[str, list[str]]:
        """Block instance or branch path -> its layers, in order: gathered in one walk over the
        layers (a walk per group made the summary of 20,000 layers quadratic)."""
        found: dict[str, list[str]] = {path: [] for path in [*self.instances, *self.branches]}
        for n in self.order:
            paths = {p for p, _ in self.layers[n].block}
            parts = n.split("/")
            paths.update(p for p in ("/".join(parts[:k]) for k in range(1, len(parts))) if p in self.branches)
            for path in paths:
                found[path].append(n)
        return found

    def names(self) -> list[str]:
        """Every group name, in source order (layers and ranges aside)."""
        return [NETWORK] + list(self.instances) + sorted(self.branches, key=self._first_index)

    def _first_index(self, path: str) -> int:
        return self.position[self.members[path][0]]

    @cached_property
    def position(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.order)}

    def kind_of(self, name: str) -> str:
        """layer | block | group | side | branch | range | network, or a NetError with did-you-mean."""
        if name == NETWORK:
            return "network"
        if name in self.layers:
            return "layer"
        if name in self.instances:
            block = self.instances[name]
            return block if block in ("side", "group") else "block"
        if name in self.branches:
            return "branch"
        if RANGE in name:
            return "range"
        raise self._unknown(name)

    def _unknown(self, name: str) -> NetError:
        from ..bind import did_you_mean
        # Suggest what stands at the same level: a top-level name gets top-level layers, blocks and
        # groups; a name inside a block gets its siblings there. Never a layer inside another block.
        scope = name[: name.rfind("/") + 1]
        candidates = [n for n in [*self.layers, *self.instances, *self.branches, NETWORK]
                      if n.startswith(scope) and "/" not in n[len(scope):]]
        return NetError(f"no layer, block, group or branch named '{name}' in {self.net.name}",
                        hint=did_you_mean(name, candidates)
                        or "netdsl summary --blocks lists the blocks; netdsl summary the layers")

    # groups ----------------------------------------------------------------------------------------
    def group(self, name: str) -> Group:
        kind = self.kind_of(name)
        if kind == "layer":
            return self._make(name, "layer", self.layers[name].op, [name])
        if kind == "network":
            return self._make(name, "network", "network", self.order)
        if kind == "range":
            return self._make(name, "range", "range", self._range(name))
        if kind == "branch":
            return self._make(name, "branch", "branch", self.members[name])
        return self._make(name, kind, self.instances[name], self.members[name])

    def _range(self, name: str) -> list[str]:
        first, _, last = name.partition(RANGE)
        for end in (first, last):
            if end not in self.layers:
                raise NetError(f"range {name}: no layer named '{end}' in {self.net.name}",
                               hint=self._unknown(end).hint)
        i, j = self.position[first], self.position[last]
        if i > j:
            raise NetError(f"range {name}: {first} comes after {last}", hint=f"write {last}{RANGE}{first}")
        members = self.order[i: j + 1]
        trunk = self.net.trunk_nodes()
        if first not in trunk or last not in trunk:
            raise NetError(f"range {name}: a range runs along the trunk; name a side output by its label")
        return [n for n in members if n in trunk]

    def _make(self, name: str, kind: str, block: str, members: list[str]) -> Group:
        inside = set(members)
        entries: dict[str, None] = {}  # ordered, and a set to ask
        for n in members:
            for s in self.layers[n].inputs:
                if s not in inside:
                    entries.setdefault(s)
        outputs = {node for _, node in self.net.outputs}
        exits = tuple(n for n in members if n in outputs or any(c not in inside for c in self.graph.successors(n)))
        joins = [n for n in members if OPS[self.layers[n].op].kind == "merge" and n.count("/") == name.count("/") + 1
                 and n.startswith(name + "/")]
        depth_in: dict[str, int] = {}
        rf_in: dict[str, ReceptiveField] = {}
        for n in members:
            layer = self.layers[n]
            depth_in[n] = OPS[layer.op].weighted + max((depth_in.get(s, 0) for s in layer.inputs), default=0)
            fields = [rf_in.get(s, ONE) for s in layer.inputs] or [ONE]
            widest = max(fields, key=lambda r: r.size[0] * r.size[1])
            window = OPS[layer.op].window(self.in_shapes(n), self.graph.nodes[n]["attrs"]) if layer.inputs else None
            rf_in[n] = widest if window is None else grow(widest, window)
        main = self.net.outputs[0][1]
        last = main if main in inside else exits[-1] if exits else members[-1]
        layers = [self.layers[n] for n in members]
        return Group(name, kind, block, tuple(members), tuple(entries), exits,
                     joins[-1] if joins else None,
                     sum(l.weights for l in layers), sum(l.biases for l in layers), sum(l.macs for l in layers),
                     sum(l.activations for l in layers), max(depth_in.values(), default=0), rf_in[last])

    def parts(self, group: Group) -> list[Group]:
        """The rows a group is made of: its join's branches; else its child block instances with the
        layers between them; else its layers."""
        if group.kind == "layer":
            return []
        if group.join:
            rows = []
            for src in self.layers[group.join].inputs:
                branch = next((b for b, m in self.branches.items() if m == group.join and src.startswith(b + "/")),
                              None)
                rows.append(self.group(branch) if branch else self._identity(src, group))
            return rows
        scope = group.name + "/" if group.kind in ("block", "group", "side", "branch") else ""
        rows, seen = [], set()
        for n in group.members:
            child = self._child_instance(n, scope)
            if child is None:
                rows.append(self.group(n))
            elif child not in seen:
                seen.add(child)
                rows.append(self.group(child))
        return rows

    def _child_instance(self, node: str, scope: str) -> str | None:
        """The outermost block instance holding `node` inside `scope` (a path ending in '/' or '')."""
        for path, _ in self.layers[node].block:
            if path.startswith(scope) and path != scope.rstrip("/"):
                return path
        return None

    def _identity(self, src: str, group: Group) -> Group:
        """A join input that comes straight from outside: the identity shortcut."""
        return Group(f"(identity from {src})", "identity", "identity", (), (src,), (), None, 0, 0, 0, 0, 0, ONE)

    def path_text(self, group: Group) -> str:
        """A branch's layers as written, `conv 96 1x1 · relu · conv 128 3x3 pad 1 · relu`."""
        return " · ".join(self.layers[n].written for n in group.members)

    def blocks(self) -> list[tuple[int, Group]]:
        """(nesting level, group) for every block instance and layer outside blocks, in source order:
        the `summary --blocks` rows."""
        rows, seen = [], set()
        for l in self.net.layers:
            if not l.block:
                rows.append((0, self.group(l.name)))
            for level, (path, _) in enumerate(l.block):
                if path not in seen:
                    seen.add(path)
                    rows.append((level, self.group(path)))
        return rows


def analyse(net: Network) -> Analysis:
    return Analysis(net)
