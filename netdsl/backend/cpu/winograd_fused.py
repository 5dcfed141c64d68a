"""Winograd F(2x2, 3x3) for inference on the CPU in one pass (native.c's wfc_ section), float32.

The training path's Winograd (backend/winograd.py) writes every tile's transformed input V
(16, C, n*tiles: 4x the input) and its products M (16, O, n*tiles) to memory between its three
steps; on ResNet-18's 56x56 layers at batch 8 that traffic (25 MB each way) cost more than the
multiplications Winograd saves. Here the tiles run in units of a few dozen (UNIT_TILES, in image,
row, column order, across rows and images): a unit's V is made in the thread's own cache-sized buffer, its
16 GEMMs run in registers (8 output channels x TILE_VECTORS vectors of 16 tiles), and each
8 channels' products go through the output transform (+ bias, + a residual, ReLU) straight into
the NCHW output. Each output is F(2x2, 3x3)'s, its sums over the input channels in chunks of 256
(float32 error as the unfused path's: ERROR_GROWTH["winograd_fused"] in backend/tuner.py).

    layer = Layer(u, bias)                # u = G g G^T (16, O, C), packed once
    run = layer.bind(x, out, residual=r, relu=True)   # out = relu(conv(x) + bias + r)
    run()

The units run on the cores, on the blocked kernel's helper threads (native.c's cb_parallel).
Inference only: there is no backward.
"""
from __future__ import annotations

import numpy as np

from . import native
from . import threads

BLOCK = 8  # native.c's WFC_OB: output channels a register tile
TILE_VECTORS = 2  # vectors of 16 tiles a register tile (2, 3, 4 instantiated; 2 ran fastest, AMD EPYC)
UNIT_TILES = (64, 32)  # tiles a unit: the most whose V (16 x C x (T + 16) floats) fits V_BYTES, else the last
V_BYTES = 768 << 10  # of a 1 MB L2 (AMD EPYC): 256 channels with 64 tiles spilled, 14x14 at batch 1 1.1x slower
MIN_SPLIT_MACS = 1 << 22  # below this a hand-off to the second core costs more than it saves (blocked's)
UNITS_PER_CORE = 1  # at least this many units a core, else the blocks of output channels split too
# (each part transforms the unit's input again: at 4 a core, ResNet's 14x14 at batch 1 ran 1.4x slower)


def applies(geo, groups: int, dtype, xp=np) -> bool:
    """Float32 on the CPU with native.c, ungrouped, 3x3 at stride 1 with padding 1 (the output
    the input's size)."""
    return (groups == 1 and np.dtype(dtype) == np.float32 and native.available(xp, dtype)
            and tuple(geo.kernel) == (3, 3) and tuple(geo.stride) == (1, 1) and tuple(geo.pad) == (1, 1))


def unit_tiles(c: int) -> int:
    """Tiles a unit for c input channels (UNIT_TILES, V_BYTES), whole register tiles."""
    step = 16 * TILE_VECTORS
    for tiles in UNIT_TILES:
        if 16 * c * (tiles + 16) * 4 <= V_BYTES:
            return max(step, tiles // step * step)
    return max(step, UNIT_TILES[-1] // step * step)


class Layer:
    """One conv layer's transformed filters u = G g G^T (16, O, C) (backend/winograd.py's
    filter_transform), packed for native.c's wfc_forward."""

    def __init__(self, u: np.ndarray, bias: np.ndarray | None):
        if u.ndim != 3 or u.shape[0] != 16:
            raise ValueError(f"fused Winograd F(2x2, 3x3) takes (16, O, C) transformed filters, not {u.shape}")
        o, c = u.shape[1:]
        self.o, self.c = o, c
        u = np.ascontiguousarray(u, dtype=np.float32)
        self.packed = np.empty(-(-o // BLOCK) * 16 * c * BLOCK, dtype=np.float32)
        native.library().wfc_pack_f32(native._at(u), native._at(self.packed), o, c)
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)

    def bind(self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None, relu: bool = False):
        """The call computing out (n, O, h, w) = conv(x (n, C, h, w)) + bias [+ residual] [then
        ReLU], its arguments converted once. All C-contiguous float32; out may be residual itself
        but may not overlap x (units of later images read x after earlier ones wrote out)."""
        n, c, h, w = x.shape
        if c != self.c or out.shape != (n, self.o, h, w) or (residual is not None and residual.shape != out.shape):
            raise ValueError(f"fused Winograd: shapes x {x.shape}, out {out.shape} do not fit "
                             f"{self.o}x{self.c} filters")
        for a in (x, out) + (() if residual is None else (residual,)):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("fused Winograd: its arrays must be C-contiguous float32")
        if np.may_share_memory(x, out):
            raise ValueError("fused Winograd: the output may not overlap the input")
        if TILE_VECTORS not in (2, 3, 4):
            raise ValueError(f"native.c has no fused Winograd tile of {TILE_VECTORS} vectors (2, 3 or 4)")
        tiles = n * ((h + 1) // 2) * ((w + 1) // 2)
        cores = threads.WORKERS if 16 * tiles * c * self.o >= MIN_SPLIT_MACS else 1
        unit = unit_tiles(c)
        tile_units = -(-tiles // unit)
        # too few units of tiles for the cores (ResNet's 7x7 maps at batch 1: one): the output
        # channels' blocks split too, each part transforming the unit's input again (cheap there)
        parts = max(1, min(-(-self.o // BLOCK), -(-UNITS_PER_CORE * cores // tile_units)))
        units = tile_units * parts
        kernel = native.library().wfc_run_f32  # on the blocked kernel's helper threads (native.c)
        args = (native._at(x), native._at(self.packed), None if self.bias is None else native._at(self.bias),
                None if residual is None else native._at(residual), native._at(out), int(relu), n, c, self.o, h, w,
                TILE_VECTORS, unit, parts, units, cores)
        held = (self, x, out, residual)  # the addresses in args stay valid while the call lives

        def run() -> None:
            if held and kernel(*args):
                raise MemoryError("fused Winograd: no memory for a thread's buffers")
        return run


def forward(x: np.ndarray, layer: Layer) -> np.ndarray:
    """The (n, O, h, w) convolution of a float32 batch (conv.py's `winograd_fused`)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty((x.shape[0], layer.o, *x.shape[2:]), dtype=np.float32)
    layer.bind(x, out)()
    return out
