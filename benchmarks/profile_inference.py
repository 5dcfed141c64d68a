"""Where inference time goes, layer by layer: netdsl's inference path (model.predict's prepared
steps, each timed) beside onnxruntime's per-node profile of netdsl's own export of the same net.

    python benchmarks/profile_inference.py nets/alexnet.net --batch 8 [--repeat 5] [--threads 2]

Two tables, each in execution order: netdsl's steps (the fastest of --repeat runs, ms, the algorithm each conv ran), then
onnxruntime's nodes (the fastest, ms, from SessionOptions.enable_profiling; ort fuses conv+activation
into one node named after the activation, and may add layout reorders of its own). Timing each step adds a little
(two clock reads), so the steps' sum is a little above an unprofiled call's.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402  (before numpy: it sets OpenBLAS's environment)
import numpy as np  # noqa: E402
from timing import cpu_model  # noqa: E402

from netdsl.backend.cpu.blas_threads import single_threaded  # noqa: E402


def netdsl_layers(model, x, repeat: int) -> tuple[dict[str, list[float]], dict[str, str], list[str]]:
    model.predict(x)
    engine = model._inference
    plan = engine.plan(x.shape[0])
    times = collections.defaultdict(list)
    for _ in range(repeat + 1):
        np.copyto(plan.values[0], x)
        with single_threaded():  # as Inference.__call__ runs them
            for name, step in zip(plan.names, plan.steps):
                t = time.perf_counter()
                step()
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: v[1:] for k, v in times.items()}, plan.algorithms, plan.names


def ort_layers(net, state, x, threads: int, repeat: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(netdsl.export_onnx(net, None, state).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})
        for _ in range(repeat):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = collections.defaultdict(list)
    kinds = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][:-len("_kernel_time")]
            runs[name].append(e["dur"] / 1000)
            kinds[name] = e["args"].get("op_name", "?")
    return {k: v[-repeat:] for k, v in runs.items()}, kinds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    net = netdsl.load(args.file)
    model = netdsl.Model(net, device="cpu", seed=0)
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((args.batch, *net.input_shape)).astype(np.float32)
    ours, algorithms, order = netdsl_layers(model, x, args.repeat)
    theirs, kinds = ort_layers(net, state, x, args.threads, args.repeat)
    print(f"# {cpu_model()}, {os.cpu_count()} cores; {net.name} batch {args.batch}; fastest of {args.repeat} runs (a shared machine: the fastest is the least disturbed)")
    print(f"{'netdsl step':24} {'ms':>8}  algorithm")
    for name in order:
        print(f"{name:24} {min(ours[name]):8.3f}  {algorithms.get(name, '')}")
    print(f"{'total':24} {sum(min(v) for v in ours.values()):8.3f}")
    print(f"\n{'ort node':28} {'ms':>8}  op")
    for name in theirs:
        print(f"{name[:28]:28} {min(theirs[name]):8.3f}  {kinds[name]}")
    print(f"{'total':28} {sum(min(v) for v in theirs.values()):8.3f}")

if __name__ == "__main__":
    main()
