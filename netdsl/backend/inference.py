"""The inference path: the optimised inference graph (passes: dead side outputs and dropout gone,
bn folded, activations fused, memory planned) run as one prepared call list per batch size.

    engine = Inference(model)        # model: a Model of netdsl.optimise(net, "inference")
    probs = engine(x)["output"]      # model.predict(x) builds and keeps one of these

What the training executor does per call, this does once per batch size (`prepare`):

- every value lives in a buffer of the memory plan (passes/plan_memory.py: graph attributes
  `buffers`, per image, and node attribute `buffer`), allocated once for the batch size and
  reused on every call; views (flatten) and in-place activations share their input's buffer as
  the plan says. Scratch (im2col columns, Winograd tiles) is one buffer per role shared by every
  layer, grown to the largest layer's need.
- conv + bias + (folded bn) + activation is one step: the algorithm conv.py chooses for the
  layer's shape (asked once, by running it), with what depends only on the weights computed
  once (Winograd's transformed filters, the direct kernel's tap-major weights), writing into
  the layer's planned buffer; the bias and the activation follow in place.
- a residual add (and its ReLU) right after a conv whose path can take it (the blocked kernel,
  backend/cpu/blocked.py; Winograd F(2x2, 3x3)'s output transform in float32) runs in that
  conv's output loop: the add's step is gone.
- nothing of autodiff: no saved state, no gradients, no epilogue outputs kept.
- one closure per layer with its arrays, geometry and kernel pointers bound: a call is a loop
  over closures.

An op without a prepared step here runs its kernel table entry (the same code as the training
graph's inference) and its result is copied into its planned buffer, so every op of the
language runs here. CPU (numpy) only: on a GPU, predict runs the optimised graph's forward.
Not thread-safe: the buffers are shared by every call of one batch size.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from math import prod
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from ..errors import NetError
from ..ops import end_extension, window_geometry
from . import im2col, tuner, winograd
from .conv import Conv
from .cpu import blocked, direct, native, winograd_fused
from .cpu.blas_threads import single_threaded, split_matmul, stacked_matmul
from .cpu.threads import MIN_ELEMENTS, over_batch
from .kernels import ACTIVATIONS
from .kernels.dense import DEPTHWISE
from .kernels.variants import special_variant
from .kernels.pooling import _tiled as tiled_uniform_windows

Step = Callable[[], None]
# From this many output positions an image, a batch's im2col conv runs one GEMM an image into its
# output (the images on the cores) rather than one over the batch transposed after; on smaller maps
# (ResNet's 7x7 and 14x14) the per-image GEMMs are too thin
PER_IMAGE_MIN_MAP = 256
KEEP_BATCH_SIZES = 4  # prepared plans kept at once (each holds its batch size's buffers)


class Scratch:
    """One flat buffer per role (columns, tiles, products), shared by every layer of a plan and
    grown at preparation to the largest need; steps take views of it when they run."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.buffers: dict[str, np.ndarray] = {}

    def reserve(self, role: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        size = prod(shape)
        if role not in self.buffers or self.buffers[role].size < size:
            self.buffers[role] = np.empty(size, dtype=self.dtype)
        return lambda: self.buffers[role][:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())


@dataclass
class Residual:
    """An add that a conv before it takes into its output loop (out = act(conv(x) + other)): the
    add's other input (computed before the conv runs), its planned output, its activation."""
    add: int  # the add's node index: its own step is then none
    other: np.ndarray
    out: np.ndarray
    relu: bool
    backwards: bool = False  # the images last to first (_image_order)


@dataclass
class Context:
    """What a step builder sees: the node (executor.NodeState: attrs, params, epilogue), its
    inputs' and its output's planned views, the plan's scratch, and the engine's weight cache."""
    node: Any
    ins: list[np.ndarray]
    out: np.ndarray
    scratch: Scratch
    prepared_weights: dict
    xp: Any = np
    residual: Residual | None = None  # an add this conv may fuse (if its path can)
    fused: set = field(default_factory=set)  # the adds fused into a conv so far (their steps: none)

    @property
    def n(self) -> int:
        return self.out.shape[0]


@dataclass
class Plan:
    batch: int
    arena: list[np.ndarray]  # the memory plan's buffers, for this batch size
    values: list[np.ndarray]  # each node's output: a view of its planned buffer
    steps: list[Step]
    scratch: Scratch
    names: list[str] = field(default_factory=list)  # the node each step runs (profiling, errors)
    algorithms: dict[str, str] = field(default_factory=dict)  # conv node -> the path it runs

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arena) + self.scratch.nbytes


# the epilogue and the bias, in place on a step's output --------------------------------------------


def _finish(ctx: Context, bias) -> Step:
    """The step's tail: + bias (per channel, axis 1), then the fused activation, both in place."""
    out, xp = ctx.out, ctx.xp
    act = ACTIVATIONS[ctx.node.epilogue].apply if ctx.node.epilogue else None
    b = None if bias is None else bias.reshape((1, -1) + (1,) * (out.ndim - 2))
    if b is None and act is None:
        return lambda: None
    if act is None:
        return lambda: xp.add(out, b, out=out)
    if b is None:
        return lambda: act(xp, out)

    def tail():
        xp.add(out, b, out=out)
        act(xp, out)
    return tail


def _then(*steps: Step) -> Step:
    steps = tuple(s for s in steps if s is not None)
    if len(steps) == 1:
        return steps[0]

    def run():
        for s in steps:
            s()
    return run


# the generic step: the kernel table's forward, its result copied into the planned buffer -------------


def kernel_step(ctx: Context) -> Step:
    node, ins, out, xp = ctx.node, ctx.ins, ctx.out, ctx.xp

    def step():
        y = node.kernel.forward(node, ins)
        if node.epilogue and not node.variant.epilogue:
            y = ACTIVATIONS[node.epilogue].apply(xp, y)
        node.saved = node.epilogue_out = None
        if y.ctypes.data != out.ctypes.data:
            np.copyto(out, y.reshape(out.shape))
    return step


# conv ------------------------------------------------------------------------------------------------


def _geometry(ctx: Context):
    x = ctx.ins[0]
    kernel_, stride, pad = window_geometry([x.shape[1:]], ctx.node.attrs)
    return im2col.Geometry.of(x.shape, kernel_, stride, pad)


def _chosen_path(ctx: Context, geo) -> dict:
    """The path conv.py chooses for this layer and batch (its choice, asked by running it once on
    zeros: whatever decides it, thresholds or measurement, decides here too)."""
    node, m = ctx.node, ctx.node.model
    conv = Conv(ctx.xp, m.workspace, m.col_budget, node.name, keep_cols=False, use_winograd=m.winograd,
                precision=m.precision,  # the model's error budget: --precision holds here too
                prepared=ctx.prepared_weights)  # the weights stay: what they give is made once
    _, saved = conv.forward(np.zeros(ctx.ins[0].shape, ctx.ins[0].dtype), node.params["weight"],
                            node.params.get("bias"), geo, node.attrs["groups"])
    m.workspace.buffers.clear()  # the probe's columns: not needed again
    return saved


def conv_step(ctx: Context) -> Step:
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    if special_variant(node.kernel, node, ctx.ins) is not None:
        node.algorithm = DEPTHWISE  # a depthwise conv: its own kernel, no algorithm of conv.py's to choose
        return kernel_step(ctx)
    if end_extension([x.shape[1:]], node.attrs) != (0, 0) or not native.available(xp, x.dtype):
        ctx.node.algorithm = "kernel"
        return kernel_step(ctx)
    geo = _geometry(ctx)
    if geo.whole_window and node.attrs["groups"] == 1:
        # one window over the whole input (LeNet's c5): its columns are the input as it lies, and
        # the conv is an fc layer; every algorithm computes this one GEMM (no choice to ask for)
        node.algorithm = "batch_major"
        return _gemm_step(ctx, x.reshape(x.shape[0], -1), node.params["weight"].reshape(ctx.out.shape[1], -1),
                          ctx.out.reshape(x.shape[0], -1))
    saved = _chosen_path(ctx, geo)
    if _fusing_pays(ctx, geo, saved):
        saved = {"path": "blocked", "algorithm": "blocked", "source": "measured, with the add"}
    node.algorithm = _algorithm_name(saved)
    step = _path_step(ctx, geo, saved)
    return kernel_step(ctx) if step is None else step


def _fusing_pays(ctx: Context, geo, saved: dict) -> bool:
    """Whether the blocked kernel should run instead of the tuner's winner because it takes the
    residual add after the conv into its output loop: where its measured time (the tuner's, this
    layer and batch) is within the add's own step (timed here) of the winner's. The tuner times
    the conv alone; at batch 8 ResNet-18's 56x56 layers ran blocked and Winograd F(2x2) within its
    10% margin of each other, and the add step took about a tenth of either."""
    res = ctx.residual
    if res is None or saved["path"] == "blocked" or saved.get("source") not in ("measured", "cache"):
        return False
    takes_it = saved["path"] == "winograd_fused" or _winograd_output_fuses(saved, ctx.ins[0])
    if takes_it and _add_fuses_elementwise(ctx):  # the winner takes the add itself
        return False
    node = ctx.node
    key = tuner.layer_key(geo, node.attrs["groups"], node.params["weight"].shape[0], ctx.ins[0].dtype, ("forward",))
    entry = tuner.cache().entries.get(key, {})
    mine, winner = entry.get("blocked"), entry.get(saved["algorithm"].split("+")[0])
    if not mine or not winner:
        return False
    return tuner.cost(mine) <= tuner.cost(winner) + _add_time(res, ctx.xp)


def _winograd_output_fuses(saved: dict, x) -> bool:
    """Whether the chosen path is native F(2x2, 3x3) on a contiguous float32 input, whose output
    transform takes the bias, the ReLU and a residual add (_winograd_fused_output)."""
    return (saved["path"] == "winograd" and bool(saved.get("native"))
            and winograd.NATIVE_VARIANT[saved["tile"], saved["r"]] == "wino"
            and x.dtype == np.float32 and x.flags.c_contiguous)


def _add_time(res: Residual, xp) -> float:
    """The add step's time (its ReLU too), the fastest of three, on the buffers it would use
    (nothing is in them yet while a plan is prepared)."""
    res.out.fill(0)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        xp.add(res.out, res.out, out=res.out)
        if res.relu:
            xp.maximum(res.out, 0, out=res.out)
        best = min(best, time.perf_counter() - t0)
    return best


def _algorithm_name(saved: dict) -> str:
    path = saved["path"]
    if path == "winograd":
        return f"winograd F({saved['tile']}x{saved['tile']})"
    if path == "winograd_fused":
        return "winograd F(2x2) fused"
    if path == "s2d":
        return f"s2d+{_algorithm_name(saved['inner'])}"
    return path


def _path_step(ctx: Context, geo, saved) -> Step | None:
    """The prepared step of the path conv.py chose, or None where there is none (the kernel table's)."""
    builder = CONV_PATHS.get(saved["path"])
    if builder is None or (saved["path"] == "winograd" and not saved["native"]):
        return None
    return builder(ctx, geo, saved)


def _winograd_step(ctx: Context, geo, saved) -> Step:
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    n, c, h, w = x.shape
    weight = node.params["weight"]
    o, r = weight.shape[0], weight.shape[2]
    tile = saved["tile"]
    positions, variant = (tile + r - 1) ** 2, winograd.NATIVE_VARIANT[tile, r]
    th, tw = -(-h // tile), -(-w // tile)
    key = (node.name, "winograd", tile)
    if key not in ctx.prepared_weights:  # U = G g G^T: the weights' part, once
        ctx.prepared_weights[key] = np.ascontiguousarray(
            winograd._filter_transform(xp, weight, tile).reshape(positions, o, c))
    u = ctx.prepared_weights[key]
    v_of = ctx.scratch.reserve("tiles", (positions, c, n * th * tw))
    m_of = ctx.scratch.reserve("products", (positions, o, n * th * tw))

    bias = node.params.get("bias")
    if _winograd_output_fuses(saved, x):
        return _winograd_fused_output(ctx, u, v_of, m_of, (n, c, o, th, tw, h, w))

    def conv():
        v, m = v_of(), m_of()
        native.winograd(xp, "input", x, v, n, c, th, tw, h, w, variant=variant)
        stacked_matmul(xp, u, v, out=m)
        native.winograd(xp, "output", m, out, n, o, th, tw, h, w, variant=variant)
    return _then(conv, _finish(ctx, bias))


def _winograd_fused_output(ctx: Context, u, v_of, m_of, dims) -> Step:
    """F(2x2, 3x3) in float32 with the bias, the ReLU and a following residual add (ctx.residual)
    in its output transform (native.c's wf_output): no pass of its own for any of them. The input
    is all transformed before any output is written, so the output may take the input's buffer;
    the add's other input is read value by value just before that value's write, so it may be
    the output's buffer itself, but no other overlap (the planes run on the cores in any order)."""
    node, x, xp = ctx.node, ctx.ins[0], ctx.xp
    n, c, o, th, tw, h, w = dims
    bias = node.params.get("bias")
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    out, other, relu, tail = _output_loop_target(ctx, _add_fuses_elementwise(ctx))

    def conv():
        v, m = v_of(), m_of()
        native.winograd_input_f32(xp, x, v, n, c, th, tw, h, w)
        stacked_matmul(xp, u, v, out=m)
        native.winograd_output_f32(xp, m, out, n, o, th, tw, h, w, bias, other, relu)
    return _then(conv, tail)


def _output_loop_target(ctx: Context, takes_add: bool):
    """(out, other, relu, tail) for a conv that adds its bias and more in its own output loop:
    where `takes_add`, the following residual add's output, its other input and ReLU (the add's
    step then gone); else the conv's own output and ReLU, any other activation a step after."""
    res = ctx.residual
    if res is not None and takes_add:
        ctx.fused.add(res.add)
        return res.out, res.other, res.relu, None
    own_relu = ctx.node.epilogue == "relu"
    return ctx.out, None, own_relu, None if own_relu else _finish(ctx, None)


def _add_fuses_elementwise(ctx: Context) -> bool:
    """Whether the residual add after this conv can run in an output loop that writes its values
    in any order (Winograd's planes or units on the cores): see _elementwise_safe."""
    res = ctx.residual
    return res is not None and _elementwise_safe(res.out, res.other)


def _elementwise_safe(out: np.ndarray, other: np.ndarray) -> bool:
    """Whether out may be written value by value while other is read, in any order: the same
    values (an in-place add) or none in common; both C-contiguous float32."""
    both = all(a.flags.c_contiguous and a.dtype == np.float32 for a in (out, other))
    same = out.ctypes.data == other.ctypes.data and out.shape == other.shape
    return both and (same or not np.may_share_memory(out, other))


def _direct_step(ctx: Context, geo, saved) -> Step:
    """native.c's direct convolution with its tap-major weights prepared once and its zero-padded
    flat planes kept (only their interior is written: the padding stays zero)."""
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    n, c, h, w = x.shape
    weight = node.params["weight"]
    o, _, kh, kw = weight.shape
    (ph, pw) = geo.pad
    flat, wp, oh, ow = direct.flat_planes(xp, x, geo.pad, (kh, kw))  # this layer's own: padding stays 0
    interior = flat[:, :, :(h + 2 * ph) * wp].reshape(n, c, h + 2 * ph, wp)[:, :, ph:ph + h, pw:pw + w]
    ob = direct._tile_outputs(o)
    opad = direct._round_up(o, ob)
    key = (node.name, "direct")
    if key not in ctx.prepared_weights:
        wt = np.zeros((c, kh * kw, opad), dtype=x.dtype)
        wt[:, :, :o] = weight.reshape(o, c, kh * kw).transpose(1, 2, 0)
        bias = node.params.get("bias")
        ctx.prepared_weights[key] = (wt, None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype))
    wt, bias = ctx.prepared_weights[key]
    kernel = native._kernel("direct_forward", x.dtype)
    args = (native._at(flat), native._at(wt), None if bias is None else native._at(bias), native._at(out),
            c, o, opad, flat.shape[2], wp, kh, kw, oh, ow, ob, 0, flat.shape[2])
    work = direct._split_measure(n * opad * oh * wp * c * kh * kw)

    def conv():
        np.copyto(interior, x)
        over_batch(xp, n, work, lambda lo, hi: kernel(*args, lo, hi))
    return _then(conv, _finish(ctx, None))  # the kernel adds the bias


def _im2col_step(ctx: Context, geo, saved) -> Step:
    """One GEMM over the batch-major columns (native im2col into the shared scratch; a 1x1
    stride-1 conv of one image reads its input as it lies), straight into the planned buffer
    for one image, else through a product buffer transposed on its way with the bias added."""
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    n = x.shape[0]
    weight = node.params["weight"]
    o = weight.shape[0]
    wmat = weight.reshape(o, -1)
    ohw = geo.oh * geo.ow
    bias = node.params.get("bias")
    if geo.pointwise and geo.stride == (1, 1) and geo.pad == (0, 0) and n == 1:
        cols_of = (lambda x2=x.reshape(geo.c, -1): x2)
    else:
        cols_shape = (geo.c * geo.kernel[0] * geo.kernel[1], n * ohw)
        cols_reserved = ctx.scratch.reserve("columns", cols_shape)

        def cols_of():
            return native.im2col_batch_major(xp, x, geo, cols_reserved())
    if n == 1:
        out2 = out.reshape(o, ohw)
        return _then(lambda: split_matmul(xp, wmat, cols_of(), out2), _finish(ctx, bias))
    out3 = out.reshape(n, o, ohw)
    if ohw >= PER_IMAGE_MIN_MAP:
        # one GEMM an image straight into its output, the images on the cores: no transposed
        # copy of the product, no split inside a GEMM; a 1x1 stride-1 conv reads x as it lies
        if geo.pointwise and geo.stride == (1, 1) and geo.pad == (0, 0):
            x3 = x.reshape(n, geo.c, ohw)
            cols_of = (lambda: x3)
            image = (lambda cols, i: cols[i])
        else:
            image = (lambda cols, i: cols[:, i * ohw:(i + 1) * ohw])

        def per_image():
            cols = cols_of()

            def work(lo, hi):
                for i in range(lo, hi):
                    xp.matmul(wmat, image(cols, i), out=out3[i])
            over_batch(xp, n, 1 << 62, work)
        return _then(per_image, _finish(ctx, bias))
    prod_of = ctx.scratch.reserve("products", (o, n * ohw))
    b3 = None if bias is None else bias.reshape(1, o, 1)

    def conv():
        m = prod_of()
        split_matmul(xp, wmat, cols_of(), m)
        t = m.reshape(o, n, ohw).transpose(1, 0, 2)
        if b3 is None:
            over_batch(xp, n, out3.size, lambda lo, hi: np.copyto(out3[lo:hi], t[lo:hi]))
        else:
            over_batch(xp, n, out3.size, lambda lo, hi: xp.add(t[lo:hi], b3, out=out3[lo:hi]))
    return _then(conv, _finish(ctx, None))


def _s2d_step(ctx: Context, geo, saved) -> Step | None:
    """Space-to-depth (conv.py's fold_input): the input copied into a zero-padded buffer of the
    layer's own (its padding stays zero), folded into s*s times the channels by one strided copy,
    then the stride-1 inner conv conv.py chose for the folded shape, on weights folded once."""
    from .conv import fold_weight
    node, x = ctx.node, ctx.ins[0]
    n, c = x.shape[:2]
    s = geo.stride[0]
    inner_geo = saved["inner_geo"]
    hb, wb = inner_geo.h, inner_geo.w
    big = np.zeros((n, c, hb * s, wb * s), dtype=x.dtype)
    (ph, pw) = geo.pad
    h, w = min(geo.h, hb * s - ph), min(geo.w, wb * s - pw)  # rows past the last window are never read
    interior, source = big[:, :, ph:ph + h, pw:pw + w], x[:, :, :h, :w]
    blocks = big.reshape(n, c, hb, s, wb, s).transpose(0, 1, 3, 5, 2, 4)  # a view: reshaping it would copy
    folded = np.empty((n, c * s * s, hb, wb), dtype=x.dtype)
    folded_blocks = folded.reshape(n, c, s, s, hb, wb)
    key = (node.name, "s2d")
    if key not in ctx.prepared_weights:
        ctx.prepared_weights[key] = fold_weight(ctx.xp, node.params["weight"], s)
    params = {**node.params, "weight": ctx.prepared_weights[key]}
    inner_node = SimpleNamespace(name=f"{node.name} (folded)", params=params, epilogue=node.epilogue,
                                 model=node.model, attrs={**node.attrs, "groups": 1})
    inner = _path_step(Context(inner_node, [folded], ctx.out, ctx.scratch, ctx.prepared_weights, ctx.xp),
                       inner_geo, saved["inner"])
    if inner is None:
        return None

    def fold():
        np.copyto(interior, source)
        np.copyto(folded_blocks, blocks)
    return _then(fold, inner)


def _blocked_step(ctx: Context, geo, saved) -> Step:
    """backend/cpu/blocked.py's kernel, its packed weights and padded input prepared once, a batch's
    images on the cores at once (Layer.bind_batch); it adds the bias, and a following add's other
    input (ctx.residual: writing the add's output, the add's step gone) and a ReLU in its output loop."""
    node, x = ctx.node, ctx.ins[0]
    conv = Conv(ctx.xp, None, 0, node.name, prepared=ctx.prepared_weights)
    layer, res = conv.prepare("blocked", node.params["weight"], node.params.get("bias"), geo), ctx.residual
    out, other, relu, tail = _output_loop_target(ctx, takes_add=res is not None)

    if x.shape[0] == 1:
        return _then(layer.bind(x[0], out[0], None if other is None else other[0], relu), tail)
    # the images on the cores at once, each whole on one thread; image by image (last to first where
    # res.backwards) where the plan's buffers let an output image reach another image's input
    return _then(layer.bind_batch(x, out, other, relu, backwards=res is not None and res.backwards), tail)


def _winograd_fused_step(ctx: Context, geo, saved) -> Step:
    """backend/cpu/winograd_fused.py's one-pass F(2x2, 3x3), its filters transformed and packed
    once; it adds the bias, and a following add's other input (where that is the output's own
    buffer or apart from it) and a ReLU in its output loop. An output planned over its own input
    (the units of later images read the input after earlier ones wrote) gets the input copied to
    scratch first."""
    node, x = ctx.node, ctx.ins[0]
    conv = Conv(ctx.xp, None, 0, node.name, prepared=ctx.prepared_weights)
    layer = conv.prepare("winograd_fused", node.params["weight"], node.params.get("bias"), geo)
    out, other, relu, tail = _output_loop_target(ctx, _add_fuses_elementwise(ctx))
    source, copy = x, None
    if np.may_share_memory(x, out) or not x.flags.c_contiguous:
        staged = ctx.scratch.reserve("fused input", x.shape)
        source = staged()  # held by the copy below: a later, larger reservation of the role cannot free it
        if x.flags.c_contiguous and x.dtype == np.float32:
            copy = native.copy_call(source, x)
        else:
            copy = lambda: np.copyto(source, x)  # noqa: E731
    run = layer.bind(source, out, other, relu)
    return _then(copy, run, tail)


CONV_PATHS = {"winograd_fused": _winograd_fused_step, "blocked": _blocked_step, "winograd": _winograd_step,
              "direct": _direct_step, "batch_major": _im2col_step, "s2d": _s2d_step}


# the other ops -------------------------------------------------------------------------------------


def _gemm_step(ctx: Context, x2, weight, out2) -> Step:
    """out2 (n, O) = x2 (n, K) @ weight (O, K).T + bias, then the activation. One image: a GEMV.
    Several: weight @ x2.T into scratch, transposed into out2 with the bias on the way --
    OpenBLAS runs that orientation about twice as fast as x2 @ weight.T for a few rows against
    a large weight (AlexNet's fc6 at batch 8: 14-35 against 21-65 ms on the AMD EPYC)."""
    n, o = out2.shape
    bias = ctx.node.params.get("bias")
    xp = ctx.xp
    skinny = _skinny_step(ctx, x2, weight, bias, out2)
    if skinny is not None:
        return skinny
    x2t = x2.T
    if n == 1:  # (O, 1) and (1, O) are the same memory: no transposed copy
        column = out2.reshape(o, 1)
        return _then(lambda: split_matmul(xp, weight, x2t, column), _finish(ctx, bias))
    prod_of = ctx.scratch.reserve("products", (o, n))

    def gemm():
        m = prod_of()
        split_matmul(xp, weight, x2t, m)
        if bias is None:
            np.copyto(out2, m.T)
        else:
            xp.add(m.T, bias, out=out2)
    return _then(gemm, _finish(ctx, None))


# From 2 to 16 rows (images) an fc layer runs native.c's skinny kernel (sk_fc): the weight read once,
# in place, every row against it while it is in L1; OpenBLAS's GEMM packs the weight first, a second
# pass over it. Measured on the AMD EPYC (2 cores, shared), AlexNet's fc6 (4096 x 9216), skinny
# against split_matmul: 5.6 against 10 ms at 2 rows, 7 against 12 at 8, 10 against 13.5 at 16; at 24
# and 32 rows the gain was within the machine's noise (18 against 20 ms at 32), so the GEMM keeps
# those, where its blocking and more cores win sooner. At one row OpenBLAS runs a GEMV, which packs
# nothing either and was as fast (fc7 at batch 1: 2.0 against 2.3-2.9 ms).
# (benchmarks/fc_skinny.py; benchmarks/results/cpu-2026-12-06-fc8)
SKINNY_ROWS = range(2, 17)


def _skinny_step(ctx: Context, x2, weight, bias, out2) -> Step | None:
    """out2 = act(x2 @ weight.T + bias) by the skinny kernel, its rows of the weight split over the
    cores, the bias and a clamp activation (relu, relu6, hsigmoid) in its output loop; None where it
    does not apply (rows outside SKINNY_ROWS, no compiler, arrays not contiguous or of another dtype)."""
    xp, n = ctx.xp, x2.shape[0]
    arrays = (x2, weight, out2) + (() if bias is None else (bias,))
    if (n not in SKINNY_ROWS or not native.available(xp, x2.dtype)
            or any(not a.flags.c_contiguous or a.dtype != x2.dtype for a in arrays)):
        return None
    epilogue = ctx.node.epilogue
    fused = epilogue if epilogue in native.BN_EPILOGUES else None
    rows = native.skinny_fc_call(x2, weight, bias, out2, fused)
    o, size = weight.shape[0], weight.size

    def step():  # the weight's rows over the cores (from MIN_ELEMENTS weights: LeNet's stay on one)
        over_batch(xp, o, size, rows)
    return step if fused == epilogue else _then(step, _finish(ctx, None))


def fc_step(ctx: Context) -> Step:
    x = ctx.ins[0]
    return _gemm_step(ctx, x.reshape(x.shape[0], -1), ctx.node.params["weight"], ctx.out)


def _max_pool_step(ctx: Context) -> Step:
    """native.c's max pooling into the planned buffer: float32's without positions (cb_maxpool, on
    the blocked conv's helper threads: blocked.bind_max_pool), else the training kernel's (the
    winners' positions into scratch)."""
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    if end_extension([x.shape[1:]], node.attrs) != (0, 0) or not native.available(xp, x.dtype):
        return kernel_step(ctx)
    geo = _geometry(ctx)
    n, c = x.shape[:2]
    if x.dtype == np.float32 and x.flags.c_contiguous and out.flags.c_contiguous:
        return _then(blocked.bind_max_pool(x, out, geo), _finish(ctx, None))
    arg_buffer = np.empty(out.shape, dtype=np.int32)
    kernel, g, size, outs = (native._kernel("maxpool_forward", x.dtype), native.Geometry.of(geo), geo.h * geo.w,
                             geo.oh * geo.ow)

    def work(lo, hi):  # planes (image x channel) [lo, hi): one image's channels split too
        kernel(native._at(x, lo * size), native._at(out, lo * outs), native._at(arg_buffer, lo * outs), hi - lo, g)
    return _then(lambda: over_batch(xp, n * c, x.size, work), _finish(ctx, None))


def _avg_pool_step(ctx: Context) -> Step:
    """native.c's average pooling where the windows tile the input (LeNet's 2x2 /2, ResNet's
    global 7x7), into the planned buffer; other windows run the kernel table's."""
    node, x, out, xp = ctx.node, ctx.ins[0], ctx.out, ctx.xp
    if not (native.available(xp, x.dtype) and (tiled_uniform_windows(node, [x]) or _one_window(ctx))):
        return kernel_step(ctx)
    geo = _geometry(ctx)
    n, c = x.shape[:2]
    kernel = native._kernel("avgpool_tiled_forward", x.dtype)
    per_in, per_out = geo.h * geo.w, geo.oh * geo.ow
    args = (geo.h, geo.w, *geo.kernel, 1.0 / (geo.kernel[0] * geo.kernel[1]))
    x_at, out_at = native._at(x), native._at(out)
    if n * c * per_in < MIN_ELEMENTS:  # too little to split: one call, no closure over slices
        return _then(lambda: kernel(x_at, out_at, n * c, *args), _finish(ctx, None))

    def work(lo, hi):
        kernel(native._at(x, lo * c * per_in), native._at(out, lo * c * per_out), (hi - lo) * c, *args)
    return _then(lambda: over_batch(xp, n, x.size + out.size, work), _finish(ctx, None))


def _one_window(ctx: Context) -> bool:
    """A window over the whole map, unpadded (ResNet's global pool: its stride does not tile, but
    one window needs none): the tiled kernel's case with one output (numpy's mean took 3x as long)."""
    geo = _geometry(ctx)
    return (end_extension([ctx.ins[0].shape[1:]], ctx.node.attrs) == (0, 0) and geo.pad == (0, 0)
            and geo.kernel == (geo.h, geo.w))


POOL_STEPS = {"max": _max_pool_step, "avg": _avg_pool_step}


def pool_step(ctx: Context) -> Step:
    return POOL_STEPS.get(ctx.node.attrs["mode"], kernel_step)(ctx)


def activation_step(ctx: Context) -> Step:
    """relu/tanh/sigmoid as a layer of its own: in place where the plan shares its input's buffer."""
    x, out, xp = ctx.ins[0], ctx.out, ctx.xp
    apply = ACTIVATIONS[ctx.node.op].apply
    if x.ctypes.data == out.ctypes.data:
        return lambda: apply(xp, out)

    def step():
        np.copyto(out, x)
        apply(xp, out)
    return step


def view_step(ctx: Context) -> Step | None:
    """flatten, and any op whose value is its input's: nothing to run where the plan gave the
    value its input's buffer, else a copy."""
    x, out = ctx.ins[0], ctx.out
    if x.ctypes.data == out.ctypes.data:
        return None
    return lambda: np.copyto(out, x.reshape(out.shape))


def add_step(ctx: Context) -> Step | None:
    ins, out, xp = ctx.ins, ctx.out, ctx.xp
    if ctx.residual is not None and ctx.residual.add in ctx.fused:  # done by the conv before it
        return None

    def step():
        xp.add(ins[0], ins[1], out=out)
        for more in ins[2:]:
            xp.add(out, more, out=out)
    return _then(step, _finish(ctx, None))


def concat_step(ctx: Context) -> Step:
    pieces, start = [], 0
    for x in ctx.ins:
        pieces.append((ctx.out[:, start:start + x.shape[1]], x))
        start += x.shape[1]

    def step():
        for dst, src in pieces:
            np.copyto(dst, src)
    return _then(step, _finish(ctx, None))


def softmax_step(ctx: Context) -> Step:
    x, out, xp = ctx.ins[0], ctx.out, ctx.xp
    top = np.empty((out.shape[0], 1), dtype=out.dtype)

    def step():
        xp.max(x, axis=1, keepdims=True, out=top)
        xp.subtract(x, top, out=out)
        xp.exp(out, out=out)
        xp.sum(out, axis=1, keepdims=True, out=top)
        xp.divide(out, top, out=out)
    return step


# op -> its prepared step's builder; every other op runs its kernel table entry (kernel_step)
STEPS: dict[str, Callable[[Context], Step | None]] = {
    "input": lambda ctx: None,  # the call copies the batch into its buffer
    "conv": conv_step,
    "fc": fc_step,
    "pool": pool_step,
    **{name: activation_step for name in ACTIVATIONS},
    "flatten": view_step,
    "dropout": view_step,  # removed by the inference passes; the identity if one is left
    "svm": view_step,  # the scores themselves
    "add": add_step,
    "concat": concat_step,
    "softmax": softmax_step,
}


def _image_spans(a: np.ndarray) -> list[tuple[int, int]] | None:
    """Each image's bytes [start, end) of a C-contiguous batch; None for any other layout."""
    if not a.flags.c_contiguous:
        return None
    start, per = a.ctypes.data, a[0].nbytes if a.shape[0] else 0
    return [(start + i * per, start + (i + 1) * per) for i in range(a.shape[0])]


def _image_order(out: np.ndarray, x: np.ndarray, other: np.ndarray) -> str | None:
    """In which order a fused conv + add may write `out` image by image, "forwards" or
    "backwards", or None where neither is safe. The blocked kernel copies image i of `x` into its
    padded planes, then reads image i of `other` and writes image i of `out` element by element.
    The plan may give `out` the buffer of `x` (dead after the conv) or of `other` (an in-place
    add): safe where out's image i lies on no image of x or of other still to be read (the later
    ones forwards, the earlier ones backwards), and on other's image i either exactly (each value
    read before its own write) or not at all. On one buffer, output images no larger than the
    input's go forwards (image i's output over image i's input, already copied); larger ones (a
    widening conv: image 0's output would reach image 1's input) go backwards."""
    spans = [_image_spans(a) for a in (out, x, other)]
    if any(s is None for s in spans):
        return None if np.may_share_memory(out, x) or np.may_share_memory(out, other) else "forwards"
    outs, xs, others = spans

    def overlap(p, q):
        return p[0] < q[1] and q[0] < p[1]
    if any(overlap(span, others[i]) and span != others[i] for i, span in enumerate(outs)):
        return None
    for order, pending in (("forwards", lambda i: slice(i + 1, None)), ("backwards", lambda i: slice(0, i))):
        if not any(overlap(span, read) for i, span in enumerate(outs) for read in xs[pending(i)] + others[pending(i)]):
            return order
    return None


class Inference:
    """The prepared inference of one Model of an inference-optimised network (see the module's
    docstring). Calling it with an (N, ...) batch returns {output name: array}, fresh arrays."""

    def __init__(self, model):
        graph = model.net.graph
        if "buffers" not in graph.graph:
            raise NetError(f"{model.net.name}: the inference path needs the inference-optimised network "
                           "(netdsl.optimise(net, 'inference')), whose memory plan it runs in")
        if model.device.name != "cpu":
            raise NetError("the prepared inference path runs on the CPU; on a GPU, model.predict runs the "
                           "optimised graph's forward")
        self.model = model
        self.sizes = graph.graph["buffers"]  # per image, in values
        self.buffer_of = [graph.nodes[node.name]["buffer"] for node in model.nodes]
        self.shapes = [tuple(graph.nodes[node.name]["shape"]) for node in model.nodes]
        self.prepared_weights: dict = {}  # weight transforms: independent of the batch size
        self.plans: OrderedDict[int, Plan] = OrderedDict()

    def plan(self, batch: int) -> Plan:
        """The prepared call list for this batch size (made on first use, kept for the next ones)."""
        plan = self.plans.get(batch)
        if plan is None:
            plan = self.plans[batch] = self._prepare(batch)
            while len(self.plans) > KEEP_BATCH_SIZES:
                self.plans.popitem(last=False)
        else:
            self.plans.move_to_end(batch)
        return plan

    def _prepare(self, n: int) -> Plan:
        model = self.model
        model.training = False
        dtype = model.dtype
        arena = [np.empty(size * n, dtype=dtype) for size in self.sizes]
        values = [arena[b][:n * prod(shape)].reshape(n, *shape) for b, shape in zip(self.buffer_of, self.shapes)]
        scratch = Scratch(dtype)
        steps: list[Step] = []
        names: list[str] = []
        algorithms: dict[str, str] = {}
        residuals, fused = self._residuals(values), set()
        for i, node in enumerate(model.nodes):
            ins = [values[j] for j in node.inputs]
            ctx = Context(node, ins, values[i], scratch, self.prepared_weights, model.xp, residuals.get(i), fused)
            step = STEPS.get(node.op, kernel_step)(ctx)
            if step is not None:
                steps.append(step)
                names.append(node.name)
            if getattr(node, "algorithm", None):
                algorithms[node.name] = node.algorithm
        return Plan(n, arena, values, steps, scratch, names, algorithms)

    def _residuals(self, values: list[np.ndarray]) -> dict[int, Residual]:
        """{conv's index: the add it may take in} -- and {add's index: the same}, so the add's step
        knows -- for each two-input add (its activation none or ReLU) of a conv without an
        activation of its own, read by that add alone, whose other input is ready before it, where
        writing the add's output image by image is safe in some order (_image_order) and no step between
        the conv and the add touches the add's buffer (the plan frees it only at the add)."""
        nodes = self.model.nodes
        readers = [0] * len(nodes)
        for node in nodes:
            for j in node.inputs:
                readers[j] += 1
        for _, i in self.model.outputs:
            readers[i] += 1
        found: dict[int, Residual] = {}
        for a, add in enumerate(nodes):
            if add.op != "add" or len(add.inputs) != 2 or add.epilogue not in (None, "relu"):
                continue
            out = values[a]
            for j, k in sorted(zip(add.inputs, reversed(add.inputs)), reverse=True):  # the later conv first
                conv = nodes[j]
                other = values[k]
                if (conv.op == "conv" and not conv.epilogue and readers[j] == 1 and k < j
                        and values[j].shape == out.shape == other.shape
                        and (order := _image_order(out, values[conv.inputs[0]], other)) is not None
                        and not any(np.may_share_memory(out, values[m]) or
                                    any(np.may_share_memory(out, values[r]) for r in nodes[m].inputs)
                                    for m in range(j + 1, a))):
                    found[j] = found[a] = Residual(a, other, out, add.epilogue == "relu", order == "backwards")
                    break
        return found

    def __call__(self, x) -> dict[str, np.ndarray]:
        model = self.model
        x = model._check_input(x)
        plan = self.plan(x.shape[0])
        np.copyto(plan.values[0], x)
        with single_threaded():  # OpenBLAS on one thread; the large GEMMs split by the steps themselves
            for step in plan.steps:
                step()
        return {name: plan.values[i].copy() for name, i in model.outputs}
