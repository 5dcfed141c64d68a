"""Which algorithm a convolution runs on the CPU: measured on this machine, once per layer shape,
and kept in a cache file, as cuDNN's benchmark mode, oneDNN's primitive cache and FFTW's wisdom do.

For each distinct layer (batch, channels, map, kernel, stride, padding, groups, dtype) and the
directions it runs (forward only when no backward follows; in training, forward and a backward
of the filter and, unless it is a first layer, of the data too), every algorithm that applies
here and keeps the error budget runs on the real layer's input and weights, the fixed
thresholds' choice first: each once (in training a challenger whose forward already shows it
losing by PRUNE not run backward), those within CLOSE of the best once more where there are two
or more (the faster run kept), and no more candidates once the layer's measuring time passes BUDGET_REPEATS times its
best candidate's (or BUDGET_FLOOR). The fastest wins. A path's backward runs on what its own
forward saved, so one algorithm serves every direction; the cache keeps each candidate's time
per direction.

    NETDSL_TUNE=cache   (default) read the cache, measure what it lacks, and write it back
    NETDSL_TUNE=fresh   measure every layer again this run, and write the cache
    NETDSL_TUNE=off     the fixed thresholds (conv.py's threshold_choice), as before the tuner;
                        with --precision fast, exactly the choices netdsl made before it

The cache is $XDG_CACHE_HOME/netdsl/conv-algorithms.json (~/.cache/netdsl/...), one JSON file
for one machine: its CPU model, core count and the kernels' version (native.c's text and
netdsl's version). It is written atomically; a damaged one, or one from another machine or other
kernels, is ignored with a note and replaced when this run writes.

The error budget: each algorithm carries its measured float32 error growth (ERROR_GROWTH, the
error against a float64 convolution over a plain float32 im2col convolution's:
benchmarks/conv_error.py, benchmarks/NOTES.md), and a network's precision caps it per layer:
`exact` admits only im2col's dot products (and space-to-depth over them), `default` what keeps a
deep network's output within 2x of plain float32 convolutions' error (F(2x2, 3x3) and the direct
kernels too), `fast` everything (F(4x4, 3x3) and F(2x2, 5x5) as well).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..errors import NetValueError
from .cpu import blocked, native, winograd_fused
from .cpu.machine import cpu_model
from .im2col import Geometry

MODES = ("cache", "fresh", "off")
ENV = "NETDSL_TUNE"
FORMAT = 1  # the cache file's layout
TUNER_VERSION = "2"  # bumped when what is measured, or how, changes: old caches are then foreign

# A layer's measuring stops once it has taken this many times its best candidate's time (a few
# repetitions of the real layer), or BUDGET_FLOOR seconds where that is more.
BUDGET_REPEATS = 4
BUDGET_FLOOR = 0.05
MARGIN = 1.1  # a challenger must be 10% faster than the thresholds' choice to replace it
CLOSE = 1.1  # candidates within this factor of the best run again (a close call: noise decides less)
# A training layer's backward takes about twice its forward whatever the algorithm (the filter's and
# the data's gradients are a forward's work each), so a challenger's forward predicts its whole: one
# whose forward times BACKWARD_SHARE exceeds PRUNE times the best whole so far is not run backward.
# It cannot be a winner lost: even a backward only as long as its forward would make it slower than
# the best (2 x forward > best).
BACKWARD_SHARE = 3.0
PRUNE = 1.5
# Inference (forward only) runs each candidate this many times, the fastest kept: one forward is a
# few milliseconds, and on a shared machine one sample of each made ResNet-18's choice a coin toss
# (the same 3x3 layer's im2col read 1.9 ms in one run and 26 in another)
FORWARD_RUNS = 3

# float32 error against a float64 convolution, over plain float32 im2col's on the same layer
# (benchmarks/conv_error.py; the figures in benchmarks/NOTES.md, "float32 error budget")
# (AMD EPYC: F(2x2, 3x3) 1.07-1.72 from 64 to 512 channels, the direct kernels' long sums 1.0-1.68,
# F(2x2, 5x5) 4.0-7.4, F(4x4, 3x3) 6.5-9.6); s2d is its inner algorithm's, chosen under the same cap
# (the blocked inference kernel, summing chunk by chunk as a blocked GEMM does: 0.63-1.0; its 5x5 /1
# tiles on AlexNet's conv2 0.80, its 11x11 /4 on AlexNet's conv1 0.76; F(2x2, 3x3) fused for
# inference, its sums in chunks of 256 channels: 1.04-1.71, as the unfused one's)
ERROR_GROWTH = {"batch_major": 1.0, "per_image": 1.0, "s2d": 1.0, "direct": 1.7, "blocked": 1.0,
                "winograd_f2": 1.7, "winograd_fused": 1.7, "winograd_f2_5x5": 7.5, "winograd_f4": 10.0}
# --precision: the growth a layer may take. `default`: 2x, so that the output of a deep network,
# whose layers' errors add up much as plain float32 convolutions' do, stays within 2x of theirs.
PRECISIONS = {"exact": 1.0, "default": 2.0, "fast": float("inf")}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise NetValueError(f"precision '{precision}' is not one netdsl knows (use {', '.join(PRECISIONS)})")
    return precision


def mode() -> str:
    value = os.environ.get(ENV, "cache").strip().lower() or "cache"
    if value not in MODES:
        raise NetValueError(f"{ENV}={os.environ[ENV]!r} is not a tuning mode (use {', '.join(MODES)})")
    return value


# where each algorithm applies: correctness (and memory), never speed ------------------------------


def _winograd(kernel: int, pad: int, needs_native: bool):
    def applies(conv, x, geo: Geometry, groups: int, o: int) -> bool:
        return (conv.use_winograd and groups == 1 and geo.kernel == (kernel, kernel) and geo.stride == (1, 1)
                and geo.pad == (pad, pad) and (native.available(conv.xp, x.dtype) or not needs_native))
    return applies


# direct_weight_grad keeps per-lane sums of every weight (64 bytes a weight per thread)
DIRECT_MAX_WEIGHTS = 1 << 19


def _direct(conv, x, geo: Geometry, groups: int, o: int) -> bool:
    inner = geo.c * geo.kernel[0] * geo.kernel[1]
    return (native.available(conv.xp, x.dtype) and groups == 1 and geo.stride == (1, 1) and not geo.pointwise
            and geo.pad[0] < geo.kernel[0] and geo.pad[1] < geo.kernel[1] and (geo.oh, geo.ow) != (1, 1)
            and o * inner <= DIRECT_MAX_WEIGHTS)


def _blocked(conv, x, geo: Geometry, groups: int, o: int) -> bool:
    # forward only: it saves nothing for a backward pass
    return not conv.training and conv.cpu and blocked.applies(geo, groups, x.dtype, conv.xp)


def _winograd_fused(conv, x, geo: Geometry, groups: int, o: int) -> bool:
    # forward only, as blocked; F(2x2, 3x3)'s, so only where Winograd is allowed at all
    return (not conv.training and conv.cpu and conv.use_winograd
            and winograd_fused.applies(geo, groups, x.dtype, conv.xp))


def _s2d(conv, x, geo: Geometry, groups: int, o: int) -> bool:
    s = geo.stride[0]
    return groups == 1 and s >= 2 and geo.stride[1] == s and geo.kernel[0] >= s and geo.kernel[1] >= s


ALGORITHMS: dict[str, Callable[..., bool]] = {
    # the inference-only kernels first (after the thresholds' choice): where the layer's time
    # budget runs short, the ones after go unmeasured (ResNet-18's 512x7x7 at batch 1 left
    # blocked so, after the unfused Winograd's 11 ms a sample, and ran im2col at 2x its time)
    "blocked": _blocked,
    "winograd_fused": _winograd_fused,
    "winograd_f2": _winograd(3, 1, needs_native=False),
    "winograd_f4": _winograd(3, 1, needs_native=True),
    "winograd_f2_5x5": _winograd(5, 2, needs_native=True),
    "direct": _direct,
    "s2d": _s2d,
    # im2col: the whole batch's columns where they fit the memory budget, else image by image
    "batch_major": lambda conv, x, geo, groups, o: conv.columns_fit(x, geo, groups),
    "per_image": lambda conv, x, geo, groups, o: not conv.columns_fit(x, geo, groups),
}


def candidates(conv, x, geo: Geometry, groups: int, o: int) -> list[str]:
    """The algorithms that compute this layer correctly here and keep the network's error budget."""
    ceiling = PRECISIONS[conv.precision]
    return [name for name, applies in ALGORITHMS.items()
            if ERROR_GROWTH[name] <= ceiling and applies(conv, x, geo, groups, o)]


# the cache file -----------------------------------------------------------------------------------


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netdsl" / "conv-algorithms.json"


def kernels_version() -> str:
    from ..version import __version__
    text = native.SOURCE.read_bytes() if native.SOURCE.exists() else b""
    return f"{__version__}/{TUNER_VERSION}/{hashlib.sha256(text).hexdigest()[:12]}"


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "kernels": kernels_version()}


def _describe(m: dict) -> str:
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, kernels {m.get('kernels', '?')}"


_notes: list[Callable[[str], None]] = []


def on_note(say: Callable[[str], None] | None) -> None:
    """Where the tuner's notes go (the CLI prints them; by default, warnings.warn)."""
    _notes[:] = [] if say is None else [say]


def note(text: str) -> None:
    if _notes:
        _notes[0](text)
    else:
        warnings.warn(text, stacklevel=3)


class Cache:
    """The measured times, {layer key: {algorithm: {direction: seconds}}}, for this machine."""

    def __init__(self, path: Path, here: dict):
        self.path, self.machine = path, here
        self.entries: dict[str, dict] = {}
        self.fresh: set[str] = set()  # measured by this process (NETDSL_TUNE=fresh measures once)
        self.load()

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            note(f"the algorithm cache {self.path} cannot be read ({exc.strerror or exc}): measuring again")
            return
        try:
            data = json.loads(raw)
            ok = (isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("entries"), dict)
                  and all(_valid_entry(v) for v in data["entries"].values()))
        except (ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            note(f"the algorithm cache {self.path} is damaged: ignored, measuring again (it is rewritten)")
            return
        if data.get("machine") != self.machine:
            note(f"the algorithm cache {self.path} was measured on another machine or kernels "
                 f"({_describe(data.get('machine') or {})}; here {_describe(self.machine)}): ignored, "
                 "measuring again (it is rewritten)")
            return
        self.entries = data["entries"]

    def save(self) -> None:
        from ..files import write_atomic
        data = {"format": FORMAT, "machine": self.machine, "entries": self.entries}
        try:
            write_atomic(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        except (OSError, Exception) as exc:  # a read-only home: the choice still holds for this run
            note(f"the algorithm cache {self.path} cannot be written ({exc}): the measurements last this run only")


def _valid_entry(entry) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(times, dict) and all(isinstance(t, (int, float)) and t >= 0 for t in times.values())
        for times in entry.values())


_cache: dict[str, Cache] = {}


def cache() -> Cache:
    """The cache of this machine at today's path (read once a process, per path)."""
    path = cache_path()
    if str(path) not in _cache:
        _cache[str(path)] = Cache(path, machine())
    return _cache[str(path)]


def forget() -> None:
    """Drop what this process read or measured (the next layer reads the file again)."""
    _cache.clear()


# choosing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    algorithm: str
    source: str  # measured | cache | thresholds (NETDSL_TUNE=off) | only one (applies) | not measured (analysed)


def directions(conv) -> tuple[str, ...]:
    """The ways the layer runs: forward; in training, a backward too, of the filter only for a
    first layer, else of the filter and the data (one call computes both)."""
    if not conv.training:
        return ("forward",)
    return ("forward", "backward_filter+data" if conv.need_dx else "backward_filter")


def layer_key(geo: Geometry, groups: int, o: int, dtype, ways: tuple[str, ...]) -> str:
    return (f"{'+'.join(ways)} n{geo.n} c{geo.c} {geo.h}x{geo.w} o{o} k{geo.kernel[0]}x{geo.kernel[1]} "
            f"s{geo.stride[0]}x{geo.stride[1]} p{geo.pad[0]}x{geo.pad[1]} g{groups} {dtype}")


def cost(times: dict) -> float:
    """A candidate's time all the ways the layer runs; {}: left unmeasured by the time budget."""
    return sum(times.values()) if times else float("inf")


def choose(conv, x, w, b, geo: Geometry, groups: int, o: int | None = None) -> Choice:
    """The algorithm for this layer; with w None (a layer analysed, not run) nothing is measured:
    the cache's choice, or the thresholds' where it has none ("not measured")."""
    o = w.shape[0] if o is None else o
    allowed = candidates(conv, x, geo, groups, o)
    how = mode()
    if how == "off" or len(allowed) <= 1:
        return Choice(conv.threshold_choice(x, geo, groups, o, allowed), "thresholds" if how == "off" else "only one")
    ways = directions(conv)
    key = layer_key(geo, groups, o, x.dtype, ways)
    store = cache()
    entry = store.entries.get(key, {})
    reuse = how == "cache" or key in store.fresh
    missing = [a for a in allowed if not (reuse and a in entry)]
    first = conv.threshold_choice(x, geo, groups, o, allowed)
    if not missing:
        return Choice(pick(allowed, entry, first), "cache")
    if w is None:
        return Choice(first, "not measured")
    order = sorted(missing, key=lambda a: a != first)  # today's choice first: measured whatever the budget
    entry = {**({} if not reuse else entry), **measure(conv, x, w, b, geo, groups, order, ways)}
    winner = pick(allowed, entry, first)
    if winner != first and entry.get(first):
        # a challenger beat the thresholds' choice: both again, warm now (a first run pays its
        # buffers' first touch, and one slow sample on a shared machine must not decide), each
        # keeping its faster time
        again = measure(conv, x, w, b, geo, groups, [first, winner], ways)
        for a in (first, winner):
            if again.get(a) and cost(again[a]) < cost(entry[a]):
                entry[a] = again[a]
    store.entries[key] = entry
    store.fresh.add(key)
    store.save()
    return Choice(pick(allowed, entry, first), "measured")


def pick(allowed: list[str], entry: dict, first: str) -> str:
    """The fastest measured candidate, but the thresholds' choice unless another beats it by
    MARGIN: a difference within the noise is no reason to leave the choice measured before."""
    timed = [a for a in allowed if entry.get(a)]
    if not timed:
        return first
    best = min(timed, key=lambda a: cost(entry[a]))
    if first in timed and cost(entry[best]) * MARGIN >= cost(entry[first]):
        return first
    return best


class _Scratch:
    """A workspace of the measurement's own: the losers' buffers go when it ends."""

    def __init__(self):
        self.buffers: dict[Any, Any] = {}

    def get(self, key, make):
        if key not in self.buffers:
            self.buffers[key] = make()
        return self.buffers[key]


def _run_once(conv, algorithm: str, x, w, b, geo, groups, ways, beaten_at: float = float("inf")) -> dict:
    """One run of an algorithm every way the layer goes, {direction: seconds}; the backward
    directions in the one call a training step makes. A candidate whose forward alone says it
    will take over `beaten_at` in all is not run backward: {} (it lost)."""
    conv.prepare(algorithm, w, b, geo)  # the weights' part, once (kept where the caller keeps it)
    t0 = time.perf_counter()
    out, saved = conv.run(algorithm, x, w, b, geo, groups)
    times = {ways[0]: time.perf_counter() - t0}
    if len(ways) > 1:
        if times[ways[0]] * BACKWARD_SHARE > beaten_at:
            return {}
        t1 = time.perf_counter()
        conv.backward(saved, out, w, conv.need_dx)
        times[ways[1]] = time.perf_counter() - t1
    return times


_measurements = [0]  # measure() calls so far: a candidate whose run measured an inner conv (s2d) runs again


def measure(conv, x, w, b, geo: Geometry, groups: int, algorithms: list[str], ways) -> dict:
    """{algorithm: {direction: seconds}}: each candidate run once, until the layer's time budget
    is spent; a challenger whose forward predicts it loses by PRUNE is not run backward; where
    another came within CLOSE of the best, those close ones run again (the faster kept)."""
    _measurements[0] += 1
    scratch = replace(conv, workspace=_Scratch(), key=f"{conv.key} (tuning)")
    found: dict[str, dict] = {}
    started = time.perf_counter()
    runs = FORWARD_RUNS if len(ways) == 1 else 1
    for algorithm in algorithms:
        best = min((cost(t) for t in found.values()), default=None)
        if best is not None and time.perf_counter() - started > max(BUDGET_FLOOR, runs * BUDGET_REPEATS * best):
            found[algorithm] = {}  # unmeasured, out of time: NETDSL_TUNE=fresh tries again
            continue
        beaten_at = float("inf") if best is None else PRUNE * best
        before, t0 = _measurements[0], time.perf_counter()
        found[algorithm] = _run_once(scratch, algorithm, x, w, b, geo, groups, ways, beaten_at)
        if _measurements[0] != before:  # its time included measuring its inner conv: again, without
            started += time.perf_counter() - t0  # nor does that measuring spend this layer's budget
            found[algorithm] = _run_once(scratch, algorithm, x, w, b, geo, groups, ways, beaten_at)
        for _ in range(runs - 1):
            if best is not None and cost(found[algorithm]) > PRUNE * best:
                break  # clearly losing: no more samples of it (s2d's took 28 ms against 0.8)
            again = _run_once(scratch, algorithm, x, w, b, geo, groups, ways)
            found[algorithm] = again if cost(again) < cost(found[algorithm]) else found[algorithm]
    best = min(cost(t) for t in found.values())
    close = [a for a, times in found.items() if times and cost(times) <= CLOSE * best]
    for algorithm in close if len(close) > 1 else []:  # a close call: a second run, each its faster
        times = found[algorithm]
        again = _run_once(scratch, algorithm, x, w, b, geo, groups, ways)
        found[algorithm] = again if cost(again) < cost(times) else times
    return found
