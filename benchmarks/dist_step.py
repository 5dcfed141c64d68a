"""Data-parallel training over MPI on this machine: what the gradient sums cost.

    python benchmarks/dist_step.py                        # both tables, 1, 2 and 3 ranks
    python benchmarks/dist_step.py --json out.json --ranks 1 2

1. allreduce on loopback by message size, 2 and 3 ranks: median time, the algorithm bandwidth
   (bytes / time) and the bus bandwidth (x 2(N-1)/N, the bytes each rank moves in a ring, NCCL's
   convention: comparable across rank counts).
2. one training step of LeNet-5, AlexNet and ResNet-18 at a fixed global batch on 1, 2 and 3
   ranks, gradients summed after the backward pass and overlapped with it: the step's median
   time, the time spent waiting for the gradient sums (all of it after the backward pass; with
   overlap, what the backward pass did not hide) and its share of the step.

On one machine the ranks share its cores: with N ranks on C cores each computes on C/N of them,
so the step times say how the sums cost, not how N machines would scale (benchmarks/scaling_model.py
does that from these figures). Each configuration runs in its own mpiexec; medians of the timed
steps after one warm-up, rank 0's figures (the ranks wait for each other at every sum).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import cpu_model  # noqa: E402

CASES = [("lenet5", 96), ("alexnet", 12), ("resnet18", 12)]  # global batches 1, 2 and 3 ranks divide
SIZES = [2 ** k for k in range(10, 29, 2)]  # 1 KiB .. 256 MiB


def worker_bandwidth(args) -> None:
    import numpy as np
    from netdsl.train.comm import connect
    comm = connect("mpi")
    rows = []
    for size in SIZES:
        buf = np.ones(size // 4, dtype=np.float32)
        repeat = max(3, min(50, (64 << 20) // size))
        times = []
        for _ in range(repeat + 1):
            comm.barrier("bench")
            t0 = time.perf_counter()
            comm.allreduce(buf, "bench")
            times.append(time.perf_counter() - t0)
        t = float(np.median(times[1:]))
        rows.append({"bytes": size, "seconds": t, "algbw": size / t, "busbw": size / t * 2 * (comm.size - 1) / comm.size})
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "rows": rows}))


def worker_step(args) -> None:
    import netdsl  # before numpy: OpenBLAS's threads
    import numpy as np
    from netdsl.backend.executor import Model
    from netdsl.train import replicas
    from netdsl.train.buckets import GradientBuckets
    from netdsl.train.comm import connect
    from netdsl.train.optim import SGD
    comm = connect("auto")
    net = netdsl.load(ROOT / "nets" / f"{args.net}.net")
    model = Model(net, device="cpu", seed=0)
    local = args.batch // comm.size
    rng = np.random.default_rng(comm.rank)
    x = rng.standard_normal((local, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.layer(net.outputs[0][1]).shape[0], local)
    opt = SGD(model, lr=1e-4)
    buckets = None
    if comm.size > 1:
        replicas.broadcast_state(model, opt, comm)
        buckets = GradientBuckets(model, comm, args.bucket, args.overlap)
    rows = []
    for _ in range(args.repeat + 1):
        comm.barrier("bench")
        t0 = time.perf_counter()
        model.loss(x, y, training=True)
        if buckets is not None:
            buckets.begin(1 / comm.size)
        model.backward(on_ready=buckets.ready if buckets else None)
        t1 = time.perf_counter()
        grads = buckets.finish() if buckets else None
        t2 = time.perf_counter()
        opt.step(grads)
        t3 = time.perf_counter()
        rows.append((t3 - t0, t2 - t1, t1 - t0))
    step, wait, fwd_bwd = (float(np.median([r[k] for r in rows[1:]])) for k in range(3))
    grad_bytes = sum(int(v.nbytes) for v in model.parameters().values())
    if comm.rank == 0:
        print(json.dumps({"net": args.net, "batch": args.batch, "ranks": comm.size, "overlap": args.overlap,
                          "step_s": step, "wait_s": wait, "forward_backward_s": fwd_bwd, "grad_bytes": grad_bytes,
                          "buckets": len(buckets.buckets) if buckets else 0}))


def launch(ranks: int, *worker_args: str, timeout: int = 600) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = ([str(mpiexec), "-n", str(ranks)] if ranks > 1 else []) + [sys.executable, __file__, *worker_args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=("bandwidth", "step"))
    p.add_argument("--net")
    p.add_argument("--batch", type=int)
    p.add_argument("--overlap", action="store_true")
    p.add_argument("--bucket", type=int, default=25 << 20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--nets", nargs="+", default=[n for n, _ in CASES])
    p.add_argument("--json")
    args = p.parse_args()
    if args.worker == "bandwidth":
        return worker_bandwidth(args)
    if args.worker == "step":
        return worker_step(args)

    import numpy
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, {__import__('os').cpu_count()} cores, numpy {numpy.__version__}, "
          f"MPI over loopback (one machine)")
    out = {"cpu": cpu_model(), "bandwidth": [], "steps": []}
    print("\nallreduce (float32, in place), median time; algbw = bytes/time, busbw = algbw x 2(N-1)/N")
    print(f"{'bytes':>10} " + " ".join(f"{f'{n} ranks: us':>14} {'algbw GB/s':>10} {'busbw GB/s':>10}"
                                        for n in args.ranks if n > 1))
    tables = [launch(n, "--worker", "bandwidth") for n in args.ranks if n > 1]
    out["bandwidth"] = tables
    for i, size in enumerate(SIZES):
        cells = [f"{t['rows'][i]['seconds'] * 1e6:14.1f} {t['rows'][i]['algbw'] / 1e9:10.2f} "
                 f"{t['rows'][i]['busbw'] / 1e9:10.2f}" for t in tables]
        print(f"{size:>10} " + " ".join(cells))
    print("\none training step at a fixed global batch, gradients summed in 25 MiB buckets; wait = time waiting for "
          "the sums after the backward pass")
    print(f"{'network':10} {'batch':>5} {'ranks':>5} {'overlap':>7} {'step ms':>9} {'wait ms':>9} {'share':>6} "
          f"{'img/s':>8} {'grad MiB':>8} {'buckets':>7}")
    for net in args.nets:
        batch = dict(CASES)[net]
        for n in args.ranks:
            for overlap in ((False, True) if n > 1 else (False,)):
                r = launch(n, "--worker", "step", "--net", net, "--batch", str(batch), "--repeat", str(args.repeat),
                           *(["--overlap"] if overlap else []))
                out["steps"].append(r)
                print(f"{net:10} {batch:5d} {n:5d} {'yes' if overlap else 'no':>7} {r['step_s'] * 1e3:9.1f} "
                      f"{r['wait_s'] * 1e3:9.1f} {r['wait_s'] / r['step_s']:6.1%} {batch / r['step_s']:8.1f} "
                      f"{r['grad_bytes'] / 2**20:8.1f} {r['buckets']:7d}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
