"""The CPU's kernels in C (native.c), built on first use with the machine's C compiler and
loaded through ctypes, the way tinygrad's CPU back end compiles its kernels.

numpy does max pooling a pass per window tap, im2col/col2im a call per short run of a map
row, and batch norm six passes over each channel block: on LeNet's 10x10 maps and in ResNet's
pooling and batch norm that bookkeeping, not the memory traffic, is the time. These loops do
each in one or two passes. The rest of native.c is arithmetic BLAS serves badly: direct
convolutions for thin layers (backend/cpu/direct.py), Winograd's transforms, the SGD update. The
library is cached under
$NETDSL_CACHE (default ~/.cache/netdsl), keyed by the source, the compiler and this CPU's
features, and written to a temporary name then renamed, so concurrent first uses are safe.
Where no compiler works, or NETDSL_NATIVE=0, `library()` is None and the callers keep their
numpy paths (which the tests also use as the reference).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...ops import EPILOGUES
from . import threads
from .threads import over_batch

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-std=c99", "-ffp-contract=fast", "-shared", "-fPIC")
SUFFIX = {"float32": "f32", "float64": "f64"}
# Winograd's transforms in native.c, with how many int dimensions each takes before its image range,
# for F(2x2, 3x3) (wino_), F(4x4, 3x3) (wino4_) and F(2x2, 5x5) (wino25_)
WINOGRAD = {"input": 6, "output": 6, "grad_tiles": 6, "input_adjoint": 6}
WINOGRAD_VARIANTS = ("wino", "wino4", "wino25")
# The fused activations' gradients in C, by op name: dx[k] from the incoming gradient g[k] and the
# activation's output v[k]. direct_grad_planes applies them; its `act` argument is an activation's
# place in netdsl.ops.EPILOGUES counted from 1 (0: none), its cases generated from this table.
EPILOGUE_GRADIENTS = {
    "relu": "g[k] * (T)(v[k] > 0)",
    "tanh": "g[k] * (1 - v[k] * v[k])",
    "sigmoid": "g[k] * (v[k] * (1 - v[k]))",
    "relu6": "g[k] * (T)((v[k] > 0) & (v[k] < 6))",
    "hsigmoid": "g[k] * ((T)((v[k] > 0) & (v[k] < 1)) * (T)(1.0 / 6))",
}
# The activations native.c's batch norm applies itself, each a clamp of an affine map of bn's output
# o: y = min(max(scale * o + shift, lo), hi), its gradient scale where lo < y < hi (the output
# strictly inside, as activation_rules' masks), by name: (scale, shift, lo, hi). With another
# activation fused (tanh, sigmoid), batch norm runs its numpy code.
BN_EPILOGUES = {
    "relu": (1.0, 0.0, 0.0, float("inf")),
    "relu6": (1.0, 0.0, 0.0, 6.0),
    "hsigmoid": (1 / 6, 0.5, 0.0, 1.0),  # relu6(o + 3)/6
}


def epilogue_code(activation: str | None) -> int:
    """direct_grad_planes' `act` for a fused activation (0: none)."""
    return 0 if activation is None else EPILOGUES.index(activation) + 1


def generated_prefix() -> str:
    """The definitions native.c is compiled behind: its switch cases over EPILOGUE_GRADIENTS."""
    cases = " ".join(f"case {epilogue_code(name)}: for (int k = 0; k < ow; ++k) d[k] = {EPILOGUE_GRADIENTS[name]}; break;"
                     for name in EPILOGUES)
    return f"#define EPILOGUE_GRADIENT_CASES(T) {cases}\n"


class Geometry(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "oh", "ow")]

    @classmethod
    def of(cls, geo) -> "Geometry":
        return cls(geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow)


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _cache_dir() -> Path:
    base = os.environ.get("NETDSL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "netdsl")
    return Path(base)


def _build(compiler: str) -> Path:
    source = generated_prefix().encode() + SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                     _cpu_features().encode(), platform.machine().encode()])).hexdigest()[:16]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / "netdsl-cache"):
        target = directory / f"native-{key}.so"
        if target.exists():
            return target
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=target.name, dir=directory)
        except OSError:
            continue  # not writable: the next place
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, "-x", "c", "-", "-o", partial, "-lm"], input=source, check=True,
                           capture_output=True, timeout=120)
            os.replace(partial, target)  # whole or not at all: another process may be loading it
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return target
    raise OSError("no writable cache directory for the native kernels")


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (NETDSL_NATIVE=0, no C compiler, or it failed)."""
    if os.environ.get("NETDSL_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    try:
        lib = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.SubprocessError):
        return None
    p, i, size, geo = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t, Geometry
    for suffix in SUFFIX.values():
        getattr(lib, f"maxpool_forward_{suffix}").argtypes = [p, p, p, size, geo]
        getattr(lib, f"maxpool_backward_{suffix}").argtypes = [p, p, p, size, geo]
        getattr(lib, f"im2col_bm_{suffix}").argtypes = [p, p, i, i, i, i, geo]
        getattr(lib, f"col2im_bm_{suffix}").argtypes = [p, p, i, i, i, i, geo]
        getattr(lib, f"bn_forward_{suffix}").argtypes = [p] * 8 + [i, i, size, i, i, i, ctypes.c_double, p]
        getattr(lib, f"bn_backward_{suffix}").argtypes = [p] * 9 + [i, i, size, i, i, i, p]
        getattr(lib, f"direct_forward_{suffix}").argtypes = [p] * 4 + [i, i, i, size] + [i] * 6 + [size, size, i, i]
        getattr(lib, f"direct_weight_grad_{suffix}").argtypes = [p] * 3 + [i, i, size, size, size] + [i] * 7
        getattr(lib, f"direct_grad_planes_{suffix}").argtypes = [p] * 4 + [i] * 5 + [size, size] + [i] * 3
        getattr(lib, f"direct_weight_grad_{suffix}").restype = i
        for way in ("forward", "backward"):
            getattr(lib, f"avgpool_tiled_{way}_{suffix}").argtypes = [p, p, size] + [i] * 4 + [ctypes.c_double]
        getattr(lib, f"depthwise_forward_{suffix}").argtypes = [p] * 4 + [i] * 4 + [geo]
        getattr(lib, f"depthwise_backward_{suffix}").argtypes = [p] * 6 + [i] * 4 + [geo]
        for way in ("forward", "backward"):
            getattr(lib, f"depthwise_{way}_{suffix}").restype = i  # -1: no memory for its buffers
        getattr(lib, f"sgd_update_{suffix}").argtypes = [p] * 3 + [size, size] + [ctypes.c_double] * 3
        for name in ("wino_filter", "wino_filter_adjoint", "wino_filter25", "wino_filter25_adjoint"):
            getattr(lib, f"{name}_{suffix}").argtypes = [p, p, p, i, size, size, size]
        for name, ints in WINOGRAD.items():
            for prefix in WINOGRAD_VARIANTS:
                getattr(lib, f"{prefix}_{name}_{suffix}").argtypes = [p, p] + [i] * (ints + 2)
                getattr(lib, f"{prefix}_{name}_{suffix}").restype = i  # -1: no memory for its buffers
    _bind_blocked(lib)
    _bind_skinny(lib)
    _bind_wf(lib)
    _bind_wfc(lib)
    return lib


def available(xp, dtype) -> bool:
    """Whether the native kernels serve arrays of this module and dtype (numpy float32/64)."""
    return xp.__name__ == "numpy" and _suffix(dtype) is not None and library() is not None


@lru_cache(maxsize=None)
def _suffix(dtype) -> str | None:
    return SUFFIX.get(str(dtype))  # str(dtype) costs microseconds, and a step asks dozens of times


@lru_cache(maxsize=None)
def _kernel(name: str, dtype):
    return getattr(library(), f"{name}_{_suffix(dtype)}")


def _at(a, offset: int = 0) -> int:
    return a.ctypes.data + offset * a.itemsize


def maxpool_forward(xp, x, geo):
    """(out, arg): each window's maximum and the position in its map it came from (int32)."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    out = xp.empty((n, c, geo.oh, geo.ow), dtype=x.dtype)
    arg = xp.empty(out.shape, dtype=xp.int32)
    kernel, g, size, outs = _kernel("maxpool_forward", x.dtype), Geometry.of(geo), geo.h * geo.w, geo.oh * geo.ow

    def work(lo, hi):
        kernel(_at(x, lo * c * size), _at(out, lo * c * outs), _at(arg, lo * c * outs), (hi - lo) * c, g)
    over_batch(xp, n, x.size, work)
    return out, arg


def maxpool_backward(xp, dout, arg, geo, shape):
    dout = xp.ascontiguousarray(dout)
    n, c = shape[:2]
    dx = xp.empty(shape, dtype=dout.dtype)
    kernel, g, size, outs = _kernel("maxpool_backward", dout.dtype), Geometry.of(geo), geo.h * geo.w, geo.oh * geo.ow

    def work(lo, hi):
        kernel(_at(dout, lo * c * outs), _at(arg, lo * c * outs), _at(dx, lo * c * size), (hi - lo) * c, g)
    over_batch(xp, n, dx.size, work)
    return dx


def im2col_batch_major(xp, x, geo, cols):
    """Fill (C*kh*kw, n*OH*OW) `cols` from x, channel blocks on the cores."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    kernel, g = _kernel("im2col_bm", x.dtype), Geometry.of(geo)
    over_batch(xp, c, cols.size, lambda lo, hi: kernel(_at(x), _at(cols), n, c, lo, hi, g))
    return cols


def col2im_batch_major(xp, cols, geo, n: int):
    """The (n, C, H, W) input gradient from (C*kh*kw, n*OH*OW) columns, channel blocks on the cores."""
    cols = xp.ascontiguousarray(cols)
    dx = xp.empty((n, geo.c, geo.h, geo.w), dtype=cols.dtype)
    kernel, g = _kernel("col2im_bm", cols.dtype), Geometry.of(geo)
    over_batch(xp, geo.c, cols.size, lambda lo, hi: kernel(_at(cols), _at(dx), n, geo.c, lo, hi, g))
    return dx


def _clamp(activation: str | None):
    """native.c's batch norm's `clamp` argument: BN_EPILOGUES' four values, or None for none."""
    return None if activation is None else (ctypes.c_double * 4)(*BN_EPILOGUES[activation])


def bn_forward(xp, x, gamma, beta, mean, var, training: bool, eps: float, activation: str | None = None):
    """(out, inv_std) of batch norm over an (n, C, ...) array, through `activation` (one of
    BN_EPILOGUES, or None), channel ranges on the cores. In training `mean` and `var` receive the
    batch statistics, else they are used. x-hat is not kept: bn_backward recomputes it from x and
    the mean."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    m = x.size // (n * c) if x.size else 0
    out, inv_std = xp.empty_like(x), xp.empty(c, dtype=x.dtype)
    kernel, clamp = _kernel("bn_forward", x.dtype), _clamp(activation)
    over_batch(xp, c, x.size, lambda lo, hi: kernel(_at(x), None, _at(out), _at(mean), _at(var), _at(inv_std),
                                                     _at(gamma), _at(beta), n, c, m, lo, hi, int(training),
                                                     float(eps), clamp))
    return out, inv_std


def bn_backward(xp, dout, y, x, mean, gamma, inv_std, training: bool, need_dx: bool, activation: str | None = None):
    """(dx or None, sum of g, sum of g * x-hat) per channel, g being dout through `activation`
    (one of BN_EPILOGUES, or None), whose output is y; x and mean: the forward's input and mean
    (x-hat recomputed)."""
    dout = xp.ascontiguousarray(dout)
    n, c = dout.shape[:2]
    m = dout.size // (n * c) if dout.size else 0
    dx = xp.empty_like(dout) if need_dx else None
    sum_g, sum_gx = xp.empty(c, dtype=dout.dtype), xp.empty(c, dtype=dout.dtype)
    kernel, clamp = _kernel("bn_backward", dout.dtype), _clamp(activation)
    y = None if activation is None else xp.ascontiguousarray(y)  # held here while the kernel reads it
    ys, dxs = (None if a is None else _at(a) for a in (y, dx))
    over_batch(xp, c, dout.size, lambda lo, hi: kernel(_at(dout), ys, _at(x), _at(mean), dxs, _at(sum_g),
                                                        _at(sum_gx), _at(gamma), _at(inv_std), n, c, m, lo, hi,
                                                        int(training), clamp))
    return dx, sum_g, sum_gx


def winograd(xp, name: str, src, dst, n: int, *dims: int, variant: str = "wino") -> None:
    """One of native.c's Winograd transforms (`variant`: wino for F(2x2, 3x3), wino4 for F(4x4, 3x3),
    wino25 for F(2x2, 5x5); `name`: input, output, grad_tiles, input_adjoint) from src into dst,
    both contiguous, the images split over the cores."""
    if variant == "wino" and name in WF_TRANSFORMS and src.dtype == np.float32:
        if name == "input":
            winograd_input_f32(xp, src, dst, n, *dims)
        else:
            winograd_output_f32(xp, src, dst, n, *dims)
        return
    kernel = _kernel(f"{variant}_{name}", src.dtype)

    def work(lo, hi):  # -1: no memory for its plane or staging buffer
        if kernel(_at(src), _at(dst), n, *dims, lo, hi):
            raise MemoryError(f"Winograd's {name} transform: no memory for its buffers")
    # the split by the larger side: the output transform and the adjoint read arrays 2.25-4x the
    # size of what they write (128x28x28 b8: 802K values out of 3.2M, under the 1M threshold)
    over_batch(xp, n, max(src.size, dst.size), work)


FILTER_BLOCK = 512  # native.c's: filters a block
FILTER_KERNELS = {9: "wino_filter", 25: "wino_filter25"}  # by taps a filter: 3x3, 5x5


def _over_pieces(xp, total: int, piece: int, elements: int, work) -> None:
    """work(start, stop) over [0, total) in pieces of `piece`, the pieces split over the cores."""
    over_batch(xp, -(-total // piece), elements, lambda lo, hi: work(lo * piece, min(total, hi * piece)))


def winograd_filters(xp, src, kron, dst, filters: int, adjoint: bool) -> None:
    """Winograd's filter transform of `filters` 3x3 or 5x5 filters (src: the weights, dst: U,
    (positions, filters)) or, if `adjoint`, its adjoint (src: dU, dst: the weights' gradient), in
    blocks of filters on the cores; kron: the (positions, taps) matrix kron(G, G) in src's dtype."""
    name = FILTER_KERNELS[kron.shape[1]]
    kernel = _kernel(f"{name}_adjoint" if adjoint else name, src.dtype)
    args = (_at(src), _at(kron), _at(dst), kron.shape[0], filters)
    _over_pieces(xp, filters, FILTER_BLOCK, src.size, lambda start, stop: kernel(*args, start, stop))


def sgd_update(xp, w, g, v, momentum: float, decay: float, lr: float, chunk: int) -> None:
    """native.c's one-pass SGD update of contiguous w, v from g, in pieces of `chunk` values on the cores."""
    kernel = _kernel("sgd_update", w.dtype)
    args = (_at(w), _at(g), _at(v))
    _over_pieces(xp, w.size, chunk, w.size, lambda start, stop: kernel(*args, start, stop, momentum, decay, lr))


def avgpool_tiled(xp, src, geo, forward: bool):
    """Average pooling whose windows tile the input (backend/kernels/pooling.py's _tiles), forward (src: the
    input) or backward (src: the output gradient), images split over the cores."""
    src = xp.ascontiguousarray(src)
    n, c = src.shape[:2]
    shape = (n, c, geo.oh, geo.ow) if forward else (n, c, geo.h, geo.w)
    dst = xp.empty(shape, dtype=src.dtype)
    kernel = _kernel(f"avgpool_tiled_{'forward' if forward else 'backward'}", src.dtype)
    per_in, per_out = src[0, 0].size, dst[0, 0].size
    scale = 1.0 / (geo.kernel[0] * geo.kernel[1])
    over_batch(xp, n, src.size + dst.size, lambda lo, hi: kernel(
        _at(src, lo * c * per_in), _at(dst, lo * c * per_out), (hi - lo) * c, geo.h, geo.w, *geo.kernel, scale))
    return dst


def _checked(name: str, status: int) -> None:
    if status:
        raise MemoryError(f"depthwise {name}: no memory for its plane buffers")


def depthwise_forward(xp, x, weight, bias, geo: Geometry):
    """The depthwise convolution of (n, C, H, W) x with (C, 1, kh, kw) weights, plus the bias
    (None: none), channel ranges on the cores. geo: h, w the input's own; oh, ow those
    of the input extended by padend (ops.end_extension), whose extra rows and columns read as 0."""
    x = xp.ascontiguousarray(x)
    weight = xp.ascontiguousarray(weight)
    n, c = x.shape[:2]
    out = xp.empty((n, c, geo.oh, geo.ow), dtype=x.dtype)
    kernel = _kernel("depthwise_forward", x.dtype)
    b = None if bias is None else _at(xp.ascontiguousarray(bias))
    args = (_at(x), _at(weight), b, _at(out), n, c)
    # the split weighs the work, kh*kw multiply-adds an output: MobileNet's 14x14 and 7x7 layers, under
    # a million values in and out, still take 0.3-0.4 ms on one core, ten hand-offs' worth
    over_batch(xp, c, x.size + out.size * geo.kh * geo.kw,
               lambda lo, hi: _checked("forward", kernel(*args, lo, hi, geo)))
    return out


def depthwise_backward(xp, x, dout, weight, geo: Geometry, need_dx: bool, need_db: bool):
    """(dx or None, dw (C, 1, kh, kw), db or None) of the depthwise convolution whose input was x,
    from its output's gradient dout: channel ranges on the cores, each summing its own weights'
    gradients over the batch."""
    dout = xp.ascontiguousarray(dout)
    weight = xp.ascontiguousarray(weight)
    n, c = x.shape[:2]
    dx = xp.empty(x.shape, dtype=dout.dtype) if need_dx else None
    dw = xp.empty(weight.shape, dtype=dout.dtype)
    db = xp.empty(c, dtype=dout.dtype) if need_db else None
    kernel = _kernel("depthwise_backward", dout.dtype)
    args = (_at(x), _at(dout), _at(weight), _at(dw), None if db is None else _at(db),
            None if dx is None else _at(dx), n, c)
    over_batch(xp, c, 2 * x.size + dout.size * geo.kh * geo.kw,
               lambda lo, hi: _checked("backward", kernel(*args, lo, hi, geo)))
    return dx, dw, db


# the blocked direct convolution for inference (native.c's last section, backend/cpu/blocked.py) ------


def _bind_blocked(lib) -> None:
    p, i, size = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t
    lib.cb_pack_f32.argtypes = [p, p, i, i, i, i]
    lib.cb_forward_f32.argtypes = [p] * 6 + [i, i, size] + [i] * 14
    lib.cb_forward_f32.restype = i  # -1: a tile shape native.c does not instantiate
    # (x, x_image, res, res_image, out, out_image), xpads, accs, after, as_is, n, h, w, ph, pw, packed, bias,
    # c, o, plane, then cb_forward's ints from wp on
    lib.cb_forward_batch_f32.argtypes = [p, size] * 3 + [p] * 3 + [i] * 6 + [p, p, i, i, size] + [i] * 14
    lib.cb_forward_batch_f32.restype = i
    lib.cb_pad_copy_f32.argtypes = [p, p, i, i, i, size, i]
    lib.cb_pad_copy_f32.restype = None
    lib.cb_maxpool_f32.argtypes = [p, p, size] + [i] * 10
    lib.cb_maxpool_f32.restype = i  # -1: no memory for its row
    lib.cb_maxpool_batch_f32.argtypes = [p, p, size] + [i] * 12  # ..., parts, threads
    lib.cb_maxpool_batch_f32.restype = i


# the skinny fc for inference at small batch (native.c's sk_ section, backend/inference.py's fc step) --


def _bind_skinny(lib) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    for suffix in SUFFIX.values():
        getattr(lib, f"sk_fc_{suffix}").argtypes = [p] * 4 + [i] * 5 + [p]


def skinny_fc_call(x, weight, bias, out, activation: str | None = None):
    """A function of (lo, hi) computing out[:, lo:hi] = act(x @ weight[lo:hi].T + bias[lo:hi]):
    x (n, K), weight (O, K), out (n, O) all C-contiguous of one dtype, bias (O,) or None;
    `activation` one of BN_EPILOGUES or None (the others: the caller's). The arrays' addresses are
    bound once (the inference path calls it every run); keep them alive while it is used."""
    n, k = x.shape
    o = weight.shape[0]
    for a in (x, weight, out) + (() if bias is None else (bias,)):
        if not a.flags.c_contiguous or a.dtype != x.dtype:
            raise ValueError("skinny fc: its arrays must be C-contiguous and of one dtype")
    if weight.shape[1] != k or out.shape != (n, o) or (bias is not None and bias.shape != (o,)):
        raise ValueError(f"skinny fc: shapes x {x.shape}, weight {weight.shape}, out {out.shape} do not agree")
    kernel, clamp = _kernel("sk_fc", x.dtype), _clamp(activation)
    args = (_at(x), _at(weight), None if bias is None else _at(bias), _at(out), n, k, o)

    def rows(lo: int, hi: int) -> None:
        kernel(*args, lo, hi, clamp)
    rows.clamp = clamp  # held: the kernel reads it on every call
    return rows


def skinny_fc(xp, x, weight, bias=None, activation: str | None = None):
    """act(x @ weight.T + bias) for a few rows of x (the inference path's fc at small batch), the
    weight read once, its rows split over the cores."""
    x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)
    bias = None if bias is None else xp.ascontiguousarray(bias)
    out = xp.empty((x.shape[0], weight.shape[0]), dtype=x.dtype)
    over_batch(xp, weight.shape[0], weight.size, skinny_fc_call(x, weight, bias, out, activation))
    return out


# Winograd F(2x2, 3x3)'s float32 transforms 16 tiles a vector (native.c's wf_ section) -------------

WF_TRANSFORMS = ("input", "output")  # winograd() takes these from the wf_ section for float32


def _bind_wf(lib) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.wf_input_f32.argtypes = [p, p] + [i] * 8
    lib.wf_output_f32.argtypes = [p, p, p, p] + [i] * 9


def _planes(xp, planes: int, elements: int, kernel, args, what: str) -> None:
    """kernel(*args, lo, hi) over planes [0, planes) (image x channel: one image's channels split
    too) on the cores."""
    def work(lo, hi):
        if kernel(*args, lo, hi):
            raise MemoryError(f"Winograd's {what} transform: no memory for its buffers")
    over_batch(xp, planes, elements, work)


def winograd_input_f32(xp, x, v, n: int, c: int, th: int, tw: int, h: int, w: int) -> None:
    """V = B^T d B of every 4x4 tile of the contiguous float32 (n, C, h, w) x into v (16, C, n,
    th*tw), as wino_input's (same layout), 16 tiles a vector."""
    _planes(xp, n * c, v.size, library().wf_input_f32, (_at(x), _at(v), n, c, th, tw, h, w), "input")


def winograd_output_f32(xp, m, out, n: int, o: int, th: int, tw: int, h: int, w: int, bias=None,
                        residual=None, relu: bool = False) -> None:
    """out (n, O, h, w) = A^T M A of every tile of m (16, O, n, th*tw) (+ bias (O,), + residual
    (out's shape, may be out itself), then ReLU), float32, contiguous."""
    args = (_at(m), _at(out), None if bias is None else _at(bias), None if residual is None else _at(residual),
            int(relu), n, o, th, tw, h, w)
    _planes(xp, n * o, m.size, library().wf_output_f32, args, "output")


def _bind_wfc(lib) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.wfc_pack_f32.argtypes = [p, p, i, i]
    lib.wfc_pack_f32.restype = None
    lib.wfc_forward_f32.argtypes = [p] * 5 + [i] * 11
    lib.wfc_run_f32.argtypes = [p] * 5 + [i] * 11
    lib.cb_copy_f32.argtypes = [p, p, ctypes.c_ssize_t, i, i]


COPY_PIECE = 1 << 16  # floats a piece of a parallel copy (256 KB)


def copy_call(dst, src):
    """A function copying contiguous float32 src into dst (same size) on the cores, its arguments
    bound once; keep both alive while it is used."""
    if not (dst.flags.c_contiguous and src.flags.c_contiguous and dst.dtype == src.dtype == np.float32
            and dst.size == src.size):
        raise ValueError("parallel copy: contiguous float32 arrays of one size")
    kernel, parts = library().cb_copy_f32, max(1, -(-src.size // COPY_PIECE))
    workers = threads.WORKERS if src.size >= threads.MIN_ELEMENTS else 1
    args = (_at(dst), _at(src), src.size, parts, workers)
    return lambda: kernel(*args)
