"""Blocked direct convolution for inference on the CPU (native.c's cb_ section), float32.

onnxruntime's MLAS runs ResNet's 3x3 layers at batch 1 as direct convolutions over blocks of
output channels; an im2col GEMM over a 14x14 or 7x7 map (OpenBLAS on 196 or 49 columns) or
Winograd F(2x2, 3x3) (four passes over memory) runs them 1.5-3x slower. This kernel keeps a
register tile of `tt` output positions of one row x `b` vectors of output channels; per input
channel and tap it loads b weight vectors and broadcasts tt input values: b*tt FMAs. Each
output is a plain dot product over (channel, tap) in float32, im2col's rounding class.

    layer = Layer(weight, bias, geo)           # the weights packed once, the padded input kept
    layer(x[i], out[i], residual=r[i], relu=True)   # out = relu(conv(x) + bias + r), one image

The groups of output channels run on the cores. Inference only: there is no backward.
"""
from __future__ import annotations

import numpy as np

from . import native
from .threads import WORKERS

LANES = 16  # native.c's VBYTES / sizeof(float): output channels a vector
# the register tiles native.c instantiates, (vectors of output channels, positions of a row), with
# their measured time per useful FMA, the waste (positions and channels computed and dropped) taken
# out: one image on one thread, as each image runs at batch > 1 (AMD EPYC, Zen 4; the layers of
# ResNet-18 and AlexNet, benchmarks/blocked_tiles.py, results/cpu-2026-12-06-r19/tiles-1thread-*).
# For 3x3 kernels (and 11x11 /4) 2 x 7 ran fastest or within 2% on every layer; 1 x 14, 4 x 7, 4 x 6,
# 3 x 8 within 1-4% of it; 1 x 7 4-8% slower; 2 x 14 20% (its 28 sums and 2 weights spill).
TILES = {(2, 7): 1.0, (1, 14): 1.01, (4, 7): 1.02, (4, 6): 1.02, (3, 8): 1.02, (2, 12): 1.03, (1, 7): 1.05,
         (2, 14): 1.2}
# where a kernel's size changes the ranking: 5x5 /1 (AlexNet's conv2, 96 -> 256 on 27x27: 4 x 6's
# sums the cheapest, but its 6-wide tiles waste 11% of a 27-wide row), the 7x7 /2 stem (3 -> 64 on
# 224x224: 1 x 7 ran 3-4% ahead of 2 x 7 and 20% ahead of 1 x 14), 1x1 /2 shortcuts (1 x 14 1-6%
# ahead on 28-wide rows, 2 x 7 on 14- and 7-wide ones)
TILES_BY_KERNEL = {5: {(2, 7): 1.0, (1, 7): 1.05, (4, 7): 1.07, (4, 6): 1.0, (3, 8): 1.06, (2, 12): 1.09,
                       (2, 14): 1.17, (1, 14): 1.2},
                   7: {(1, 7): 1.0, (2, 7): 1.03, (4, 7): 1.22, (4, 6): 1.2, (3, 8): 1.2, (1, 14): 1.23,
                       (2, 12): 1.3, (2, 14): 1.36},
                   1: {(1, 14): 1.0, (2, 14): 1.02, (2, 7): 1.02, (1, 7): 1.03, (4, 7): 1.05, (3, 8): 1.1,
                       (4, 6): 1.2, (2, 12): 1.3}}
# rows of at most 7 outputs, one tile wide (ResNet's 512-channel 7x7 maps, 3x3 /1 and /2, 1x1 /2):
# 4 x 7 ran 0-6% ahead of 2 x 7 on one thread, up to 15% on two
TILES_NARROW = {(4, 7): 1.0, (2, 7): 1.02, (3, 8): 1.01, (4, 6): 1.0, (2, 12): 1.0, (1, 14): 1.0, (1, 7): 1.07,
                (2, 14): 1.15}
NARROW = 7
# A chunk of input channels: its packed weights stay in cache over the whole map, and each output's
# sum is the sum of the chunks' own sums (a blocked GEMM's two levels). Up to this many products a
# chunk (28 channels of a 3x3): float32 error 0.6-0.9x im2col's (benchmarks/conv_error.py); 64
# channels of a 3x3 ran 1-2% faster with 1.1-1.4x, 64 of a 5x5 1.7x.
CHUNK_TERMS = 256
MIN_SPLIT_MACS = 1 << 22  # below this a hand-off to the second core costs more than it saves
UNITS_PER_THREAD = 4  # a thread that gets no core for a while leaves its share to the others
MIN_POOL_SPLIT = 1 << 20  # input values from which max pooling splits its planes (threads.MIN_ELEMENTS's)


def applies(geo, groups: int, dtype, xp=np) -> bool:
    """Float32 on the CPU with native.c, ungrouped, windows inside the padded input."""
    return (groups == 1 and np.dtype(dtype) == np.float32 and native.available(xp, dtype)
            and geo.pad[0] < geo.kernel[0] and geo.pad[1] < geo.kernel[1])


def choose_tile(o: int, ow: int, kw: int = 3) -> tuple[int, int]:
    """The register tile with the least time a useful FMA: its measured cost (for a kernel `kw`
    wide) times the positions and channels it computes and drops. One thread's: at batch > 1 each
    image runs on one; at batch 1 the units split rows as well as groups, so a tile of few groups
    keeps the cores busy too (the 2-thread figures ranked the tiles alike, within their noise)."""
    measured = TILES_NARROW if ow <= NARROW else TILES_BY_KERNEL.get(kw, TILES)

    def cost(tile):
        b, tt = tile
        g = b * LANES
        waste = (-(-ow // tt) * tt / ow) * (-(-o // g) * g / o)
        return measured[tile] * waste
    return min(TILES, key=cost)


class Layer:
    """One conv layer's prepared blocked kernel for one image at a time (see the module's docstring)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, geo, tile: tuple[int, int] | None = None):
        o, c, kh, kw = weight.shape
        self.o, self.c, self.geo = o, c, geo
        self.b, self.tt = tile or choose_tile(o, geo.ow, kw=kw)  # tile: one of TILES (the tests try each)
        g = self.b * LANES
        self.groups = -(-o // g)
        taps = kh * kw
        self.cb = max(1, min(c, CHUNK_TERMS // taps))
        w = np.ascontiguousarray(weight, dtype=np.float32)
        self.packed = np.empty(self.groups * c * taps * g, dtype=np.float32)
        native.library().cb_pack_f32(native._at(w), native._at(self.packed), o, c, taps, g)
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        (sh, sw), (ph, pw) = geo.stride, geo.pad
        tiles = -(-geo.ow // self.tt)
        hp = max(geo.h + 2 * ph, (geo.oh - 1) * sh + kh)
        wp = max(geo.w + 2 * pw, (tiles * self.tt - 1) * sw + kw)
        self.xpad = np.zeros((c, hp, wp), dtype=np.float32)  # only the interior is written: the rest stays 0
        self.interior = self.xpad[:, ph:ph + geo.h, pw:pw + geo.w]
        self.acc = np.empty(self.groups * geo.oh * tiles * self.tt * g, dtype=np.float32)
        self.kernel = native.library().cb_forward_f32  # on the cores by its own helpers: see native.c
        self.args = (native._at(self.xpad), native._at(self.packed),
                     None if self.bias is None else native._at(self.bias))
        self.dims = (native._at(self.acc), c, o, hp * wp, wp, kh, kw, sh, sw, geo.oh, geo.ow, self.b, self.tt,
                     self.cb)
        macs = o * c * taps * geo.oh * geo.ow
        self.threads = WORKERS if macs >= MIN_SPLIT_MACS else 1
        # units of work claimed one at a time by the threads: about UNITS_PER_THREAD a thread
        self.rows = max(1, min(geo.oh, -(-geo.oh * self.groups // (UNITS_PER_THREAD * self.threads))))

    def __call__(self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None,
                 relu: bool = False) -> None:
        """out (O, OH, OW) = conv(x (C, H, W)) + bias [+ residual (O, OH, OW)] [then ReLU]; out and
        residual contiguous float32 (out may be residual itself, not x)."""
        self.bind(x, out, residual, relu)()

    def bind(self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None,
             relu: bool = False):
        """The call above on these arrays, its arguments converted once (a prepared step's)."""
        kernel = self.kernel
        # unpadded, with no read past the map (a 1x1 /2 shortcut's rows): read x as it lies, where
        # the output does not overwrite it (a fused add may give out x's own buffer)
        as_it_lies = (self.xpad.shape == x.shape and x.dtype == np.float32 and x.flags.c_contiguous
                      and not np.may_share_memory(x, out))
        args = (native._at(x) if as_it_lies else self.args[0], *self.args[1:],
                None if residual is None else native._at(residual), native._at(out), *self.dims,
                int(relu), self.groups, self.rows, self.threads)

        copy = None if as_it_lies else self._copy_into_planes(x)

        def run():
            if copy:
                copy()
            if kernel(*args):
                raise RuntimeError(f"native.c has no blocked tile {self.b}x{self.tt}")
        return run

    def bind_batch(self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None, relu: bool = False,
                   backwards: bool = False, threads: int | None = None):
        """The call for a batch, x (n, C, H, W) into out (n, O, OH, OW) (+ residual, ReLU): its images
        at once on the cores, each whole on one thread in its own padded planes (native.c's
        cb_forward_batch; the images past a multiple of the threads split by rows as one image's
        are), where no image's output can overwrite another image's residual, or the input of an
        image not yet begun (_batch_waits). Else image by image through `bind`, last to first where
        `backwards` (inference.py's _image_order)."""
        n = x.shape[0]
        xs, outs, res = _image_spans(x), _image_spans(out), None if residual is None else _image_spans(residual)
        waits = None if xs is None or outs is None or (residual is not None and res is None) else \
            _batch_waits(outs, xs, res)
        if waits is None:
            order = range(n - 1, -1, -1) if backwards else range(n)
            images = [self.bind(x[i], out[i], None if residual is None else residual[i], relu) for i in order]
            return lambda: [image() for image in images]
        macs = self.o * self.c * self.geo.kernel[0] * self.geo.kernel[1] * self.geo.oh * self.geo.ow
        threads = threads or (WORKERS if n * macs >= MIN_SPLIT_MACS else 1)
        xpads, accs, buffers = self._slots(threads)
        after = None if max(waits) < 0 else np.array(waits, dtype=np.intc)
        as_is = self.xpad.shape == x.shape[1:] and not np.may_share_memory(x, out)
        (ph, pw), (c, hp, wp) = self.geo.pad, self.xpad.shape
        step = lambda a: a.strides[0] // a.itemsize if a.shape[0] > 1 else 0  # noqa: E731
        args = (native._at(x), step(x), None if residual is None else native._at(residual),
                0 if residual is None else step(residual), native._at(out), step(out),
                native._at(xpads), native._at(accs), None if after is None else native._at(after), int(as_is),
                n, self.geo.h, self.geo.w, ph, pw, *self.args[1:], c, self.o, hp * wp, wp, *self.dims[5:],
                int(relu), self.groups, self.rows if self.threads > 1 else 0, threads)  # rows 0: one core an image
        kernel = native.library().cb_forward_batch_f32

        def run():
            if kernel(*args):
                raise RuntimeError(f"native.c has no blocked tile {self.b}x{self.tt}")
        run.buffers = (xpads, accs, buffers, after)  # what args points into, alive while this step is
        return run

    def _slots(self, threads: int):
        """Each thread of cb_forward_batch's padded planes (borders zero: only interiors are
        written) and sums (one group's: a thread runs an image's groups in turn), as two arrays of
        pointers, and the buffers they point into: slot 0's the layer's own (the one-image calls'
        and the split images': every group's sums), made once and kept."""
        have = getattr(self, "slots", None)
        if have is None or have[0].size < threads:
            planes = [self.xpad] + [np.zeros_like(self.xpad) for _ in range(threads - 1)]
            sums = [self.acc] + [np.empty(self.acc.size // self.groups, dtype=np.float32) for _ in range(threads - 1)]
            self.slots = (np.array([a.ctypes.data for a in planes], dtype=np.uintp),
                          np.array([a.ctypes.data for a in sums], dtype=np.uintp), (planes, sums))
        return self.slots


    def _copy_into_planes(self, x: np.ndarray):
        """x into the padded planes' interior: native.c's row copy where x is contiguous float32
        (numpy's into the strided view ran at a third of a flat copy's speed), else numpy's."""
        interior = self.interior
        if not (x.dtype == np.float32 and x.flags.c_contiguous and x.shape == interior.shape):
            return lambda: np.copyto(interior, x)
        (ph, pw), (c, hp, wp) = self.geo.pad, self.xpad.shape
        copy, args = native.library().cb_pad_copy_f32, (native._at(x), native._at(self.xpad, ph * wp + pw), c,
                                                          self.geo.h, self.geo.w, hp * wp, wp)
        return lambda: copy(*args)


def _image_spans(a: np.ndarray) -> list[tuple[int, int]] | None:
    """Each image's bytes [start, end) of a float32 batch whose images are each C-contiguous, at
    one positive stride; None for any other layout (or dtype)."""
    n = a.shape[0]
    if a.dtype != np.float32 or n == 0 or not a[0].flags.c_contiguous or (n > 1 and a.strides[0] < a[0].nbytes):
        return None
    start, step, size = a.ctypes.data, a.strides[0], a[0].nbytes
    return [(start + i * step, start + i * step + size) for i in range(n)]


def _batch_waits(outs, xs, res) -> list[int] | None:
    """Whether the images may run at once on the cores, and what each waits for: None where output
    image i overlaps a later image's input, or of the residual anything but image i exactly (each
    value read before its own write); else per image the last earlier image whose input its output
    overlaps (-1: none): its output waits until that input is in its thread's planes (a plan that
    gives a 1x1 /2 shortcut its dead input's buffer: output image 2 lies on input image 1). Output i
    over input i is fine: the thread copies it into its planes first."""
    def overlap(p, q):
        return p[0] < q[1] and q[0] < p[1]
    waits = []
    for i, span in enumerate(outs):
        under = [j for j, s in enumerate(xs) if j != i and overlap(span, s)]
        if any(j > i for j in under):
            return None
        if res is not None and any(overlap(span, s) and (j != i or s != span) for j, s in enumerate(res)):
            return None
        waits.append(max(under, default=-1))
    return waits


def bind_max_pool(x: np.ndarray, out: np.ndarray, geo, threads: int | None = None):
    """Max pooling for inference, x (n, C, H, W) into out (n, C, OH, OW), both contiguous float32:
    native.c's cb_maxpool over runs of whole planes on the conv's own helper threads (a conv before
    it leaves them spinning; Python's pool woken beside them gained nothing on ResNet-18's pool1)."""
    planes = x.shape[0] * x.shape[1]
    threads = threads or (WORKERS if x.size >= MIN_POOL_SPLIT else 1)
    kernel = native.library().cb_maxpool_batch_f32
    args = (native._at(x), native._at(out), planes, geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow,
            UNITS_PER_THREAD * threads, threads)

    def run():
        if kernel(*args):
            raise MemoryError("max pooling: no memory for its row buffer")
    return run


def forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geo, layer: Layer | None = None) -> np.ndarray:
    """The (n, O, OH, OW) convolution of a float32 batch (conv.py's `blocked`, as the tuner times it),
    through `layer` if prepared already: its images on the cores at once (Layer.bind_batch)."""
    layer = layer or Layer(weight, bias, geo)
    out = np.empty((x.shape[0], weight.shape[0], geo.oh, geo.ow), dtype=np.float32)
    layer.bind_batch(np.ascontiguousarray(x, dtype=np.float32), out)()
    return out
