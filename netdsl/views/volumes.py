"""Volume drawings, the way the lecture draws networks: each stored feature map a box of
height x width x channels in an oblique projection, the kernel cut out of the volume it reads with
lines to the place it makes in the next one, fully connected layers as thin bars.

Layout is a small tree read off the unit graph (render's units: layers, or collapsed blocks):
a `Seq` of items left to right, a `Par` where the graph forks and joins again (an inception
module's branches stacked between the volumes they join; a residual block's shortcut as a red
lane over its path), and a `Side` for a side output (GoogLeNet's auxiliary heads) hanging below
the trunk. Every text box's extent is known at layout time (`text_width`), so columns are wide
enough for their labels and no two labels can overlap; tests/test_volumes.py checks that from the
SVG, and the browser test checks the estimate against Chromium's own measurements.

Drawn with drawsvg: it writes the SVG elements (escaping, attributes, text kept as text) so this
module only says where things go. PNG and PDF come from the SVG through cairosvg.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import drawsvg as dw
import networkx as nx

from ..bind import did_you_mean
from ..compiler import LayerInfo, Network
from ..errors import NetError
from ..files import write_atomic
from ..ops import OPS, STYLES, window_geometry
from .render import DrawOptions, Unit, _short, _skip_edges, _units

FORMATS = ("svg", "png", "pdf")
FONT = "Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"
NAME_SIZE, TEXT_SIZE, TITLE_SIZE = 11, 10, 14
LINE = 13  # baseline to baseline, px
BLOCK_FILL = "#fdebd0"  # render's collapsed-block colour
SKIP = "#c0392b"  # render's residual skip colour
ARC = 14  # room above a collapsed residual block for its shortcut's arc
GAP = 22  # between two items of a sequence (the arrow's room)
FAN = 26  # a fork's or join's room for its fan of lines
LANE_GAP = 16
ROW_GAP = 34
MAX_ROW = 1500  # a slide's width, px: longer sequences wrap onto the next row
MARGIN = 24
OBLIQUE = 0.35
FOLDED = ("activation", "norm", "regularise", "shape", "head")  # op styles drawn inside the box before them  # the width axis drawn at 45 degrees, shortened to this fraction

# Scales: log2, so that 227 and 7 are both visible and keep their order (stated in the legend).
SCALES = "height and width 6 + 14*log2(n) px, channels 3 + 7*log2(c) px, fc bars 10 + 9*log2(n) px (log scales)"


def side_px(n: int) -> float:
    return 6 + 14 * math.log2(max(n, 1))


def depth_px(c: int) -> float:
    return 3 + 7 * math.log2(max(c, 1))


def bar_px(n: int) -> float:
    return 10 + 9 * math.log2(max(n, 1))


# Advance widths in em, generous (DejaVu Sans is the widest font the family list can fall back to),
# so that an estimate is never narrower than the text drawn.
_WIDE = set("mwMW@%")
_NARROW = set("il.,:;'|!()[]/ ")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of `text` at `size` px, an upper bound for the fonts FONT names."""
    em = 0.0
    for ch in text:
        em += 0.95 if ch in _WIDE else 0.36 if ch in _NARROW else 0.76 if ch.isupper() else 0.66
    return em * size * (1.08 if bold else 1.0)


@dataclass
class Label:
    text: str
    size: float
    bold: bool = False
    colour: str = "#222222"
    swatch: str | None = None  # a legend entry's colour, drawn as a square before the text

    @property
    def width(self) -> float:
        return text_width(self.text, self.size, self.bold)


def _label_block(labels: list[Label]) -> tuple[float, float]:
    return max((l.width for l in labels), default=0.0), LINE * len(labels)


def _draw_labels(d: dw.Group, labels: list[Label], cx: float, top: float) -> None:
    for i, l in enumerate(labels):
        d.append(dw.Text(l.text, l.size, cx, top + LINE * (i + 1) - 3, text_anchor="middle", font_family=FONT,
                         font_weight="bold" if l.bold else "normal", fill=l.colour))


def _shade(colour: str, factor: float) -> str:
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    if factor > 1:
        rgb = [round(c + (255 - c) * (factor - 1)) for c in rgb]
    else:
        rgb = [round(c * factor) for c in rgb]
    return "#" + "".join(f"{min(255, max(0, c)):02x}" for c in rgb)


def _hwc(shape: tuple[int, ...]) -> str:
    """The lecture writes volumes height x width x channels: 55x55x96."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------------------------------
# items


@dataclass
class Vol:
    """One box: a layer with the shape-keeping layers folded into it, or a collapsed block."""

    unit: Unit
    labels: list[Label]
    shape: tuple[int, ...]
    fill: str
    layers: list[str]
    kernel: tuple[int, int] | None = None  # the window it slides over its input (conv, pool)
    copies: int = 1  # a folded run of identical blocks: drawn as a stack
    residual: bool = False  # a collapsed block with shortcuts inside: the shortcut's arc over the box
    x: float = 0.0
    yc: float = 0.0

    def __post_init__(self):
        if len(self.shape) == 3:
            c, h, w = self.shape
            self.dx, self.dy, self.ow = depth_px(c), side_px(h), side_px(w) * OBLIQUE
        else:  # a vector: a thin bar whose height says its length
            self.dx, self.dy, self.ow = 7.0, bar_px(math.prod(self.shape)), 7.0 * OBLIQUE
        self.stack = 4.0 * min(self.copies - 1, 2)  # the outlines behind a folded run

    @property
    def box_w(self) -> float:
        return self.dx + self.ow + self.stack

    def measure(self) -> tuple[float, float, float]:
        lw, lh = _label_block(self.labels)
        width = max(self.box_w, lw)
        return width, self.dy / 2 + self.ow + self.stack + (ARC if self.residual else 0.0), self.dy / 2 + 6 + lh

    def place(self, x: float, yc: float) -> None:
        width, _, _ = self.measure()
        self.x, self.yc = x + (width - self.box_w) / 2, yc

    # anchor points for the lines between items
    @property
    def left(self) -> tuple[float, float]:
        return self.x, self.yc

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.dx + self.stack, self.yc

    def face_point(self, u: float, v: float, back: bool = False) -> tuple[float, float]:
        """A point of the height x width plane: at the box's back (its right face) or front (left)."""
        x0 = self.x + (self.dx if back else 0.0)
        top = self.yc - self.dy / 2
        return x0 + u * self.ow, top - u * self.ow + v * self.dy

    def draw(self, d: dw.Drawing) -> None:
        g = dw.Group(class_="volume", data_layers=" ".join(self.layers), data_unit=self.unit.id)
        g.append(dw.Title(" + ".join(self.layers) + f": {_hwc(self.shape)}"))
        for k in range(min(self.copies - 1, 2), -1, -1):  # the run's outlines behind, then the box
            off = 4.0 * k
            x, top = self.x + off, self.yc - self.dy / 2 - off
            dx, dy, o = self.dx, self.dy, self.ow
            stroke = dict(stroke="#555555", stroke_width=0.7, stroke_linejoin="round")
            g.append(dw.Lines(x, top, x + o, top - o, x + dx + o, top - o, x + dx, top, close=True,
                              fill=_shade(self.fill, 1.35), **stroke))
            g.append(dw.Lines(x + dx, top, x + dx + o, top - o, x + dx + o, top - o + dy, x + dx, top + dy,
                              close=True, fill=_shade(self.fill, 0.82), **stroke))
            g.append(dw.Rectangle(x, top, dx, dy, fill=self.fill, **stroke))
        _draw_labels(g, self.labels, self.x + self.box_w / 2, self.yc + self.dy / 2 + 6)
        if self.residual:  # from the line coming in, over the box, down onto the line going out
            x0, x1 = self.x - 8, self.x + self.dx + self.ow + self.stack + 7
            peak = self.yc - self.dy / 2 - self.ow - self.stack - ARC + 3
            lift = self.yc - (self.yc - peak) / 0.75  # a cubic's top is 3/4 of the way to its control points
            g.append(dw.Path(fill="none", stroke=SKIP, stroke_width=1.8, class_="shortcut")
                     .M(x0, self.yc).C(x0, lift, x1, lift, x1, self.yc - 4))
            g.append(dw.Lines(x1 - 3, self.yc - 6, x1, self.yc, x1 + 3, self.yc - 6, close=True, fill=SKIP))
        d.append(g)


@dataclass
class Seq:
    items: list

    def measure(self) -> tuple[float, float, float]:
        sizes = [i.measure() for i in self.items]
        width = sum(s[0] for s in sizes) + GAP * max(len(sizes) - 1, 0)
        return width, max((s[1] for s in sizes), default=0.0), max((s[2] for s in sizes), default=0.0)

    def place(self, x: float, yc: float) -> None:
        for item in self.items:
            item.place(x, yc)
            x += item.measure()[0] + GAP

    @property
    def left(self):
        return self.items[0].left

    @property
    def right(self):
        return self.items[-1].right

    def draw(self, d: dw.Drawing) -> None:
        for item in self.items:
            item.draw(d)
        for a, b in zip(self.items, self.items[1:]):  # over the boxes: the kernel is cut out of one
            _connect(d, a, b)


@dataclass
class Par:
    """Branches between a fork and the join after them, stacked in lanes."""

    lanes: list[Seq]
    title: list[Label]
    residual: bool = False  # the first lane is the shortcut: drawn red, over the path
    x: float = 0.0
    yc: float = 0.0
    lane_y: list[float] = field(default_factory=list)

    def _lane_sizes(self):
        return [lane.measure() if lane.items else (40.0, 8.0, 14.0) for lane in self.lanes]

    def measure(self) -> tuple[float, float, float]:
        sizes = self._lane_sizes()
        height = sum(a + b for _, a, b in sizes) + LANE_GAP * (len(sizes) - 1)
        tw, th = _label_block(self.title)
        width = max(max(s[0] for s in sizes) + 2 * FAN, tw)
        return width, height / 2 + th + 4, height / 2

    def place(self, x: float, yc: float) -> None:
        self.x, self.yc = x, yc
        width, _, _ = self.measure()
        sizes = self._lane_sizes()
        height = sum(a + b for _, a, b in sizes) + LANE_GAP * (len(sizes) - 1)
        y = yc - height / 2
        self.lane_y = []
        for lane, (w, above, below) in zip(self.lanes, sizes):
            ly = y + above
            self.lane_y.append(ly)
            if lane.items:
                lane.place(x + (width - w) / 2, ly)
            y += above + below + LANE_GAP

    @property
    def left(self):
        return self.x, self.yc

    @property
    def right(self):
        return self.x + self.measure()[0], self.yc

    def draw(self, d: dw.Drawing) -> None:
        width, above, _ = self.measure()
        x0, x1 = self.x, self.x + width
        for i, (lane, ly) in enumerate(zip(self.lanes, self.lane_y)):
            skip = self.residual and i == 0
            colour, w = (SKIP, 1.8) if skip else ("#777777", 0.9)
            if lane.items:
                (ax, ay), (bx, by) = lane.left, lane.right
                d.append(dw.Lines(x0, self.yc, x0 + FAN / 2, ly, ax, ay, fill="none", stroke=colour, stroke_width=w))
                d.append(dw.Lines(bx, by, x1 - FAN / 2, ly, x1, self.yc, fill="none", stroke=colour, stroke_width=w))
                lane.draw(d)
            else:
                d.append(dw.Lines(x0, self.yc, x0 + FAN / 2, ly, x1 - FAN / 2, ly, x1, self.yc, fill="none",
                                  stroke=colour, stroke_width=w))
                d.append(dw.Text("identity", TEXT_SIZE, (x0 + x1) / 2, ly - 4, text_anchor="middle",
                                 font_family=FONT, fill=SKIP))
        _draw_labels(d, self.title, (x0 + x1) / 2, self.yc - above)


@dataclass
class Side:
    """A side output: the trunk runs straight on; the side chain hangs below, dashed in."""

    chain: Seq
    title: list[Label]
    x: float = 0.0
    yc: float = 0.0

    def measure(self) -> tuple[float, float, float]:
        w, above, below = self.chain.measure()
        tw, th = _label_block(self.title)
        return max(w, tw) + FAN, 6.0, LANE_GAP + th + above + below

    def place(self, x: float, yc: float) -> None:
        self.x, self.yc = x, yc
        w, above, _ = self.chain.measure()
        _, th = _label_block(self.title)
        self.chain.place(x + FAN, yc + LANE_GAP + th + above)

    @property
    def left(self):
        return self.x, self.yc

    @property
    def right(self):
        return self.x + self.measure()[0], self.yc

    def draw(self, d: dw.Drawing) -> None:
        (ax, ay) = self.chain.left
        d.append(dw.Line(self.x, self.yc, self.right[0], self.yc, stroke="#777777", stroke_width=0.9))
        d.append(dw.Lines(self.x, self.yc, self.x + FAN / 2, ay, ax, ay, fill="none", stroke="#777777",
                          stroke_width=0.9, stroke_dasharray="4 3"))
        w, _, _ = self.chain.measure()
        _draw_labels(d, self.title, self.x + FAN + w / 2, self.yc + LANE_GAP - 6)
        self.chain.draw(d)


def _connect(d: dw.Drawing, a, b) -> None:
    """The line from one item to the next; where b's kernel reads a's volume, the kernel's cut
    on a and the lines from its corners to the one place it makes in b (the lecture's figure)."""
    (ax, ay), (bx, by) = a.right, b.left
    d.append(dw.Line(ax, ay, bx - 3, by, stroke="#777777", stroke_width=0.9))
    d.append(dw.Lines(bx - 3, by - 3, bx, by, bx - 3, by + 3, fill="#777777", close=True))
    if isinstance(a, Vol) and isinstance(b, Vol) and b.kernel and len(a.shape) == 3:
        kh, kw = b.kernel
        _, h, w = a.shape
        ku = min(0.5, max(kw / w, 7 / max(a.ow, 1)))
        kv = min(0.5, max(kh / h, 7 / a.dy))
        u0, v0 = 0.45 - ku / 2, 0.3
        corners = [a.face_point(u, v, back=True) for u, v in
                   ((u0, v0), (u0 + ku, v0), (u0 + ku, v0 + kv), (u0, v0 + kv))]
        d.append(dw.Lines(*[c for p in corners for c in p], close=True, fill="#e74c3c", fill_opacity=0.55,
                          stroke="#c0392b", stroke_width=0.8))
        tx, ty = b.face_point(0.45, 0.3 + kv / 2)
        for cx, cy in (corners[0], corners[3]):
            d.append(dw.Line(cx, cy, tx, ty, stroke="#c0392b", stroke_width=0.6, stroke_opacity=0.8))
        d.append(dw.Circle(tx, ty, 1.8, fill="#c0392b"))


# ---------------------------------------------------------------------------------------------
# from the network to items


def _op_text(net: Network, layer: LayerInfo) -> str:
    """The operation in the lecture's short form: `conv 11x11 /4`, `max 3x3 /2`, `fc`."""
    attrs = net.graph.nodes[layer.name]["attrs"]
    ins = [net.graph.nodes[s]["shape"] for s in layer.inputs]
    if OPS[layer.op].window is not None and "kernel" in attrs and ins and len(ins[0]) == 3:
        (kh, kw), (sh, sw), _ = window_geometry(ins, attrs)
        stride = "" if (sh, sw) == (1, 1) else f" /{sh}" if sh == sw else f" /{sh}x{sw}"
        return f"{attrs.get('mode', layer.op)} {kh}x{kw}{stride}"
    return layer.op


def _kernel(net: Network, layer: LayerInfo) -> tuple[int, int] | None:
    attrs = net.graph.nodes[layer.name]["attrs"]
    ins = [net.graph.nodes[s]["shape"] for s in layer.inputs]
    if OPS[layer.op].window is not None and "kernel" in attrs and ins and len(ins[0]) == 3:
        return window_geometry(ins, attrs)[0]
    return None


def _fold_shape_keeping(net: Network, units: list[Unit], owner: dict[str, str]) -> list[Unit]:
    """Activations, dropout, normalisation and other layers that keep their input's shape (or
    store nothing new, as flatten) join the unit before them, when they are its only reader."""
    readers: dict[str, int] = {}
    for l in net.layers:
        for s in l.inputs:
            readers[s] = readers.get(s, 0) + 1
    shapes = {l.name: l.shape for l in net.layers}
    by_id = {u.id: u for u in units}
    out: list[Unit] = []
    for unit in units:
        first = unit.layers[0]
        keeps = OPS[first.op].style in FOLDED and len(first.inputs) == 1 and (
            shapes[first.inputs[0]] == first.shape or first.activations == 0)
        if unit.collapsed is None and len(unit.layers) == 1 and keeps and readers.get(first.inputs[0]) == 1:
            host = by_id.get(owner.get(first.inputs[0], ""))
            if host is not None and host.collapsed is None and host.cluster == unit.cluster and host in out \
                    and host.layers[-1].name == first.inputs[0]:
                host.layers.append(first)
                owner[first.name] = host.id
                continue
        out.append(unit)
    return out


def _vol(net: Network, unit: Unit, joins: set[str], focus: str | None) -> Vol:
    """The box of one unit; joins: the layers a residual shortcut enters (render's skip edges)."""
    head = unit.layers[0]
    names = [l.name for l in unit.layers]
    if unit.collapsed:
        path, block = unit.collapsed
        n = len(unit.instances)
        depth = len(unit.cluster)
        children: dict[str, set[str]] = {}
        for l in unit.layers:
            if len(l.block) > depth + 1:
                children.setdefault(l.block[depth + 1][1], set()).add(l.block[depth + 1][0])
        inside = ", ".join(b if len(p) == 1 else f"{b} x {len(p)}" for b, p in children.items())
        kind = (f"{block} x {n}" if n > 1 else block) + (f": {inside}" if inside else "")
        title = _short(path, unit.cluster) if n == 1 else \
            f"{_short(unit.instances[0], unit.cluster)} .. {_short(unit.instances[-1], unit.cluster).rsplit('/', 1)[-1]}"
        labels = [Label(title, NAME_SIZE, True), Label(kind, TEXT_SIZE), Label(_hwc(unit.last.shape), TEXT_SIZE)]
        return Vol(unit, labels, unit.last.shape, BLOCK_FILL, names, copies=n, residual=bool(joins & set(names)))
    style = OPS[head.op].style
    fill = STYLES.get(style, (BLOCK_FILL,))[0]
    op = " · ".join([_op_text(net, head)] + [l.op for l in unit.layers[1:]])
    # in a --focus drawing the layers that feed the block come from elsewhere: their full names
    outside = focus is not None and not head.name.startswith(focus + "/")
    labels = [Label(head.name if outside else _short(head.name, unit.cluster), NAME_SIZE, True)]
    if head.op != "input":
        labels.append(Label(op, TEXT_SIZE))
    labels.append(Label(_hwc(head.shape), TEXT_SIZE, colour="#444444"))
    return Vol(unit, labels, head.shape, fill, names, kernel=_kernel(net, head))


class _Builder:
    """The series-parallel reading of the unit graph: forks found by successors, joins by
    post-dominators (the first unit every path from the fork to the output passes)."""

    def __init__(self, net: Network, units: list[Unit], owner: dict[str, str], sink: str,
                 focus: str | None = None):
        self.net, self.units = net, {u.id: u for u in units}
        self.order = {u.id: i for i, u in enumerate(units)}
        g = nx.DiGraph()
        g.add_nodes_from(self.units)
        for l in net.layers:
            for s in l.inputs:
                a, b = owner.get(s), owner.get(l.name)
                if a is not None and b is not None and a != b:
                    g.add_edge(a, b)
        self.g = g
        self.trunk = nx.ancestors(g, sink) | {sink}
        self.ipdom = nx.immediate_dominators(g.subgraph(self.trunk).reverse(copy=True), sink)
        joins = {b for _, b in _skip_edges(net)}
        self.vols = {uid: _vol(net, u, joins, focus) for uid, u in self.units.items()}

    def _succ(self, uid: str, trunk: bool) -> list[str]:
        found = [s for s in self.g.successors(uid) if (s in self.trunk) == trunk]
        return sorted(found, key=self.order.__getitem__)

    def seq(self, start: str | None, stop: str | None, trunk: bool = True) -> Seq:
        items = []
        node = start
        while node is not None and node != stop:
            items.append(self.vols[node])
            for side in self._succ(node, trunk=False) if trunk else []:
                items.append(Side(self.seq(side, None, trunk=False),
                                  [Label(f"side output {self._block_of(side) or side}", TEXT_SIZE, True, SKIP)]))
            nxt = self._succ(node, trunk)
            if not nxt:
                break
            if len(nxt) == 1:
                node = nxt[0]
                continue
            join = self.ipdom[node] if trunk else None
            lanes = [self.seq(s, join, trunk) for s in nxt]
            items.append(self._par(lanes, join))
            node = join
        return Seq(items)

    def _block_of(self, uid: str) -> str | None:
        unit = self.units[uid]
        if unit.collapsed:
            return unit.collapsed[0]
        depth = len(unit.cluster)
        return unit.layers[0].block[depth - 1][0] if depth else None

    def _par(self, lanes: list[Seq], join: str) -> Par:
        join_unit = self.units[join]
        inputs = [self.net.graph.nodes[s]["shape"] for s in join_unit.layers[0].inputs]
        # an elementwise join of two lanes, one of them short: a residual block, its shortcut on top
        residual = len(lanes) == 2 and all(s == join_unit.layers[0].shape for s in inputs) \
            and min(len(l.items) for l in lanes) <= 1
        if residual:
            lanes = sorted(lanes, key=lambda l: len(l.items))
        title = []
        if join_unit.collapsed is None and join_unit.cluster:
            path, block = join_unit.cluster[-1]
            title = [Label(f"{path} ({block})", TEXT_SIZE, True, "#555555")]
        return Par(lanes, title, residual)


@dataclass
class Picture:
    """A laid-out drawing: `svg()` is its text."""

    drawing: dw.Drawing
    width: float
    height: float

    def svg(self) -> str:
        return self.drawing.as_svg()

    def _repr_svg_(self) -> str:  # a notebook shows the picture inline
        return self.svg()


def _focus_check(net: Network, focus: str) -> None:
    blocks = {p for l in net.layers for p, _ in l.block}
    if focus not in blocks:
        what = "a layer, not a block instance" if focus in {l.name for l in net.layers} else \
            "no block instance of that name"
        raise NetError(f"--focus {focus}: {what} in {net.name}",
                       hint=did_you_mean(focus, blocks) or (
                           "block instances: " + ", ".join(sorted(blocks)[:8]) + (" ..." if len(blocks) > 8 else "")
                           if blocks else f"{net.name} has no blocks"))


def volumes(net: Network, collapse: bool = False, focus: str | None = None) -> Picture:
    """The volume drawing of a network (or of one block instance, `focus`)."""
    if focus is not None:
        _focus_check(net, focus)
    units, owner = _units(net, DrawOptions(depth=0 if collapse else None, focus=focus, fold_activations=False))
    units = _fold_shape_keeping(net, units, owner)
    if focus is None:
        sink = owner[net.outputs[0][1]]
    else:
        sink = units[-1].id
    builder = _Builder(net, units, owner, sink, focus)
    sources = [u.id for u in units if builder.g.in_degree(u.id) == 0 and u.id in builder.trunk]
    main = builder.seq(sources[0], None)
    if len(sources) > 1:  # a focus fed by several layers: they enter the first lanes
        main = Seq([Par([Seq([builder.vols[s]]) for s in sources], [])] + main.items[1:])

    # rows: the trunk's items, wrapped at a slide's width
    rows: list[list] = [[]]
    used = 0.0
    for item in main.items:
        w = item.measure()[0]
        if rows[-1] and used + GAP + w > MAX_ROW:
            rows.append([])
            used = 0.0
        used += (GAP if rows[-1] else 0.0) + w
        rows[-1].append(item)
    seqs = [Seq(r) for r in rows]
    macs = net.totals().macs
    work = f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"
    title = f"{net.name}" + (f": {focus}" if focus else "") + f"  ({net.totals().params:,} parameters, {work})"
    legend = _legend(units, collapse, any(v.residual for v in builder.vols.values()))
    y = MARGIN + LINE + 14
    width = max([s.measure()[0] for s in seqs] + [text_width(title, TITLE_SIZE, True)] +
                [sum(l.width + 44 for l in line) for line in legend])
    placed = []
    for s in seqs:
        _, above, below = s.measure()
        s.place(MARGIN + 14, y + above)
        placed.append((s, y + above, below))
        y += above + below + ROW_GAP
    height = y + LINE * len(legend) + MARGIN
    total_w = width + 2 * MARGIN + 28
    d = dw.Drawing(math.ceil(total_w), math.ceil(height), font_family=FONT)
    d.append(dw.Rectangle(0, 0, math.ceil(total_w), math.ceil(height), fill="white"))
    d.append(dw.Text(title, TITLE_SIZE, MARGIN, MARGIN + 10, font_weight="bold", font_family=FONT, fill="#222222"))
    for i, (s, yc, below) in enumerate(placed):
        s.draw(d)
        if i + 1 < len(placed):  # the flow goes on in the next row
            (_, ey), (nx_, ny) = s.right, placed[i + 1][0].left
            ex = MARGIN + 14 + s.measure()[0]  # past the row's last box and label
            mid = yc + below + ROW_GAP / 2
            d.append(dw.Lines(ex, ey, ex + 10, ey, ex + 10, mid, MARGIN + 4, mid, MARGIN + 4, ny, nx_ - 3, ny,
                              fill="none", stroke="#777777", stroke_width=0.9))
            d.append(dw.Lines(nx_ - 3, ny - 3, nx_, ny, nx_ - 3, ny + 3, fill="#777777", close=True))
    ly = y - ROW_GAP + 22
    for line in legend:
        x = MARGIN
        for l in line:
            if l.swatch:
                d.append(dw.Rectangle(x, ly - 9, 10, 10, fill=l.swatch, stroke="#555555", stroke_width=0.6))
                x += 14
            d.append(dw.Text(l.text, l.size, x, ly, font_family=FONT, fill=l.colour))
            x += l.width + 30
        ly += LINE
    return Picture(d, total_w, height)


def _legend(units: list[Unit], collapse: bool, residual: bool = False) -> list[list[Label]]:
    styles = []
    for u in units:
        s = "block" if u.collapsed else OPS[u.layers[0].op].style
        if s not in styles:
            styles.append(s)
    swatches = [Label(STYLES[s][1] if s in STYLES else "collapsed block (x N: identical blocks folded)", TEXT_SIZE,
                      swatch=STYLES[s][0] if s in STYLES else BLOCK_FILL) for s in styles]
    notes = [Label("volumes height x width x channels; " + SCALES, TEXT_SIZE, colour="#444444")]
    notes2 = [Label("red: a kernel on the volume it reads and the place it makes in the next; shape-keeping layers "
                    "(activations, normalisation, dropout) folded into the layer before them", TEXT_SIZE,
                    colour="#444444")]
    arc = [[Label("red arc over a block: the residual shortcuts of the blocks inside it", TEXT_SIZE, colour=SKIP)]]
    return [swatches, notes, notes2] + (arc if residual else [])


def write(picture: Picture, out: str | os.PathLike) -> Path:
    """SVG as drawn; PNG (twice the size, for slides) and PDF through cairosvg. Atomic."""
    target = Path(out)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise NetError(f"-o {out}: unknown format '.{fmt}' for a volume drawing", hint="use .svg, .png or .pdf")
    svg = picture.svg().encode("utf-8")
    if fmt == "svg":
        data = svg
    else:
        try:
            import cairosvg
        except (ImportError, OSError) as exc:  # cairocffi raises OSError when the cairo library is missing
            raise NetError(f"-o {out}: .{fmt} needs cairosvg and the cairo library ({exc})",
                           hint="pip install cairosvg; apt-get install libcairo2; '-o FILE.svg' needs neither") from None
        data = cairosvg.svg2png(bytestring=svg, scale=2) if fmt == "png" else cairosvg.svg2pdf(bytestring=svg)
    write_atomic(target, data)
    return target
