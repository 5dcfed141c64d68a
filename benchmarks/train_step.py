"""netdsl against PyTorch: one training step (forward + backward + SGD update), same network,
same batch, float32, side by side in one run. Medians of several timed steps after warm-up.
Each framework runs in its own process, so that its peak memory can be read cleanly: the
resident high-water mark minus the resident size before the model was built.

    python benchmarks/train_step.py --device cpu              # the CPU table (issue 5's targets)
    python benchmarks/train_step.py --device gpu [--tf32]     # the GPU table (scripts/gpu-check)

PyTorch is a benchmark-only dependency: pip install torch (the CPU build, for the CPU table).
Without it, `--frameworks netdsl` times netdsl alone; torch is imported only when asked for.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from netdsl.backend.cpu import heap  # noqa: E402

# glibc's malloc told, through its environment, what netdsl tells it through mallopt (backend/cpu/heap.py)
HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(heap.TRIM_THRESHOLD),
            "MALLOC_TOP_PAD_": str(heap.TOP_PAD)}
CPU_CASES = [("lenet5", 64), ("alexnet", 8), ("resnet18", 8), ("vgg16", 2)]
GPU_CASES = [("resnet50", 64), ("alexnet", 128), ("googlenet", 64), ("vgg16", 32)]  # the target case first


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def import_torch():
    """torch, or a clear exit naming the missing package (it is no dependency of netdsl's)."""
    try:
        import torch
    except ImportError as e:
        sys.exit(f"train_step.py: --frameworks torch needs PyTorch, which is not importable here ({e}); "
                 "pip install torch (the CPU build), or time netdsl alone with --frameworks netdsl")
    return torch


def single(framework: str, name: str, batch: int, device: str, repeat: int, tf32: bool) -> dict:
    """One framework, one network, in this process."""
    import numpy as np

    import netdsl
    if framework == "torch":
        torch = import_torch()  # imported before the baseline: its libraries are not the step's memory
        from torch_model import TorchNet
    base = _status("VmRSS")
    net = netdsl.optimise(netdsl.load(ROOT / "nets" / f"{name}.net"), "training")  # as netdsl run does
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    classes = net.layer(net.outputs[0][1]).shape[0]
    y = rng.integers(0, classes, batch)
    if framework == "netdsl":
        model = netdsl.Model(net, device=device, seed=0)
        opt = netdsl.SGD(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)
        xd, yd = model.xp.asarray(x), model.xp.asarray(y)

        def step():
            model.loss(xd, yd, training=True)
            model.backward()
            opt.step()
        sync = model.device.synchronize
        peak_gpu = (lambda: model.xp.get_default_memory_pool().total_bytes()) if device == "gpu" else None
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        tdev = "cuda" if device == "gpu" else "cpu"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        tnet = TorchNet(net).to(tdev)
        topt = torch.optim.SGD(tnet.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        tx, ty = torch.from_numpy(x).to(tdev), torch.from_numpy(y).to(tdev)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            topt.zero_grad(set_to_none=True)
            outs = tnet(tx)
            loss = loss_fn(outs[0], ty) + sum(0.3 * loss_fn(o, ty) for o in outs[1:])
            loss.backward()
            topt.step()
        sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        peak_gpu = torch.cuda.max_memory_allocated if tdev == "cuda" else None
    from timing import median_ms
    # short steps get more repeats (up to ~2 s of them): five LeNet steps of 6 ms gave medians
    # from 6.3 to 12 ms from run to run
    probe = median_ms(step, 1, warmup=2, sync=sync) / 1000
    repeat = max(repeat, min(200, int(2.0 / max(probe, 1e-6))))
    seconds = median_ms(step, repeat, warmup=0, sync=sync) / 1000
    peak = peak_gpu() if peak_gpu else (_status("VmHWM") or 0) - (base or 0)
    return {"ms": seconds * 1000, "peak_mib": peak / 2**20, "flops": 3 * 2 * net.totals().macs * batch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix multiplies on both sides (GPU)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", nargs="*", help="network names to run")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--frameworks", nargs="+", choices=("netdsl", "torch"), default=["netdsl", "torch"])
    p.add_argument("--timeout", type=float, default=900, help="seconds each framework gets per network")
    p.add_argument("--torch-heap", choices=("default", "same", "both"), default="both",
                   help="PyTorch with glibc's default malloc, with the heap settings netdsl makes for "
                        "itself (backend/cpu/heap.py), or both (CPU)")
    p.add_argument("--single", nargs=3, metavar=("FRAMEWORK", "NET", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    if args.single:
        fw, name, batch = args.single
        print(json.dumps(single(fw, name, int(batch), args.device, args.repeat, args.tf32)))
        return
    import numpy as np
    torch_version = import_torch().__version__ if "torch" in args.frameworks else "not run"
    cases = CPU_CASES if args.device == "cpu" else GPU_CASES
    if args.only:
        cases = [c for c in cases if c[0] in args.only]
    from timing import cpu_model
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, device {args.device}, torch {torch_version}, numpy {np.__version__}, "
          f"{os.cpu_count()} cores, tf32 {'on' if args.tf32 else 'off'}; medians of at least {args.repeat} steps (up to 200 for short ones)")
    runs = [(fw, fw, {}) for fw in args.frameworks if fw != "torch"]  # (key, framework, environment)
    if "torch" in args.frameworks:
        if args.device == "gpu" or args.torch_heap in ("default", "both"):
            runs.append(("torch", "torch", {}))
        if args.device == "cpu" and args.torch_heap in ("same", "both"):
            runs.append(("torch_heap", "torch", HEAP_ENV))
    same_heap = any(key == "torch_heap" for key, _, _ in runs)
    if same_heap:
        print("# torch*: PyTorch with the heap settings netdsl makes for itself (" +
              " ".join(f"{k}={v}" for k, v in HEAP_ENV.items()) + ")")
    print(f"{'network':10} {'batch':>5} {'netdsl ms':>10} {'torch ms':>10} {'ratio':>6} {'netdsl GF/s':>11} "
          f"{'torch GF/s':>10} {'netdsl MiB':>10} {'torch MiB':>9} {'MiB ratio':>9}" + (f" {'torch* ms':>9} {'ratio*':>6}" if same_heap else ""))
    rows = []
    for name, batch in cases:
        r = {"network": name, "batch": batch}
        for fw_key, fw, env in runs:
            cmd = [sys.executable, __file__, "--device", args.device, "--repeat", str(args.repeat),
                   "--single", fw, name, str(batch)] + (["--tf32"] if args.tf32 else [])
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                     env={**os.environ, **env})
                failure = f"exit {out.returncode}: {out.stderr.strip()[-2000:]}" if out.returncode else None
            except subprocess.TimeoutExpired:
                failure = f"over --timeout {args.timeout} s"
            if failure:  # one broken case must not hide the others' figures
                print(f"{name:10} {batch:5} {fw_key} FAILED, {failure}", flush=True)
                r[f"{fw_key}_error"] = failure
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            r[f"{fw_key}_ms"], r[f"{fw_key}_peak_mib"] = res["ms"], res["peak_mib"]
            r[f"{fw_key}_gflops"] = res["flops"] / res["ms"] / 1e6
        rows.append(r)
        if args.json:  # after every row: a run stopped at a time limit keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1))
        if any(k.endswith("_error") for k in r):
            continue
        if "netdsl_ms" not in r or "torch_ms" not in r:
            for key, _, _ in runs:
                print(f"{name:10} {batch:5} {key} {r[key + '_ms']:.1f} ms, {r[key + '_gflops']:.1f} GFLOP/s, "
                      f"{r[key + '_peak_mib']:.0f} MiB", flush=True)
            continue
        r["ratio"] = r["netdsl_ms"] / r["torch_ms"]
        r["peak_ratio"] = r["netdsl_peak_mib"] / max(r["torch_peak_mib"], 1e-9)  # netdsl's peak against PyTorch's
        same = ""
        if "torch_heap_ms" in r:
            r["ratio_same_heap"] = r["netdsl_ms"] / r["torch_heap_ms"]
            same = f" {r['torch_heap_ms']:9.1f} {r['ratio_same_heap']:6.2f}"
        print(f"{name:10} {batch:5} {r['netdsl_ms']:10.1f} {r['torch_ms']:10.1f} {r['ratio']:6.2f} "
              f"{r['netdsl_gflops']:11.1f} {r['torch_gflops']:10.1f} {r['netdsl_peak_mib']:10.0f} "
              f"{r['torch_peak_mib']:9.0f} {r['peak_ratio']:9.2f}{same}", flush=True)


if __name__ == "__main__":
    main()
