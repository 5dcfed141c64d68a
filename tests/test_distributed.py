"""Data-parallel training over MPI against one process: mpiexec -n 2 and -n 3 (oversubscribed on
a 2-core machine), each run under a timeout. tests/dist_worker.py is the rank's program.

The reference is always a run without MPI of the same worker: the promise is that the number of
ranks does not change the model, up to the order of floating-point sums.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.train import data as datasets
from netdsl.train.loop import evaluate
from netdsl.train.shards import eval_plan, train_plan

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
NETS = HERE.parent / "nets"
MPIEXEC = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in the test environment
if not MPIEXEC.is_file() and shutil.which("mpiexec"):
    MPIEXEC = Path(shutil.which("mpiexec"))
TIMEOUT = 120


def mpi_ready():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC.is_file()


# scripts/test installs the mpi extra: a missing MPI fails these tests (with that said), never skips them


def run(ranks, *args, env=None, timeout=TIMEOUT):
    """The worker on `ranks` ranks (0: one process, no MPI at all); its completed process."""
    cmd = ([str(MPIEXEC), "-n", str(ranks)] if ranks else []) + [sys.executable, str(WORKER), *map(str, args)]
    assert not ranks or mpi_ready(), "data-parallel tests need the mpi extra: pip install -e '.[mpi]'"
    import os
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def train(tmp, name, ranks, *args):
    out = tmp / name
    done = run(ranks, "train", "--out", out, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    size = max(1, ranks)
    states = [dict(np.load(f"{out}.rank{r}.npz")) for r in range(size)]
    return states, json.loads(Path(f"{out}.json").read_text())


def worst_relative(a, b):
    return max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-30)) for k in a)


def assert_same_bits(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="module")
def lenet_one(tmp):
    return train(tmp, "one32", 0, "--check-replicas")


@pytest.fixture(scope="module")
def lenet_two(tmp):
    return train(tmp, "two32", 2, "--check-replicas")


# equivalence ------------------------------------------------------------------------------------

def test_two_ranks_train_the_one_process_model_float32(lenet_one, lenet_two):
    (one,), _ = lenet_one
    two, history = lenet_two
    assert history["size"] == 2 and len(history["history"]) == 2
    assert worst_relative(one, two[0]) < 1e-5
    assert_same_bits(two[0], two[1])  # and --check-replicas held it after every step


def test_two_ranks_train_the_one_process_model_float64(tmp):
    (one,), _ = train(tmp, "one64", 0, "--dtype", "float64")
    two, _ = train(tmp, "two64", 2, "--dtype", "float64")
    assert worst_relative(one, two[0]) < 1e-10


def test_sync_bn_trains_the_one_process_model(tmp):
    (one,), _ = train(tmp, "bn_one", 0, "--net", "bn", "--dtype", "float64")
    two, _ = train(tmp, "bn_two", 2, "--net", "bn", "--dtype", "float64", "--sync-bn", "--check-replicas")
    assert worst_relative(one, two[0]) < 1e-10  # the running statistics included
    assert_same_bits(two[0], two[1])


def test_three_ranks_share_an_unequal_last_batch_exactly(tmp):
    # 1,438 images in batches of 18: the last holds 16, shared 6 + 5 + 5
    (one,), _ = train(tmp, "bn_one18", 0, "--net", "bn", "--dtype", "float64", "--batch", "18")
    three, _ = train(tmp, "bn_three", 3, "--net", "bn", "--dtype", "float64", "--batch", "18", "--sync-bn")
    assert worst_relative(one, three[0]) < 1e-10
    assert_same_bits(three[0], three[2])


def test_a_rank_with_no_image_in_the_last_batch_takes_part(tmp):
    # 100 images in batches of 3: the last holds 1, so ranks 1 and 2 have none in it
    args = ("--net", "bn", "--dtype", "float64", "--batch", "3", "--n-train", "100", "--epochs", "1")
    (one,), _ = train(tmp, "bn_one_tiny", 0, *args)
    three, _ = train(tmp, "bn_three_tiny", 3, *args, "--sync-bn", "--check-replicas")
    assert worst_relative(one, three[0]) < 1e-10
    assert_same_bits(three[0], three[1])


def test_batch_norm_without_sync_bn_trains_and_says_its_statistics_are_per_rank(tmp):
    two, history = train(tmp, "bn_local", 2, "--net", "bn", "--check-replicas")
    assert history["history"][-1]["test_accuracy"] > 0.8
    assert any("statistics per rank" in note for note in history["notes"]), history["notes"]
    assert_same_bits(two[0], two[1])  # the running statistics too: averaged before the end


# consistency ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bucket, overlap", [(1024, False), (1024, True), (25 << 20, True)])
def test_bucket_size_and_overlap_do_not_change_the_result(tmp, lenet_two, bucket, overlap):
    two, _ = lenet_two  # 25 MiB buckets, after the backward pass
    other, _ = train(tmp, f"b{bucket}{overlap}", 2, "--bucket", bucket, "--check-replicas",
                     *(["--overlap"] if overlap else []))
    assert_same_bits(two[0], other[0])


def test_bucket_size_and_overlap_do_not_change_the_result_on_three_ranks(tmp):
    # MPI does not promise one summation order for every message size; MPICH over shared memory keeps it
    whole, _ = train(tmp, "b3_whole", 3, "--batch", "18")
    small, _ = train(tmp, "b3_small", 3, "--batch", "18", "--bucket", "1024", "--overlap", "--check-replicas")
    assert_same_bits(whole[0], small[0])


# sharding and evaluation ------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("n, batch", [(1438, 18), (100, 6), (7, 6)])
def test_shards_cover_the_epoch_exactly_once_in_equal_steps(size, n, batch):
    order = np.random.default_rng(1).permutation(n)
    plans = [train_plan(order, batch, r, size) for r in range(size)]
    assert len({len(p) for p in plans}) == 1  # every rank takes as many steps
    taken = np.concatenate([idx for plan in plans for idx, _ in plan])
    assert sorted(taken) == list(range(n))
    for step in range(len(plans[0])):  # and each global batch is one process's batch
        together = np.concatenate([plan[step][0] for plan in plans])
        assert sorted(together) == sorted(order[step * batch:(step + 1) * batch])
    tested = np.concatenate([idx for r in range(size) for idx in eval_plan(n, r, size, batch=5)])
    assert sorted(tested) == list(range(n))


def test_distributed_accuracy_is_the_one_process_accuracy(lenet_two):
    two, history = lenet_two
    net = netdsl.load(NETS / "lenet5.net")
    from netdsl.backend.executor import Model
    model = Model(net, device="cpu")
    model.load_state_dict(two[0])
    ds = datasets.prepare(datasets.load("digits"), net.input_shape, 10)
    assert history["history"][-1]["test_accuracy"] == evaluate(model, ds.x_test, ds.y_test)


# resume -----------------------------------------------------------------------------------------

def test_resume_on_the_same_ranks_is_bit_exact_and_on_other_ranks_says_so(tmp, lenet_two):
    two, _ = lenet_two
    ck = tmp / "half.safetensors.epoch1"  # what a 2-epoch run stopped after its first leaves
    again, _ = train(tmp, "first", 2, "--save", tmp / "half.safetensors", "--keep-epoch", "1")
    assert_same_bits(two[0], again[0])
    from netdsl import checkpoint
    with checkpoint.Checkpoint(ck) as c:
        assert c.info["world_size"] == 2 and c.info["epoch"] == 1
    resumed, history = train(tmp, "resumed", 2, "--resume", ck)
    assert_same_bits(two[0], resumed[0])
    assert any("resumed from" in note for note in history["notes"])
    other, history = train(tmp, "resumed3", 3, "--batch", "18", "--resume", ck)
    assert any("written by 2 ranks, this run has 3" in note for note in history["notes"]), history["notes"]
    assert history["history"][-1]["test_accuracy"] > 0.9


# failure ----------------------------------------------------------------------------------------

def cli(ranks, *args, env=None, timeout=60):
    t0 = time.perf_counter()
    done = run(ranks, "cli", *args, env=env, timeout=timeout)
    return done, time.perf_counter() - t0


def test_a_rank_that_fails_at_step_3_ends_every_rank_with_its_message():
    done, seconds = cli(2, "--fail-rank", "1", "--fail-step", "3", "--", "train", NETS / "lenet5.net",
                        "--epochs", "1", "--dist", "mpi")
    assert done.returncode != 0
    assert "[rank 1]" in done.stderr and "planted fault at step 3" in done.stderr
    assert seconds < 60


def test_a_rank_that_dies_without_a_word_ends_the_job():
    done, seconds = cli(2, "--die-rank", "1", "--fail-step", "3", "--", "train", NETS / "lenet5.net",
                        "--epochs", "1", "--dist", "mpi")
    assert done.returncode != 0
    assert seconds < 60


def test_a_rank_stuck_outside_the_collectives_is_named_by_the_timeout():
    done, seconds = cli(2, "--hang-rank", "1", "--fail-step", "3", "--", "train", NETS / "lenet5.net",
                        "--epochs", "1", "--dist", "mpi", env={"NETDSL_DIST_TIMEOUT": "3"})
    assert done.returncode != 0
    assert "[rank 0] error: waited 3 s in the gradient sum" in done.stderr, done.stderr
    assert seconds < 60


def test_ranks_given_different_networks_get_a_clear_error(tmp):
    other = tmp / "wider.net"
    other.write_text((NETS / "lenet5.net").read_text().replace("c1: conv 6 5x5", "c1: conv 8 5x5"))
    worker = [sys.executable, str(WORKER), "cli", "--", "train"]
    cmd = [str(MPIEXEC), "-n", "1", *worker, NETS / "lenet5.net", "--dist", "mpi", "--epochs", "1", ":",
           "-n", "1", *worker, other, "--dist", "mpi", "--epochs", "1", "-q"]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "rank 1 and rank 0 have different network (a hash of the IR)" in done.stderr, done.stderr


# the command line -------------------------------------------------------------------------------

def netdsl_cli(*args, timeout=TIMEOUT):
    return subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_ranks_flag_starts_local_ranks_and_only_rank_0_prints(tmp):
    """Also: stdout and stderr merged (as a terminal shows them), the result line comes after the
    last epoch line, though mpiexec forwards the two streams on separate pipes."""
    done = subprocess.run([sys.executable, "-m", "netdsl", "train", str(NETS / "lenet5.net"), "--epochs", "1",
                           "--ranks", "2", "--save", str(tmp / "r.safetensors")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert sum(line.startswith("test accuracy") for line in lines) == 1
    assert sum(line.startswith("epoch 1/1") for line in lines) == 1
    assert "2 ranks (8 images each per step of 16)" in done.stdout
    epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1"))
    result = next(i for i, line in enumerate(lines) if line.startswith("test accuracy"))
    assert result > epoch, done.stdout


def test_a_batch_the_ranks_cannot_share_is_refused_with_the_numbers():
    done = netdsl_cli("train", NETS / "lenet5.net", "--epochs", "1", "--ranks", "3", "--oversubscribe", "--batch", "16")
    assert done.returncode == 2  # the flags' mistake, found before any rank starts
    assert "--batch 16 does not split over 3 ranks" in done.stderr and "use --batch 18 or 15" in done.stderr
    assert "Traceback" not in done.stderr


def test_dist_none_refuses_to_run_as_one_of_several_ranks():
    done = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "netdsl", "train", str(NETS / "lenet5.net"),
                           "--dist", "none"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--dist none, but an MPI launcher started this as rank" in done.stderr
    done = netdsl_cli("train", NETS / "lenet5.net", "--ranks", "2", "--dist", "none")
    assert done.returncode == 2 and "--ranks 2 and --dist none" in done.stderr


def test_a_bad_timeout_names_the_variable():
    import os
    done = subprocess.run([sys.executable, "-m", "netdsl", "train", str(NETS / "lenet5.net"), "--dist", "mpi"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "NETDSL_DIST_TIMEOUT": "soon"})
    assert done.returncode == 1 and "NETDSL_DIST_TIMEOUT='soon'" in done.stderr


# GPU ranks (scripts/gpu-check runs these where a GPU is lent; two ranks share one GPU) -----------

@pytest.mark.gpu
def test_two_gpu_ranks_train_the_one_gpu_model(tmp):
    (one,), _ = train(tmp, "gpu_one", 0, "--device", "gpu", "--check-replicas")
    two, _ = train(tmp, "gpu_two", 2, "--device", "gpu", "--check-replicas")
    assert worst_relative(one, two[0]) < 1e-5
    assert_same_bits(two[0], two[1])


@pytest.mark.gpu
def test_sync_bn_on_gpu_ranks(tmp):
    (one,), _ = train(tmp, "gpu_bn_one", 0, "--device", "gpu", "--net", "bn", "--dtype", "float64")
    two, _ = train(tmp, "gpu_bn_two", 2, "--device", "gpu", "--net", "bn", "--dtype", "float64", "--sync-bn")
    assert worst_relative(one, two[0]) < 1e-10


def test_ranks_with_data_sets_of_different_sizes_get_a_clear_error(tmp):
    worker = [sys.executable, str(WORKER), "train", "--epochs", "1", "--out", tmp / "sizes"]
    cmd = [str(MPIEXEC), "-n", "1", *worker, "--n-train", "100", ":", "-n", "1", *worker, "--n-train", "90"]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "rank 1 and rank 0 have different training images (100 on rank 0, 90 on rank 1)" in done.stderr, \
        done.stderr[-2000:]


@pytest.mark.parametrize("args, env, message", [
    (["--ranks", "2", "--oversubscribe"], {}, "--ranks 2: mpi4py is not installed"),
    (["--dist", "mpi"], {}, "--dist mpi: mpi4py is not installed"),
    ([], {"PMI_SIZE": "2", "PMI_RANK": "1"}, "--dist auto: an MPI launcher started 2 ranks, but mpi4py is not installed"),
])
def test_without_mpi4py_the_flags_say_what_to_install(monkeypatch, capsys, args, env, message):
    from netdsl.cli import main
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as where the mpi extra is not installed
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["train", str(NETS / "lenet5.net"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and ".venv/bin/pip install -e '.[mpi]'" in err
