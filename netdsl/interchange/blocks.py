"""Recovering repeated blocks from an imported network's structure (issue 16).

The importer hands over the trunk as a list of items (a layer; a merge with its branches; a
side output), already cut at the points every path passes through. Recovery then:

1. writes as `shortcut` every add branch that is exactly what netdsl's shortcut lowers to (a
   1x1 conv /s to the other branch's channels, with bn where that branch has one), so an
   identity and a projection shortcut read alike;
2. cuts the trunk into segments: each merge with the activations that follow it (a residual
   block's add + relu, an inception module's concat);
3. gives each segment a signature that ignores the numbers that vary between instances (the
   filter and unit counts, symmetric strides), and makes a block of every signature seen twice
   or more;
4. lifts the numbers that differ between a block's instances into its parameters (equal in every
   instance: written as a constant; a whole multiple of another parameter in every instance:
   written as `4*c`), and writes runs of identical instances as `repeat N`.

Where no segment repeats, the output is plain lines.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ops import OPS, shortcut_stride

# The activations a merge's segment takes after it: the op table's activation layers (its
# epilogues, and leaky, Darknet's, which has a parameter and so is not fused but ends a block alike).
ACTIVATIONS = frozenset(name for name, op in OPS.items() if op.epilogue or op.style == "activation")


@dataclass
class LayerItem:
    lid: str
    op: str
    attrs: dict
    label: str | None = None  # the source's name for it, where netdsl's would differ
    comment: str | None = None  # the source's name where it cannot be a label (loss3/classifier)


@dataclass
class MergeItem:
    lid: str
    kind: str  # concat | add | gate
    branches: list  # list[list[item]] or None for `shortcut`
    shortcut_layers: list = field(default_factory=list)  # the projection a `shortcut` stands for, in order
    shortcut_mode: str = "project"  # project | zeropad (option A: `shortcut zeropad`)
    source: str | None = None  # a label for the block instance it becomes, where the source names one


@dataclass
class SideItem:
    name: str | None
    body: list


@dataclass
class CallItem:
    block: str
    args: list[str]
    items: list  # the instance's own items (for the order of its layers)
    label: str | None = None


@dataclass
class RepeatItem:
    count: int
    call: CallItem
    calls: list  # every instance, for the order of their layers


def layer_order(items: list) -> list[str]:
    """The layers' ids in the order netdsl's expansion makes their nodes."""
    out: list[str] = []
    for item in items:
        if isinstance(item, LayerItem):
            out.append(item.lid)
        elif isinstance(item, MergeItem):
            for branch in item.branches:
                if branch is not None:
                    out += layer_order(branch)
            out += item.shortcut_layers
            out.append(item.lid)
        elif isinstance(item, SideItem):
            out += layer_order(item.body)
        elif isinstance(item, CallItem):
            out += layer_order(item.items)
        elif isinstance(item, RepeatItem):
            for call in item.calls:
                out += layer_order(call.items)
    return out


# --- 1. shortcuts ----------------------------------------------------------------------------------

def normalise_shortcuts(items: list, shapes: dict, fork: str) -> None:
    """In place: a projection branch that netdsl's `shortcut` lowers to exactly becomes `shortcut`."""
    tip = fork
    for item in items:
        if isinstance(item, MergeItem):
            for branch in item.branches:
                if branch is not None:
                    normalise_shortcuts(branch, shapes, tip)
            if item.kind == "add":
                _shortcut_branches(item, shapes, tip)
            tip = item.lid
        elif isinstance(item, SideItem):
            normalise_shortcuts(item.body, shapes, tip)
        elif isinstance(item, LayerItem):
            tip = item.lid


def _ends_with_bn(branch: list) -> bool:
    for item in branch:
        if isinstance(item, LayerItem) and item.op == "bn":
            return True
        if isinstance(item, MergeItem) and any(b and _ends_with_bn(b) for b in item.branches):
            return True
    return False


def _shortcut_branches(merge: MergeItem, shapes: dict, fork: str) -> None:
    for i, branch in enumerate(merge.branches):
        if branch is None or not 1 <= len(branch) <= 2:
            continue
        # what netdsl's shortcut would match: the first branch that stays real, whichever side it is on
        others = [b for j, b in enumerate(merge.branches) if j != i and b is not None]
        if not others:
            continue
        like = others[0]
        conv = branch[0]
        if (len(branch) == 1 and isinstance(conv, LayerItem) and conv.op == "zeropad"
                and conv.attrs["out"] == shapes[merge.lid][0]
                and tuple(conv.attrs["stride"]) == shortcut_stride(shapes[fork], shapes[merge.lid])):
            merge.branches[i] = None  # option A: what `shortcut zeropad` lowers to
            merge.shortcut_layers, merge.shortcut_mode = [conv.lid], "zeropad"
            return
        if not isinstance(conv, LayerItem) or conv.op != "conv":
            continue
        a = conv.attrs
        use_bn = _ends_with_bn(like)
        bn_ok = (len(branch) == 2 and isinstance(branch[1], LayerItem) and branch[1].op == "bn"
                 and branch[1].attrs.get("eps") == 1e-5 and branch[1].attrs.get("momentum") == 0.1)
        if (a["kernel"] == (1, 1) and a["pad"] == (0, 0) and a["groups"] == 1 and a["bias"] == (not use_bn)
                and (bn_ok if use_bn else len(branch) == 1) and shapes[fork] != shapes[merge.lid]
                and a["out"] == shapes[merge.lid][0]):
            merge.branches[i] = None
            merge.shortcut_layers = [x.lid for x in branch]
            return


# --- 2-4. segments, signatures, parameters, repeats ---------------------------------------------

class Param(str):
    """A block parameter standing in an attribute: the op table writes it by its name."""


LIFTED = {"conv": ("out", "stride"), "fc": ("out",), "pool": ("stride",)}


def _slots(items: list, path=()) -> list[tuple[tuple, str, object]]:
    """(where, attribute, value) of every number that may vary between instances, in text order."""
    found = []
    for i, item in enumerate(items):
        if isinstance(item, LayerItem):
            for key in LIFTED.get(item.op, ()):
                value = item.attrs.get(key)
                if key == "stride" and (not isinstance(value, tuple) or value[0] != value[1]):
                    continue
                found.append((path + (i,), key, value))
        elif isinstance(item, MergeItem):
            for j, branch in enumerate(item.branches):
                if branch is not None:
                    found += _slots(branch, path + (i, j))
    return found


def _signature(items: list):
    def one(item):
        if isinstance(item, LayerItem):
            lifted = {k for k in LIFTED.get(item.op, ()) if not (k == "stride" and (
                not isinstance(item.attrs.get(k), tuple) or item.attrs[k][0] != item.attrs[k][1]))}
            return ("layer", item.op, tuple(sorted((k, v) for k, v in item.attrs.items() if k not in lifted)))
        if isinstance(item, MergeItem):
            return ("merge", item.kind, item.shortcut_mode,
                    tuple(None if b is None else tuple(one(x) for x in b) for b in item.branches))
        return ("other", id(item))
    return tuple(one(x) for x in items)


def _segments(items: list) -> list[list]:
    """Each merge with the activations after it is a segment; everything else stands alone."""
    out: list[list] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, MergeItem):
            seg = [item]
            i += 1
            while i < len(items) and isinstance(items[i], LayerItem) and items[i].op in ACTIVATIONS:
                seg.append(items[i])
                i += 1
            out.append(seg)
        else:
            out.append([item])
            i += 1
    return out


def _block_name(seg: list, taken: set) -> str:
    merge = seg[0]
    convs = sum(1 for b in merge.branches if b for x in b if isinstance(x, LayerItem) and x.op == "conv")
    if merge.kind == "gate":
        base = "se"  # squeeze-and-excitation
    elif merge.kind == "concat" and None in merge.branches:
        base = "dense_layer"  # the input joined with new features (DenseNet)
    elif merge.kind == "concat":
        base = "inception" if len(merge.branches) == 4 else "branches"
    else:
        base = {2: "basic", 3: "bottleneck"}.get(convs, "residual")
    name, n = base, 2
    while name in taken or name in OPS:
        name, n = f"{base}{n}", n + 1
    return name


def recover(items: list, render) -> tuple[list[str], list]:
    """(block definitions' lines, the trunk's items with instances as calls and repeats)."""
    segments = _segments(items)
    groups: dict = {}
    for seg in segments:
        if isinstance(seg[0], MergeItem):
            groups.setdefault(_signature(seg), []).append(seg)
    defs: list[str] = []
    calls: dict[int, CallItem] = {}  # a segment's first item -> its call
    taken: set = set()
    for signature, instances in groups.items():
        if len(instances) < 2:
            continue
        slots = [_slots(seg) for seg in instances]
        columns = list(zip(*slots))  # one column a number that may vary
        names: list[str | None] = []
        params: list[str] = []
        param_values: list[list[int]] = []
        introduces: list[int] = []  # the columns whose value is a parameter's (the call's arguments)
        widths = strides = 0
        for col in columns:
            values = [v for _, _, v in col]
            if all(v == values[0] for v in values):
                names.append(None)
                continue
            key = col[0][1]
            scalar = [v[0] if isinstance(v, tuple) else v for v in values]
            multiple = None
            if key == "out" and len(instances) >= 3:  # a whole multiple of an earlier width in every instance: 4*c
                # (three instances at least: two agree on a ratio by chance too often)
                for pname, pvals in zip(params, param_values):
                    if pname.startswith("c") and all(a > 0 and b % a == 0 for a, b in zip(pvals, scalar)):
                        ratios = {b // a for a, b in zip(pvals, scalar)}
                        if len(ratios) == 1:
                            k = ratios.pop()
                            multiple = pname if k == 1 else f"{k}*{pname}"
                            break
            if multiple is not None:
                names.append(multiple)
                continue
            if key == "out":
                widths += 1
                pname = f"c{widths}"
            else:
                strides += 1
                pname = f"s{strides}"
            params.append(pname)
            param_values.append(scalar)
            introduces.append(len(names))
            names.append(pname)
        rename = {"c1": "c"} if widths == 1 else {}
        rename.update({"s1": "s"} if strides == 1 else {})
        block = _block_name(instances[0], taken)
        taken.add(block)
        template = _templated(instances[0], columns, [rename.get(n, _rename_expr(n, rename)) if n else None
                                                      for n in names])
        shown = [rename.get(p, p) + ("=1" if p.startswith("s") else "") for p in params]
        header = f"block {block}({', '.join(shown)}) {{"
        defs += [header] + ["  " + line for line in render(template)] + ["}", ""]
        labels = [_instance_label(seg) for seg in instances]
        if len(set(labels)) != len(labels) or None in labels:
            labels = [None] * len(instances)  # names only where every instance has its own
        # netdsl names the k-th instance of a block `{block}{k}` itself: no label needed for that
        labels = [None if label == f"{block}{k + 1}" else label for k, label in enumerate(labels)]
        for k, seg in enumerate(instances):
            args = []
            for c, p in zip(introduces, params):
                value = _scalar(columns[c][k][2])
                if p.startswith("s"):  # a stride: a keyword with the default 1
                    if value != 1:
                        args.append(f"{rename.get(p, p)}={value}")
                else:
                    args.append(str(value))
            calls[id(seg[0])] = CallItem(block, args, seg, label=labels[k])
    out: list = []
    for seg in segments:
        call = calls.get(id(seg[0]))
        if call is None:
            out += seg
            continue
        last = out[-1] if out else None
        same = lambda c: c.block == call.block and c.args == call.args and call.label is None  # noqa: E731
        if isinstance(last, RepeatItem) and same(last.call):
            last.count += 1
            last.calls.append(call)
        elif isinstance(last, CallItem) and last.label is None and same(last):
            out[-1] = RepeatItem(2, last, [last, call])
        else:
            out.append(call)
    return defs, out


def _instance_label(seg: list) -> str | None:
    """The name the source gives a block instance: the first part its layers' names share
    (inception3a for inception3a/b1/conv1, ...), where that is a netdsl name."""
    import re
    names = []

    def walk(items):
        for item in items:
            if isinstance(item, (LayerItem, MergeItem)):
                names.append(getattr(item, "source", None) or item.lid)
            if isinstance(item, MergeItem):
                for b in item.branches:
                    if b:
                        walk(b)
    walk(seg)
    heads = {n.split("/")[0] for n in names}
    if len(heads) == 1 and all("/" in n for n in names):
        head = heads.pop()
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", head) and head not in OPS:
            return head
    return None


def _scalar(value):
    return value[0] if isinstance(value, tuple) else value


def _rename_expr(expr: str, rename: dict) -> str:
    if "*" in expr:
        k, p = expr.split("*")
        return f"{k}*{rename.get(p, p)}"
    return rename.get(expr, expr)


def _templated(seg: list, columns: list, names: list) -> list:
    """The first instance's items with each lifted number replaced by its parameter."""
    by_place = {}
    for col, name in zip(columns, names):
        if name is not None:
            where, key, _ = col[0]
            by_place[(where, key)] = name

    def copy(items, path=()):
        out = []
        for i, item in enumerate(items):
            if isinstance(item, LayerItem):
                attrs = dict(item.attrs)
                for key in LIFTED.get(item.op, ()):
                    name = by_place.get((path + (i,), key))
                    if name is not None:
                        attrs[key] = Param(name) if key == "out" else (Param(name), Param(name))
                out.append(LayerItem(item.lid, item.op, attrs))
            elif isinstance(item, MergeItem):
                out.append(MergeItem(item.lid, item.kind, [None if b is None else copy(b, path + (i, j))
                                                          for j, b in enumerate(item.branches)], item.shortcut_layers,
                                     shortcut_mode=item.shortcut_mode))
            else:
                out.append(item)
        return out
    return copy(seg)
