"""Syntax tree -> IR graph: blocks instantiated, branches joined, repeats unrolled, names given.

The IR is a networkx.DiGraph with one node per layer. Node attributes (immutable values only):
`op`, `attrs`, `span`, `block` (the chain of block instances it came from, as
((instance_path, block_name), ...)), `written` (the source text of the call). Edge attribute
`slot` is the input position. Graph attributes: `name`, `input_shape`, `source`, `file`,
`outputs` (((output_name, node_id), ...), the trunk first), `warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from . import syntax as S
from .bind import bind, did_you_mean, evaluate
from .errors import ErrorLog, NetError, Span
from .ops import OPS, WRITABLE, freeze

MAX_NODES = 200_000  # a network bigger than this is a typo in a repeat count, not a design
MAX_DEPTH = 64  # nesting of block instances
# Expansion steps (a layer, block or group visited, a repeat's copy made): bounds the work of
# repeats that add no layers (`repeat 200000 repeat 200000 { }`), which MAX_NODES cannot see.
MAX_STEPS = 1_000_000
TRUNK_OUTPUT = "output"  # the name of the trunk's output: the end of the top-level layers


@dataclass
class _Scope:
    prefix: str  # 'inception3a/b2/'
    env: dict[str, Any]
    block: tuple[tuple[str, str], ...]  # ((instance_path, block_name), ...)
    calls: tuple[str, ...]  # block names being expanded, to catch a block that uses itself
    counters: dict[str, int] = field(default_factory=dict)

    def child(self, name: str, *, env=None, block=None, calls=None) -> "_Scope":
        return _Scope(self.prefix + name + "/", self.env if env is None else env,
                      self.block if block is None else block, self.calls if calls is None else calls)


def _limit(err: NetError) -> NetError:
    """A bound on the whole expansion: no layer after it is expanded, so no error after it is."""
    err.final = True
    return err


class _Expander:
    """Expansion goes on past a layer it cannot build (a misspelt name, a wrong argument): the
    layer is left out and its error logged, so every such mistake in the file is reported, once
    per place however many block instances repeat it. Shapes are not inferred after any."""

    def __init__(self, program: S.Program):
        self.program = program
        self.graph = nx.DiGraph()
        self.blocks: dict[str, S.BlockDef] = {}
        self.name_spans: dict[str, Span] = {}
        self.outputs: list[tuple[str, str]] = []
        self.steps = 0
        self.log = ErrorLog()
        for bd in program.blocks:
            if bd.name in self.blocks:
                self.log.add(NetError(f"block '{bd.name}' is defined twice", bd.name_span,
                                      f"the first definition is at line {self.blocks[bd.name].span.line}"))
                continue
            if bd.name in OPS:
                self.log.add(NetError(f"a block cannot be called '{bd.name}': that is a built-in layer",
                                      bd.name_span))
                continue
            seen: set[str] = set()
            for p in bd.params:
                if p.name in seen:
                    self.log.add(NetError(f"parameter '{p.name}' appears twice", p.span))
                seen.add(p.name)
            self.blocks[bd.name] = bd

    # nodes -------------------------------------------------------------------------------------
    def _name(self, scope: _Scope, label: str | None, label_span: Span | None, counter: str, prefix: str,
              span: Span) -> str:
        """The user's label wins; otherwise the lecture's default (conv1, pool2, fc6...)."""
        n = scope.counters.get(counter, 0) + 1
        scope.counters[counter] = n
        if label is not None:
            node_id = scope.prefix + label
            if node_id in self.name_spans:
                first = self.name_spans[node_id]
                raise NetError(f"the name '{label}' is already used", label_span or span,
                               f"line {first.line} already defines {node_id}")
        else:
            node_id = f"{scope.prefix}{prefix}{n}"
            while node_id in self.name_spans:  # a label took this default name: skip it
                n += 1
                scope.counters[counter] = n
                node_id = f"{scope.prefix}{prefix}{n}"
        self.name_spans[node_id] = label_span or span
        return node_id

    def _add_node(self, node_id: str, op: str, attrs, span: Span, scope: _Scope, inputs: list[str],
                  written: str) -> str:
        if self.graph.number_of_nodes() >= MAX_NODES:
            raise _limit(NetError(f"the network expands to more than {MAX_NODES:,} layers", span,
                                  "check the repeat counts"))
        self.graph.add_node(node_id, op=op, attrs=attrs, span=span, block=scope.block, written=written)
        for slot, src in enumerate(inputs):
            self.graph.add_edge(src, node_id, slot=slot)
        return node_id

    # statements --------------------------------------------------------------------------------
    def layers(self, layers, tip: str, scope: _Scope) -> str:
        for layer in layers:
            tip = self.layer(layer, tip, scope)
        return tip

    def layer(self, layer: S.Layer, tip: str, scope: _Scope) -> str:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _limit(NetError(f"expanding the network takes more than {MAX_STEPS:,} steps", layer.span,
                                  "check the repeat counts: repeats of empty or nested repeats multiply"))
        handler = _HANDLERS[type(layer.item)]
        try:
            return handler(self, layer.item, layer.label, layer.label_span, tip, scope)
        except NetError as err:
            if err.final and err.more:  # already the log's: every error before it, and the bound
                raise
            self.log.add(err)  # a `final` one (a bound) is raised on, with every error before it
            return tip

    def call(self, call: S.Call, label, label_span, tip, scope: _Scope) -> str:
        if call.name in self.blocks:
            return self.instance(self.blocks[call.name], call, label, label_span, tip, scope)
        op = OPS.get(call.name)
        if op is None or call.name not in WRITABLE:
            hint = did_you_mean(call.name, list(WRITABLE) + list(self.blocks))
            known = "layers: " + ", ".join(WRITABLE) + (
                "; blocks: " + ", ".join(self.blocks) if self.blocks else "")
            raise NetError(f"unknown layer or block '{call.name}'", call.name_span, hint or known)
        attrs = bind(op, call, scope.env)
        node_id = self._name(scope, label, label_span, op.counter, op.prefix, call.span)
        return self._add_node(node_id, op.name, attrs, call.span, scope, [tip], op.written(attrs))

    def instance(self, bd: S.BlockDef, call: S.Call, label, label_span, tip, scope: _Scope) -> str:
        if bd.name in scope.calls:
            chain = " -> ".join(scope.calls[scope.calls.index(bd.name):] + (bd.name,))
            raise NetError(f"block '{bd.name}' instantiates itself ({chain})", call.name_span,
                           "a block cannot contain itself, directly or through another block")
        if len(scope.calls) >= MAX_DEPTH:
            raise NetError(f"blocks nest more than {MAX_DEPTH} deep", call.span)
        env = self._bind_block(bd, call, scope.env)
        name = self._name(scope, label, label_span, "block:" + bd.name, bd.name, call.span)
        local = name[len(scope.prefix):]
        inner = scope.child(local, env=env, block=scope.block + ((name, bd.name),), calls=scope.calls + (bd.name,))
        return self.layers(bd.body, tip, inner)

    def _bind_block(self, bd: S.BlockDef, call: S.Call, env) -> dict[str, Any]:
        values: dict[str, Any] = {}
        names = [p.name for p in bd.params]
        positional = [a for a in call.args if not isinstance(a, S.KwArg)]
        for arg in call.args:
            if isinstance(arg, S.StrideArg) or isinstance(arg, S.DimsArg):
                raise NetError(f"block '{bd.name}' takes numbers, not sizes or strides", arg.span,
                               f"usage: {bd.name} {' '.join(names)}")
        if len(positional) > len(names):
            raise NetError(f"block '{bd.name}' takes {len(names)} argument(s), got {len(positional)}",
                           positional[len(names)].span, f"usage: {_block_usage(bd)}")
        for p, arg in zip(bd.params, positional):
            values[p.name] = evaluate(arg.expr, env)
        for arg in call.args:
            if isinstance(arg, S.KwArg):
                if arg.name not in names:
                    raise NetError(f"block '{bd.name}' has no parameter '{arg.name}'", arg.span,
                                   did_you_mean(arg.name, names) or f"usage: {_block_usage(bd)}")
                if arg.name in values:
                    raise NetError(f"'{arg.name}' is given twice", arg.span)
                values[arg.name] = evaluate(arg.value, env)
        for p in bd.params:
            if p.name not in values:
                if p.default is None:
                    raise NetError(f"block '{bd.name}' needs a value for '{p.name}'", call.span,
                                   f"usage: {_block_usage(bd)}")
                values[p.name] = evaluate(p.default, values)
        return values

    def merge(self, merge: S.Merge, label, label_span, tip, scope: _Scope) -> str:
        """Branches joined by concat, add or gate. `shortcut` is the merge's own input: in an add
        it meets the other branch's shape (identity, a projection, or option A's zeropad, all
        decided once shapes are known: passes/lower_shortcuts); in a concat (DenseNet's dense
        layer) and a gate (squeeze-and-excitation's map) it is the input itself."""
        if len(merge.branches) < 2:
            raise NetError(f"{merge.kind} needs at least two branches", merge.span,
                           "each branch is a { ... } block of layers, or 'shortcut'")
        ends: list[str] = []
        shortcuts: list[tuple[S.Branch, str]] = []
        for branch in merge.branches:
            n = scope.counters.get("branch", 0) + 1
            scope.counters["branch"] = n
            bname = branch.label or f"b{n}"
            if branch.body is None:
                if merge.kind != "add":
                    if branch.shortcut != "project":
                        raise NetError(f"'shortcut zeropad' belongs in an add {{ }}: in a {merge.kind} the "
                                       "shortcut is the input itself", branch.span, "write 'shortcut'")
                    if tip in ends:
                        raise NetError(f"a {merge.kind} holds its input once", branch.span)
                    ends.append(tip)
                    continue
                shortcuts.append((branch, scope.prefix + (branch.label or "shortcut")))
                ends.append("")  # filled below, once the other branches exist
                continue
            if not branch.body:
                raise NetError("an empty branch", branch.span, "write 'shortcut' for an identity branch")
            ends.append(self.layers(branch.body, tip, scope.child(bname)))
        real = [e for e in ends if e and e != tip]
        if not real:
            raise NetError(f"{merge.kind} of shortcuts alone", merge.span, "one branch needs layers")
        if len(set(ends) - {""}) < len([e for e in ends if e]):
            raise NetError(f"two branches of this {merge.kind} end in the same layer", merge.span)
        for branch, node_id in shortcuts:
            if node_id in self.name_spans:
                n = 2
                while f"{node_id}{n}" in self.name_spans:
                    n += 1
                node_id = f"{node_id}{n}"
            self.name_spans[node_id] = branch.span
            # slot 0: the trunk; slot 1: the branch whose shape the shortcut must match
            attrs = freeze({"mode": branch.shortcut})
            self._add_node(node_id, "shortcut", attrs, branch.span, scope, [tip, real[0]],
                           "shortcut" if branch.shortcut == "project" else f"shortcut {branch.shortcut}")
            ends[ends.index("")] = node_id
        op = OPS[merge.kind]
        node_id = self._name(scope, label, label_span, op.counter, op.prefix, merge.span)
        return self._add_node(node_id, op.name, freeze({}), merge.span, scope, ends, op.name)

    def side(self, side: S.Side, label, label_span, tip, scope: _Scope) -> str:
        if not side.body:
            raise NetError("an empty side output", side.span)
        name = self._name(scope, label, label_span, "side", "aux", side.span)
        if name == TRUNK_OUTPUT:
            raise NetError(f"'{TRUNK_OUTPUT}' names the trunk's output; a side output needs another name",
                           label_span or side.span, "e.g. aux1: side { ... }")
        local = name[len(scope.prefix):]
        end = self.layers(side.body, tip, scope.child(local, block=scope.block + ((name, "side"),)))
        self.outputs.append((name, end))
        return tip

    def repeat(self, rep: S.Repeat, label, label_span, tip, scope: _Scope) -> str:
        count = evaluate(rep.count, scope.env)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise NetError(f"repeat needs a whole number of copies, 0 or more, not {count}", rep.count.span)
        if count > MAX_NODES:
            raise NetError(f"repeat {count} is absurdly many copies", rep.count.span)
        for i in range(count):
            copy_label = f"{label}_{i + 1}" if label else None
            tip = self.layer(S.Layer(copy_label, label_span, rep.item, rep.span), tip, scope)
        return tip

    def group(self, group: S.Group, label, label_span, tip, scope: _Scope) -> str:
        if label is None:
            return self.layers(group.body, tip, scope)
        name = self._name(scope, label, label_span, "group", "group", group.span)
        local = name[len(scope.prefix):]
        return self.layers(group.body, tip, scope.child(local, block=scope.block + ((name, "group"),)))


_HANDLERS = {S.Call: _Expander.call, S.Merge: _Expander.merge, S.Side: _Expander.side,
             S.Repeat: _Expander.repeat, S.Group: _Expander.group}


def _block_usage(bd: S.BlockDef) -> str:
    return bd.name + " " + " ".join(p.name if p.default is None else f"{p.name}=.." for p in bd.params)


def expand(program: S.Program) -> nx.DiGraph:
    """Build the IR graph of a parsed program."""
    if program.input_shape is None:
        first = program.layers[0].span if program.layers else Span(program.file, 1, 1, 1, 1)
        raise NetError("the network has no 'input' line", first, "add one before the first layer, e.g. input 3x227x227")
    shape = program.input_shape
    if len(shape) == 2:
        raise NetError("the input is CxHxW (e.g. 3x227x227) or a vector length (e.g. 784)", program.input_span)
    if any(v <= 0 for v in shape):
        raise NetError("every input size must be positive", program.input_span)
    if not program.layers:
        raise NetError("the network has no layers", program.input_span, "add a layer after the input, e.g. conv 6 5x5")
    ex = _Expander(program)
    root = _Scope("", {}, (), ())
    ex.graph.add_node("input", op="input", attrs=freeze({"shape": shape}), span=program.input_span, block=(),
                      written=OPS["input"].written({"shape": shape}))
    ex.name_spans["input"] = program.input_span
    end = ex.layers(program.layers, "input", root)
    ex.log.check()
    if end == "input":
        raise NetError("the network has no layers on its trunk", program.input_span)
    g = ex.graph
    g.graph.update(name=program.name or _stem(program.file), input_shape=shape, source=program.source,
                   file=program.file, outputs=tuple([(TRUNK_OUTPUT, end)] + ex.outputs), warnings=())
    return g


def _stem(file: str) -> str:
    base = file.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base or "network"
