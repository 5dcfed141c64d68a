"""What the tuner's measuring costs once: a network's first training step with an empty
algorithm cache against the same step with NETDSL_TUNE=off (the fixed thresholds), each in a
fresh process, alternately, so that load on a shared machine falls on both alike.

    python benchmarks/first_run.py                      # AlexNet, batch 16, 3 pairs
    python benchmarks/first_run.py nets/resnet18.net --batch 8 --pairs 5

Each process builds the model, runs two training steps (forward, backward) and prints both
steps' times and the seconds spent in tuner.measure; the second step shows the later steps are
not slower for the tuner's choice. Medians over the pairs; the CPU model is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = r"""
import json, sys, time
import netdsl
import numpy as np
from netdsl.backend import tuner
spent = [0.0]
measure = tuner.measure
def timed(*args):
    t = time.perf_counter()
    try:
        return measure(*args)
    finally:
        spent[0] += time.perf_counter() - t
tuner.measure = timed
net = netdsl.optimise(netdsl.load(sys.argv[1]), "training")
model = netdsl.Model(net, device="cpu", seed=0)
n = int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((n, *net.input_shape)).astype(np.float32)
steps = []
for _ in range(2):
    t = time.perf_counter()
    model.loss(x, [0] * n)
    model.backward()
    steps.append(time.perf_counter() - t)
print(json.dumps({"steps": steps, "measuring": spent[0]}))
"""


def child(net: str, batch: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, net, str(batch)], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from timing import cpu_model
    p = argparse.ArgumentParser()
    p.add_argument("net", nargs="?", default=str(ROOT / "nets" / "alexnet.net"))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pairs", type=int, default=3)
    args = p.parse_args()
    print(f"# {cpu_model()}, {os.cpu_count()} cores; {Path(args.net).name} batch {args.batch}; "
          f"{args.pairs} pairs of fresh processes")
    rows = {"off": [], "empty cache": []}
    for _ in range(args.pairs):
        with tempfile.TemporaryDirectory() as home:
            for mode in rows:
                env = {**os.environ, "XDG_CACHE_HOME": home,
                       "NETDSL_CACHE": os.environ.get("NETDSL_CACHE", str(Path.home() / ".cache" / "netdsl")),
                       "NETDSL_TUNE": "off" if mode == "off" else "cache"}
                r = child(args.net, args.batch, env)
                rows[mode].append(r)
                print(f"{mode:12s} first step {r['steps'][0]:7.2f} s  second {r['steps'][1]:6.2f} s  "
                      f"measuring {r['measuring']:5.2f} s", flush=True)
    med = {m: [statistics.median(r["steps"][i] for r in rs) for i in (0, 1)] for m, rs in rows.items()}
    print(f"median first step: off {med['off'][0]:.2f} s, empty cache {med['empty cache'][0]:.2f} s "
          f"(+{med['empty cache'][0] - med['off'][0]:.2f} s once); second step: off {med['off'][1]:.2f} s, "
          f"tuned {med['empty cache'][1]:.2f} s")


if __name__ == "__main__":
    main()
