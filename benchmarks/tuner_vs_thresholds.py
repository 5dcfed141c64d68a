"""The tuner's choice against the fixed thresholds', per conv layer: each layer of LeNet-5,
AlexNet, ResNet-18 and VGG16 (small batches, distinct shapes once), the algorithm the thresholds
pick (NETDSL_TUNE=off) and the one the tuner picks measuring afresh (NETDSL_TUNE=fresh, into a
temporary cache), both timed forward + backward on the real layer, interleaved, medians. The
`noise` column is the thresholds' algorithm timed twice (its two medians' ratio): a tuner ratio
within it is a draw. Where both pick the same algorithm the ratio is 1 by construction.

    python benchmarks/tuner_vs_thresholds.py [--repeat 5] [--only resnet18]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment)
import numpy as np  # noqa: E402
from netdsl.backend import tuner  # noqa: E402
from netdsl.backend.algorithms import conv_layers  # noqa: E402
from netdsl.backend.conv import Conv  # noqa: E402
from netdsl.backend.executor import DEFAULT_COL_BUDGET, Workspace  # noqa: E402
from timing import cpu_model  # noqa: E402

CASES = [("lenet5", 16), ("alexnet", 2), ("resnet18", 2), ("vgg16", 1)]


def _step_seconds(conv: Conv, algorithm: str, mode: str, x, w, b, geo, groups) -> float:
    """One forward + backward of the layer by this algorithm; `mode` for an inner choice (s2d's)."""
    os.environ[tuner.ENV] = mode
    t = time.perf_counter()
    out, saved = conv.run(algorithm, x, w, b, geo, groups)
    conv.backward(saved, out, w, conv.need_dx)
    return time.perf_counter() - t


def compare(name: str, batch: int, repeat: int, seen: set) -> list[dict]:
    net = netdsl.optimise(netdsl.load(ROOT / "nets" / f"{name}.net"), "training")
    rng = np.random.default_rng(0)
    rows = []
    for layer, geo, groups, o, first in conv_layers(net, batch):
        conv = Conv(np, Workspace(), DEFAULT_COL_BUDGET, layer, training=True, need_dx=not first)
        key = tuner.layer_key(geo, groups, o, np.dtype("float32"), tuner.directions(conv))
        if key in seen:
            continue
        seen.add(key)
        x = rng.standard_normal((geo.n, geo.c, geo.h, geo.w)).astype(np.float32)
        w = (rng.standard_normal((o, geo.c // groups, *geo.kernel)) * 0.1).astype(np.float32)
        b = np.zeros(o, np.float32)
        os.environ[tuner.ENV] = "off"
        fixed = tuner.choose(conv, x, w, b, geo, groups).algorithm
        os.environ[tuner.ENV] = "fresh"
        t0 = time.perf_counter()
        tuned = tuner.choose(conv, x, w, b, geo, groups).algorithm
        tuning = time.perf_counter() - t0
        # where both chose one algorithm there is nothing to compare: it is timed twice (the noise)
        sides = [("fixed", fixed, "off"), ("fixed again", fixed, "off")] + (
            [("tuned", tuned, "fresh")] if tuned != fixed else [])
        for _, alg, mode in sides:  # warm-up: buffers allocated, inner choices made
            _step_seconds(conv, alg, mode, x, w, b, geo, groups)
        times = {label: [] for label, _, _ in sides}
        for _ in range(repeat):  # interleaved: drift on a shared machine hits every side alike
            for label, alg, mode in sides:
                times[label].append(_step_seconds(conv, alg, mode, x, w, b, geo, groups))
        ms = {label: statistics.median(t) * 1e3 for label, t in times.items()}
        ms.setdefault("tuned", ms["fixed"])
        row = {"net": name, "batch": batch, "layer": layer, "shape": f"{geo.c}x{geo.h}x{geo.w}->{o} "
               f"{geo.kernel[0]}x{geo.kernel[1]}/{geo.stride[0]}", "fixed": fixed, "tuned": tuned,
               "fixed_ms": ms["fixed"], "tuned_ms": ms["tuned"], "ratio": ms["tuned"] / ms["fixed"],
               "noise": ms["fixed again"] / ms["fixed"], "tuning_s": tuning}
        rows.append(row)
        print(f"{name:9} {batch:3} {layer[:28]:28} {row['shape']:24} {fixed:16} {tuned:16} {row['fixed_ms']:9.2f} "
              f"{row['tuned_ms']:9.2f} {row['ratio']:6.2f} {row['noise']:6.2f} {tuning:7.2f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="timed forward + backward runs a side and layer")
    p.add_argument("--only", nargs="*", help="network names to run")
    args = p.parse_args()
    cases = [c for c in CASES if not args.only or c[0] in args.only]
    with tempfile.TemporaryDirectory() as cache_home:
        os.environ["XDG_CACHE_HOME"] = cache_home  # a fresh cache of its own: the user's is left alone
        tuner.forget()
        print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores, numpy {np.__version__}, "
              f"float32, training (forward + backward); medians of {args.repeat} interleaved runs")
        print(f"{'network':9} {'n':>3} {'layer':28} {'shape':24} {'thresholds':16} {'tuner':16} "
              f"{'fixed ms':>9} {'tuned ms':>9} {'ratio':>6} {'noise':>6} {'tune s':>7}")
        rows = [r for name, batch in cases for r in compare(name, batch, args.repeat, set())]
    differ = [r for r in rows if r["fixed"] != r["tuned"]]
    noise = sorted(max(r["noise"], 1 / r["noise"]) for r in rows)
    print(f"\n{len(rows)} distinct layers, {len(differ)} where the tuner chose otherwise (the others: ratio 1 by "
          f"construction). Noise, one algorithm timed twice: median {noise[len(noise) // 2]:.2f}x, worst {noise[-1]:.2f}x. "
          f"Total fixed {sum(r['fixed_ms'] for r in rows):.1f} ms, tuned {sum(r['tuned_ms'] for r in rows):.1f} ms")
    if differ:
        print("where they differ: tuned/fixed " + ", ".join(f"{r['net']} {r['layer']} {r['ratio']:.2f}" for r in differ))


if __name__ == "__main__":
    main()
