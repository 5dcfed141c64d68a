"""The file loaders on small files made here: MNIST's IDX format and CIFAR-10's binary batches."""
import gzip
import struct

import numpy as np
import pytest

from netdsl import NetError
from netdsl.train import data as datasets


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    (gzip.open(path, "wb") if gz else open(path, "wb")).write(blob)


def make_mnist(folder, gz=False, n=20):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    make_mnist(tmp_path, gz)
    ds = datasets.load(f"mnist:{tmp_path}")
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_train.max() <= 1.0
    assert ds.y_test.dtype == np.int64
    fitted = datasets.prepare(ds, (3, 32, 32), 10)
    assert fitted.x_train.shape == (20, 3, 32, 32)


def test_idx_truncated(tmp_path):
    make_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(NetError, match="the header promises 20x28x28 = 15,680 bytes, the file holds 15,670"):
        datasets.load(f"fashion:{tmp_path}")


def test_idx_wrong_magic(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(NetError, match="is not an IDX file"):
        datasets.load(f"mnist:{tmp_path}")


def test_idx_missing_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(NetError, match="no file train-labels-idx1-ubyte"):
        datasets.load(f"mnist:{tmp_path}")


def make_cifar(folder, n=5):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec.tofile(folder / name)
    return rec


def test_cifar10_binary(tmp_path):
    last = make_cifar(tmp_path)
    ds = datasets.load(f"cifar10:{tmp_path}")
    assert ds.x_train.shape == (25, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_test, last[:, 0])
    np.testing.assert_allclose(ds.x_test[0, 1, 0, :3], last[0, 1 + 1024:1 + 1024 + 3] / 255.0)


def test_cifar10_malformed(tmp_path):
    make_cifar(tmp_path)
    with open(tmp_path / "data_batch_3.bin", "ab") as f:
        f.write(b"xx")
    with pytest.raises(NetError, match="not a whole number of 3,073-byte records"):
        datasets.load(f"cifar10:{tmp_path}")


def test_unknown_data_set():
    with pytest.raises(NetError, match="unknown data set"):
        datasets.load("imagenet:/x")


def test_resize_is_bilinear():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    out = datasets.resize(x, 4, 4)
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 3, 3] == 3
    np.testing.assert_allclose(out[0, 0, 1, 1], 0.75)  # a quarter of the way between 0 and 3
