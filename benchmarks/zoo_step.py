"""The zoo's light nets against PyTorch on the CPU (issue 26): one MobileNet v2 and one DenseNet-121
training step (forward + backward + SGD update), side by side, and the share of netdsl's step that
its depthwise convolutions take.

    python benchmarks/zoo_step.py                       # batch 4 at 224x224, medians of 3 steps
    python benchmarks/zoo_step.py --batch 2 --repeat 5

The step itself is train_step.py's (`single`), each framework in its own process; the share comes
from timing every kernel of a separate netdsl step, as profile_ops.py does, with the convs split
into depthwise (groups = channels: dense.py's `depthwise_native` variant, or `depthwise` without C) and
the others.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

NETS = ("mobilenet_v2", "densenet121")  # nets/zoo/<name>.net


def op_shares(name: str, batch: int, repeat: int) -> dict:
    """Seconds per step by op kind, forward and backward together; convs split by variant."""
    import netdsl  # before numpy: it sets OpenBLAS's environment
    import numpy as np
    from netdsl.backend.kernels.dense import is_depthwise

    net = netdsl.optimise(netdsl.load(ROOT / "nets" / "zoo" / f"{name}.net"), "training")
    model = netdsl.Model(net, device="cpu", seed=0)
    times: dict[str, float] = collections.defaultdict(float)
    for node in model.nodes:
        kind = "conv depthwise" if node.op == "conv" and is_depthwise(node) else node.op
        k = node.kernel

        def fwd(n, ins, _f=k.forward, _kind=kind):
            t = time.perf_counter()
            out = _f(n, ins)
            times[_kind] += time.perf_counter() - t
            return out

        def bwd(n, d, need, _f=k.backward, _kind=kind):
            t = time.perf_counter()
            out = _f(n, d, need)
            times[_kind] += time.perf_counter() - t
            return out
        node.kernel = dataclasses.replace(k, forward=fwd, backward=bwd)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    opt = netdsl.SGD(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step():
        model.loss(x, y, training=True)
        model.backward()
        opt.step()
    step()  # warm-up (and the tuner's measurements, if any)
    times.clear()
    t0 = time.perf_counter()
    for _ in range(repeat):
        step()
    total = (time.perf_counter() - t0) / repeat
    return {"total_s": total, "ops_s": {k: v / repeat for k, v in times.items()}}


def _child(args: list[str], timeout: float) -> dict | str:
    cmd = [sys.executable, __file__, *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"over {timeout} s"
    if out.returncode:
        return f"exit {out.returncode}: {out.stderr.strip()[-1500:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3, help="timed steps (their median), after warm-up")
    p.add_argument("--only", nargs="*", choices=NETS)
    p.add_argument("--timeout", type=float, default=600, help="seconds each child process gets")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--single", nargs=3, metavar=("FRAMEWORK", "NET", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--profile", nargs=2, metavar=("NET", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        from train_step import single
        fw, name, batch = args.single
        print(json.dumps(single(fw, f"zoo/{name}", int(batch), "cpu", args.repeat, False)))
        return
    if args.profile:
        print(json.dumps(op_shares(args.profile[0], int(args.profile[1]), args.repeat)))
        return
    import numpy as np
    import torch
    from timing import cpu_model
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; batch {args.batch} at the nets' 224x224; "
          f"medians of {args.repeat} steps after warm-up")
    rows = []
    for name in args.only or NETS:
        r: dict = {"network": name, "batch": args.batch}
        for fw in ("netdsl", "torch"):
            res = _child(["--repeat", str(args.repeat), "--single", fw, name, str(args.batch)], args.timeout)
            if isinstance(res, str):
                print(f"{name} {fw} FAILED, {res}", flush=True)
                r[f"{fw}_error"] = res
            else:
                r[f"{fw}_ms"], r[f"{fw}_peak_mib"] = res["ms"], res["peak_mib"]
        prof = _child(["--repeat", str(args.repeat), "--profile", name, str(args.batch)], args.timeout)
        if isinstance(prof, str):
            print(f"{name} profile FAILED, {prof}", flush=True)
        else:
            r["profile"] = prof
        rows.append(r)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        if "netdsl_ms" in r and "torch_ms" in r:
            r["ratio"] = r["netdsl_ms"] / r["torch_ms"]
            print(f"{name:13} batch {args.batch}: netdsl {r['netdsl_ms']:8.1f} ms  torch {r['torch_ms']:8.1f} ms  "
                  f"ratio {r['ratio']:5.2f}  (peak MiB netdsl {r['netdsl_peak_mib']:.0f}, torch {r['torch_peak_mib']:.0f})",
                  flush=True)
        if "profile" in r:
            total, ops = prof["total_s"], prof["ops_s"]
            dw = ops.get("conv depthwise", 0.0)
            print(f"  netdsl profiled step {total * 1000:.1f} ms; depthwise convs {dw * 1000:.1f} ms "
                  f"= {100 * dw / total:.1f}% of the step (forward + backward)")
            for kind, t in sorted(ops.items(), key=lambda kv: -kv[1])[:8]:
                print(f"    {kind:15} {t * 1000:8.1f} ms  {100 * t / total:5.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
