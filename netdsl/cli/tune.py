"""`netdsl tune FILE [--batch N]`: measure which convolution algorithm each layer runs on this
machine, ahead of time, and keep the winners in the cache that `run` and `train` read
(backend/tuner.py): a training step and an inference pass at that batch, every algorithm timed
(those of every --precision, so that a later run at any precision finds its layers measured)."""
from __future__ import annotations

import sys
import time

from .args import common, compile_file, positive_int, warn

PRECISIONS = ("fast", "default", "exact")


def say_notes() -> None:
    """The tuner's notes (a damaged or foreign cache) as `note:` lines on stderr."""
    from ..backend import tuner
    tuner.on_note(lambda text: print(f"note: {text}", file=sys.stderr))


def algorithm_lines(choices, heading: str) -> list[str]:
    """One line per conv layer: its algorithm and where the choice came from."""
    if not choices:
        return []
    width = max(len(c.layer) for c in choices)
    return [heading] + [f"  {c.layer:{width}s}  {c.algorithm:22s} {c.source}" for c in choices]


def cmd_tune(args) -> int:
    import numpy as np

    from ..backend import tuner
    from ..backend.algorithms import plan
    from ..backend.executor import Model
    from ..compiler import optimise
    from ..errors import NetError
    from ..train.timing import default_batch
    say_notes()
    if tuner.mode() == "off":
        raise NetError(f"{tuner.ENV}=off: the tuner is switched off, so there is nothing to measure",
                       hint=f"unset {tuner.ENV} (or set it to cache or fresh)")
    net = compile_file(args)
    warn(net, args)
    batch = args.batch or default_batch(net)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.layer(net.outputs[0][1]).shape[0], batch)
    model = Model(optimise(net, "training"), device="cpu", precision="fast")  # every algorithm measured
    model.loss(x, labels)
    model.backward()
    Model(optimise(net, "inference"), device="cpu", precision="fast").forward(x)
    print(f"{net.name}, batch {batch}: measured in {time.perf_counter() - started:.1f} s on {tuner.cpu_model()}, "
          f"{tuner.machine()['cores']} cores; cache {tuner.cache_path()}")
    for training, what in ((True, "training"), (False, "inference")):
        print("\n".join(algorithm_lines(plan(optimise(net, what), batch, training, args.precision),
                                        f"{what} (--precision {args.precision}):")))
    return 0


def register(sub) -> None:
    p = sub.add_parser("tune", help="measure each conv layer's fastest algorithm on this machine, for the cache",
                       description=__doc__.split("\n\n")[0].replace("`", ""))
    common(p)
    p.add_argument("--batch", type=positive_int, default=None,
                   help="images per batch, as the runs will use (default: what netdsl run takes)")
    p.add_argument("--precision", choices=PRECISIONS, default="default",
                   help="whose choices to list (all are measured)")
    p.set_defaults(func=cmd_tune)
