"""One rank of a data-parallel test run (tests/test_distributed.py starts it under mpiexec, and
once without, as the one-process reference).

    python tests/dist_worker.py train --net lenet5 --out w.npz [options]   # the Python API
    python tests/dist_worker.py cli --fail-rank 1 --fail-step 3 -- train nets/lenet5.net ...
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402  (before numpy: netdsl sets OpenBLAS's threads up on import)
import numpy as np  # noqa: E402

BN_NET = """network bnnet
input 1x8x8
conv 6 3x3 pad 1 nobias
bn
relu
pool max 2x2
conv 8 3x3 pad 1 nobias
bn
relu
fc 10
softmax
"""


def api(argv):
    from netdsl.backend.executor import Model
    from netdsl.train import data as datasets
    from netdsl.train.comm import connect
    from netdsl.train.loop import Progress, TrainConfig, train
    import io
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="lenet5")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--bucket", type=int, default=25 << 20)
    p.add_argument("--overlap", action="store_true")
    p.add_argument("--check-replicas", action="store_true")
    p.add_argument("--n-train", type=int, default=None, help="the first N training images only")
    p.add_argument("--save")
    p.add_argument("--resume")
    p.add_argument("--keep-epoch", type=int, default=None,
                   help="also keep the checkpoint of this epoch as SAVE.epochK (what a run stopped then leaves)")
    p.add_argument("--seed-from-rank", action="store_true", help="each rank initialises with another seed")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    comm = connect("auto")
    from netdsl.backend.device import get_device
    from netdsl.train.comm import local_rank
    device = get_device(a.device, local_rank())
    net = netdsl.load(ROOT / "nets" / "lenet5.net") if a.net == "lenet5" else netdsl.compile_source(BN_NET)
    ds = datasets.prepare(datasets.load("digits"), net.input_shape, 10)
    if a.n_train is not None:
        ds = datasets.Dataset(ds.name, ds.x_train[:a.n_train], ds.y_train[:a.n_train], ds.x_test, ds.y_test, 10)
    model = Model(net, device=device, dtype=a.dtype, seed=comm.rank if a.seed_from_rank else 0)
    cfg = TrainConfig(epochs=a.epochs, batch=a.batch, lr=a.lr, schedule="cosine", save=a.save, resume=a.resume,
                      bucket_bytes=a.bucket, overlap=a.overlap, sync_bn=a.sync_bn, check_replicas=a.check_replicas)
    notes = []
    if a.keep_epoch is not None:
        real_save = model.save

        def save_and_keep(path, opt=None, extra=None):
            real_save(path, opt, extra)
            if extra["epoch"] == a.keep_epoch:
                real_save(f"{path}.epoch{a.keep_epoch}", opt, extra)
        model.save = save_and_keep
    result = train(model, ds, cfg, progress=Progress(io.StringIO()), log=notes.append, comm=comm)
    state = {k: model.device.asnumpy(v) for k, v in model.state_dict().items()}
    # every rank writes its own copy: the test compares them too
    np.savez(f"{a.out}.rank{comm.rank}.npz", **state)
    if comm.rank == 0:
        Path(a.out + ".json").write_text(json.dumps({"history": result.history, "notes": notes,
                                                     "size": comm.size, "steps": result.steps}))


def cli(argv):
    """netdsl's own command line, with a fault planted on one rank at one step."""
    p = argparse.ArgumentParser()
    p.add_argument("--fail-rank", type=int, default=None)
    p.add_argument("--fail-step", type=int, default=3)
    p.add_argument("--hang-rank", type=int, default=None, help="this rank stops taking part after --fail-step")
    p.add_argument("--die-rank", type=int, default=None, help="this rank's process ends at once, no word to MPI")
    a, rest = p.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    from netdsl.train.comm import launcher_world
    from netdsl.train import optim
    _, rank = launcher_world()
    real_step = optim.SGD.step

    def step(self, grads=None):
        if rank == a.fail_rank and self.steps + 1 == a.fail_step:
            raise RuntimeError(f"planted fault at step {a.fail_step}")
        if rank == a.die_rank and self.steps + 1 == a.fail_step:
            import os
            os._exit(9)  # as a crash or the out-of-memory killer would end it
        if rank == a.hang_rank and self.steps + 1 == a.fail_step:
            import time
            time.sleep(3600)  # alive, but never joins the next collective
        return real_step(self, grads)
    optim.SGD.step = step
    from netdsl.cli import main
    sys.exit(main(rest))


if __name__ == "__main__":
    {"train": api, "cli": cli}[sys.argv[1]](sys.argv[2:])
