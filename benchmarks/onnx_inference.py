"""ONNX export's cost, and netdsl's inference against onnxruntime on the same exported model.

    python benchmarks/onnx_inference.py [--repeat 5] [--threads 2] [--only vgg16] [--no-export] [--no-graph]

1. Export time of resnet152.net with weights from a checkpoint (read the checkpoint, build the
   model, write the file): the median of --repeat runs.
2. Inference, batch 1 and 8, for LeNet-5, AlexNet, ResNet-18 and VGG16: netdsl's optimised
   inference graph (bn folded, dropout gone) against onnxruntime's CPU provider running netdsl's
   own export of the same network and weights (graph optimisations on, --threads intra-op
   threads), and PyTorch eager in inference mode where torch is installed (not a dependency).
   Two netdsl columns side by side: "graph" runs the optimised graph through the training
   executor's forward (Model(optimise(net)).__call__), "infer" the inference path
   (model.predict: backend/inference.py, one prepared call list per batch size). Medians of
   rounds that call each engine once in turn (interleaved: a shared machine's load falls on all
   alike); the ratios netdsl/onnxruntime say how far netdsl's inference is from the fastest CPU
   engine. The CPU model is printed: figures from one machine are a measurement of it.
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
from timing import cpu_model, median_ms  # noqa: E402

from netdsl import checkpoint  # noqa: E402

CASES = ("lenet5", "alexnet", "resnet18", "vgg16")


def export_time(repeat: int) -> float:
    net = netdsl.load(ROOT / "nets" / "resnet152.net")
    model = netdsl.Model(net, device="cpu", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ck, out = Path(tmp) / "r152.safetensors", Path(tmp) / "r152.onnx"
        model.save(ck)

        def once():
            tensors, _ = checkpoint.read(ck)
            netdsl.export_onnx(net, out, {k: v for k, v in tensors.items() if not k.startswith("optim")})
        return median_ms(once, repeat=repeat)


def interleaved_medians(engines: dict, repeat: int) -> dict[str, float]:
    """Each engine's median ms over `repeat` rounds, every round one call of each in turn (after
    one warm-up call each): on a machine shared with other work, a load that comes and goes
    falls on all of them alike, where timing one engine's runs after the other's would not."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():
        fn()
    for _ in range(repeat):
        for name, fn in engines.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _digits(ms: float) -> int:
    """Decimals that show a sub-millisecond time (LeNet-5's) as more than 0.1."""
    return 3 if ms < 1 else 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", nargs="*", default=list(CASES))
    p.add_argument("--no-export", action="store_true", help="skip the export timing")
    p.add_argument("--no-graph", action="store_true", help="skip the graph column (VGG16 b8 takes seconds a call)")
    # The engines' calls alternate round by round (so that the machine's load falls on both alike);
    # onnxruntime's idle workers spin for a while after each run and would take a core from the
    # netdsl call timed next, which a program running one engine never sees. So by default they
    # sleep between runs; onnxruntime's own times are the same either way (17-19 ms for ResNet-18
    # at batch 1 on the 2-core EPYC, results/cpu-2026-12-06-infer2).
    p.add_argument("--ort-spin", action="store_true",
                   help="leave onnxruntime's idle workers spinning after each run (its default), where they take "
                        "a core from the netdsl call timed next")
    args = p.parse_args()
    import onnxruntime as ort
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}; medians of {args.repeat}"
          + ("; onnxruntime's idle workers spin (--ort-spin)" if args.ort_spin
             else "; onnxruntime's idle workers sleep between runs (session.intra_op.allow_spinning=0)"))
    if not args.no_export:
        print(f"export of resnet152.net with weights from a checkpoint: {export_time(args.repeat):.0f} ms")
    try:
        import torch
        torch.set_num_threads(args.threads)
        from torch_model import TorchNet
    except ImportError:
        torch = None
    print(f"{'network':9} {'batch':>5} {'graph ms':>9} {'infer ms':>9} {'ort ms':>8} {'graph/ort':>9} {'infer/ort':>9}"
          + (f" {'torch ms':>9}" if torch else ""))
    for name in args.only:
        net = netdsl.load(ROOT / "nets" / f"{name}.net")
        model = netdsl.Model(net, device="cpu", seed=0)
        state = {k: np.asarray(v) for k, v in model.state_dict().items()}
        fast = netdsl.Model(netdsl.optimise(net, "inference"), device="cpu", params_from=model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        if not args.ort_spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(netdsl.export_onnx(net, None, state).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        for batch in (1, 8):
            x = np.random.default_rng(0).standard_normal((batch, *net.input_shape)).astype(np.float32)
            model.predict(x)  # prepares this batch size's plan (once), not timed
            engines = {"infer": lambda: model.predict(x), "ort": lambda: session.run(None, {"input": x})}
            if not args.no_graph:
                engines["graph"] = lambda: fast(x)
            ms = interleaved_medians(engines, args.repeat)
            graph, infer, theirs = ms.get("graph", float("nan")), ms["infer"], ms["ort"]
            line = (f"{name:9} {batch:5} {graph:9.{_digits(graph)}f} {infer:9.{_digits(infer)}f} "
                    f"{theirs:8.{_digits(theirs)}f} {graph / theirs:9.2f} {infer / theirs:9.2f}")
            if torch is not None:
                tm = TorchNet(net).eval()
                tm.load_from(model)
                with torch.inference_mode():
                    xt = torch.from_numpy(x)
                    line += f" {median_ms(lambda: tm(xt), repeat=args.repeat):9.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
