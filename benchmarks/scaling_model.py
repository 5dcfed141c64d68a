"""How data-parallel training would scale: a cost model, and a check of it against this machine.

    python benchmarks/scaling_model.py                       # ResNet-50 and VGG16, 8 to 1,024 GPUs
    python benchmarks/scaling_model.py --link 25 --latency 30    # 25 Gb/s Ethernet, 30 us a message
    python benchmarks/scaling_model.py --check benchmarks/results/cpu-2026-12-01-dist/run1.json

The model. Each step a GPU computes for T (forward and backward of its share), then the
gradients (G bytes, float32) are summed across the N GPUs in buckets of 25 MiB (netdsl's
layout, train/buckets.py). A ring allreduce of a bucket of b bytes takes 2(N-1) steps, each
sending b/N bytes to the next GPU:

    t(b) = 2(N-1) alpha + 2(N-1)/N * b / B           alpha: per-message latency, B: link bandwidth

The backward pass (about 2/3 of T: twice the forward's work) can hide the sums of the buckets
already complete; `overlap` is the share of it that does:

    step = T + max(0, sum_buckets t(b) - overlap * 2/3 * T)
    images/s = N * batch / step,   scaling efficiency = T / step

Known to be optimistic: latency grows with N in a ring (at 1,024 GPUs 2,046 messages a bucket;
real libraries switch to trees or hierarchies there, which this does not model); every GPU is
assumed as fast as every other (one straggler sets every step's pace); the link is assumed to
carry B in both directions at once with no other traffic; and nothing is lost to host staging
(netdsl copies each bucket through host memory, which a CUDA-aware MPI or NCCL would not).

The check fits alpha and B to this machine's measured allreduce table (loopback, 2 ranks), then
predicts the measured wait for the gradient sums in benchmarks/dist_step.py's steps.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# one GPU's training step (ms, float32, TF32 off) from the H200 table (benchmarks/results/h200-2026-11-28-s4)
GPU_STEP = {"resnet50": (64, 78.7), "vgg16": (32, 97.0)}
BUCKET = 25 * 2**20
BACKWARD_SHARE = 2 / 3


def gradient_buckets(name: str, bucket_bytes: int = BUCKET) -> list[int]:
    """The bucket sizes (bytes) netdsl's layout gives a network's float32 gradients."""
    import netdsl
    from netdsl.ir import schedule
    from netdsl.train.buckets import bucket_layout
    net = netdsl.load(ROOT / "nets" / f"{name}.net")
    sizes = []
    for node in reversed(schedule(net.graph)):
        for _pname, shape in net.graph.nodes[node]["params"]:
            n = 4
            for d in shape:
                n *= d
            sizes.append(n)
    return [sum(sizes[k] for k in members) for members in bucket_layout(sizes, bucket_bytes)]


def allreduce_seconds(nbytes: float, ranks: int, alpha: float, bandwidth: float) -> float:
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def step_seconds(compute: float, buckets: list[int], ranks: int, alpha: float, bandwidth: float,
                 overlap: float) -> float:
    comm = sum(allreduce_seconds(b, ranks, alpha, bandwidth) for b in buckets)
    return compute + max(0.0, comm - overlap * BACKWARD_SHARE * compute)


def assumptions(args) -> list[str]:
    """Every figure the prediction rests on, printed with it: change any and the efficiency moves."""
    bandwidth = args.link * 1e9 / 8 * args.efficiency
    return [
        f"link bandwidth {args.link:g} Gb/s (--link), of which an allreduce achieves {args.efficiency:.0%} "
        f"(--efficiency): B = {bandwidth / 1e9:.2f} GB/s each way, both directions at once, no other traffic",
        f"message latency alpha = {args.latency:g} us (--latency), the same at every scale",
        "ring allreduce: 2(N-1) messages a bucket, each rank sending 2(N-1)/N of its bytes (no trees, no hierarchy)",
        f"gradients float32 in buckets of {BUCKET // 2**20} MiB (train/buckets.py), summed one bucket after another",
        f"overlap {', '.join(f'{o:.0%}' for o in args.overlap)} (--overlap) of the backward pass, "
        f"taken as {BACKWARD_SHARE:.0%} of the step, hides the sums",
        "one GPU's step (forward + backward + update, float32, TF32 off) from the H200 table "
        "(benchmarks/results/h200-2026-11-28-s4), every GPU as fast (no stragglers), its batch fixed (weak scaling)",
        "no host staging of the buckets (a CUDA-aware MPI or NCCL; netdsl itself copies through host memory)",
    ]


def predict(args) -> None:
    bandwidth, alpha = args.link * 1e9 / 8 * args.efficiency, args.latency * 1e-6
    print("# cost model, assuming:")
    for line in assumptions(args):
        print(f"#   {line}")
    for name, (batch, ms) in GPU_STEP.items():
        buckets = gradient_buckets(name)
        grad = sum(buckets)
        print(f"\n{name}: batch {batch} a GPU, {ms} ms a step alone, {grad / 2**20:.0f} MiB of gradients in "
              f"{len(buckets)} buckets; link {args.link:g} Gb/s at {args.efficiency:.0%}, latency {args.latency:g} us")
        print(f"{'GPUs':>6} " + " ".join(f"{f'overlap {o:.0%}: img/s':>20} {'eff.':>6}" for o in args.overlap))
        for ranks in (8, 16, 32, 64, 128, 256, 512, 1024):
            cells = []
            for o in args.overlap:
                t = step_seconds(ms / 1e3, buckets, ranks, alpha, bandwidth, o)
                cells.append(f"{ranks * batch / t:20,.0f} {ms / 1e3 / t:6.1%}")
            print(f"{ranks:6d} " + " ".join(cells))


def fit(rows: list[dict], ranks: int) -> tuple[float, float]:
    """alpha and B of t(b) = 2(N-1) alpha + 2(N-1)/N b / B, least squares on the measured table."""
    import numpy as np
    a = np.array([[2 * (ranks - 1), 2 * (ranks - 1) / ranks * r["bytes"]] for r in rows])
    t = np.array([r["seconds"] for r in rows])
    w = 1 / t  # relative error: the small messages count as much as the large
    (alpha, inv_b), *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
    return max(alpha, 0.0), 1 / inv_b


def check(args) -> None:
    run = json.loads(Path(args.check).read_text())
    print(f"# {args.check}: {run.get('cpu', '?')}")
    fits = {}
    for table in run["bandwidth"]:
        alpha, bandwidth = fit(table["rows"], table["ranks"])
        fits[table["ranks"]] = (alpha, bandwidth)
        print(f"{table['ranks']} ranks: fitted alpha {alpha * 1e6:.1f} us, B {bandwidth / 1e9:.2f} GB/s")
    tables = {t["ranks"]: t["rows"] for t in run["bandwidth"]}
    print("\npredicted: by the fitted model, and by the measured allreduce time at each bucket's size (interpolated)")
    print(f"{'network':10} {'ranks':>5} {'grad MiB':>8} {'measured wait ms':>17} {'model ms':>9} {'ratio':>6} "
          f"{'table ms':>9} {'ratio':>6}")
    for step in run["steps"]:
        if step["ranks"] == 1 or step["overlap"] or step["ranks"] not in fits:
            continue
        alpha, bandwidth = fits[step["ranks"]]
        buckets = gradient_buckets(step["net"])
        model = sum(allreduce_seconds(b, step["ranks"], alpha, bandwidth) for b in buckets)
        table = sum(interpolate(tables[step["ranks"]], b) for b in buckets)
        wait = step["wait_s"]
        print(f"{step['net']:10} {step['ranks']:5d} {step['grad_bytes'] / 2**20:8.1f} {wait * 1e3:17.1f} "
              f"{model * 1e3:9.1f} {wait / model:6.2f} {table * 1e3:9.1f} {wait / table:6.2f}")


def interpolate(rows: list[dict], nbytes: float) -> float:
    """The measured allreduce time at this size, interpolated on log-log axes."""
    import numpy as np
    sizes = np.log([r["bytes"] for r in rows])
    times = np.log([r["seconds"] for r in rows])
    return float(np.exp(np.interp(np.log(nbytes), sizes, times, right=None)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--link", type=float, default=200, help="link bandwidth, Gb/s (default 200: InfiniBand HDR)")
    p.add_argument("--efficiency", type=float, default=0.8, help="share of the link an allreduce achieves")
    p.add_argument("--latency", type=float, default=5, help="microseconds a message (default 5: InfiniBand)")
    p.add_argument("--overlap", type=float, nargs="+", default=[0.0, 0.8],
                   help="shares of the backward pass that hide the sums")
    p.add_argument("--check", metavar="RUN.json", help="check the model against benchmarks/dist_step.py's figures")
    args = p.parse_args()
    check(args) if args.check else predict(args)


if __name__ == "__main__":
    main()
