"""Data sets: scikit-learn's digits out of the box; MNIST / Fashion-MNIST (IDX files) and
CIFAR-10 (binary batches) from a folder the user names. Nothing is downloaded, nothing unpickled.

Every loader returns float32 images (N, C, H, W) scaled to [0, 1] and int64 labels; `prepare`
resizes them to the network's input, matches channels and standardises with the training
split's mean and standard deviation.
"""
from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import NetError
from ..files import os_error


@dataclass
class Dataset:
    """A data set held in memory. The training loop reads any data set through `n_train`,
    `n_test`, `train_batches` and `test_batches` (train/folder.py streams one from disk)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    fitted: tuple[str, ...] = ()  # what `prepare` did to fit the images to a network, said once
    class_names: tuple[str, ...] = ()  # by class index; digits' and MNIST's "0" to "9"
    mean: tuple[float, ...] = ()  # the standardisation `prepare` applied, per input channel
    std: tuple[float, ...] = ()

    def info(self) -> dict:
        """What a checkpoint keeps so that `netdsl predict` sees an image as training did: pixels
        in [0, 1], the whole image resized (bilinear) to the input, standardised per channel."""
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std),
                "class_names": list(self.class_names or map(str, range(self.classes))), "resize": "whole"}

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def train_batches(self, plan: list[np.ndarray], epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images, labels) for each array of training indices in `plan`, in order."""
        for idx in plan:
            yield self.x_train[idx], self.y_train[idx]

    def test_batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx in plan:
            yield self.x_test[idx], self.y_test[idx]


DIGITS_SPLIT_SEED = 0  # the split belongs to the data set: never --seed, or a resume with another
                       # seed would evaluate on images it trained on


DIGIT_NAMES = tuple("0123456789")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """The 1,797 8x8 handwritten digits that scikit-learn ships, split the same way every time."""
    from sklearn.datasets import load_digits as sk_digits
    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10, class_names=DIGIT_NAMES)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise NetError(f"--data {folder}: no file {stem} (or {stem}.gz) there",
                   hint="MNIST and Fashion-MNIST need train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte")


MAX_IDX_BYTES = 4 << 30  # what one IDX file may promise; MNIST's largest holds 47 MB


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic 0x0000 08 NDIM, big-endian sizes, unsigned bytes.
    The header is read first and checked (sizes multiplied exactly, never wrapping), then exactly
    the bytes it promises: a lying file is refused without being read whole."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08 or not 1 <= head[3] <= 4:
                raise NetError(f"{path} is not an IDX file of unsigned bytes (its header is {head.hex() or 'empty'})")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise NetError(f"{path} is cut short inside its header")
            dims = [int.from_bytes(raw_dims[4 * i: 4 + 4 * i], "big") for i in range(ndim)]
            shown = "x".join(map(str, dims))
            if dims[0] == 0:
                raise NetError(f"{path} holds no items (its header says {shown})")
            if any(d == 0 for d in dims[1:]):
                raise NetError(f"{path}: its items are {'x'.join(map(str, dims[1:]))}, an empty size")
            size = math.prod(dims)  # exact: Python's integers do not wrap
            if size > MAX_IDX_BYTES:
                raise NetError(f"{path}: its header promises {shown} = {size:,} bytes, more than any data set "
                               f"this reads ({MAX_IDX_BYTES >> 30} GiB)")
            body = f.read(size + 1)
    except NetError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise NetError(f"{path} is not a readable gzip file ({exc})") from None
    except OSError as exc:
        raise os_error(exc, "read", path) from None
    if len(body) != size:
        held = f"{len(body):,}" if len(body) <= size else "more"
        raise NetError(f"{path}: the header promises {shown} = {size:,} bytes, the file holds {held}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_idx_set(folder: str, name: str) -> Dataset:
    root = Path(folder)
    if not root.is_dir():
        raise NetError(f"--data {name}:{folder}: no such folder")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise NetError(f"{root}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        if labels.max(initial=0) > 9:
            raise NetError(f"{root}: {prefix} labels go up to {labels.max()}, expected 0-9")
        parts[split] = (images.astype(np.float32)[:, None] / 255.0, labels.astype(np.int64))
    names = FASHION_NAMES if name.startswith("fashion") else DIGIT_NAMES
    return Dataset(name, *parts["train"], *parts["test"], 10, class_names=names)


def load_cifar10(folder: str) -> Dataset:
    """CIFAR-10's binary version: data_batch_1..5.bin and test_batch.bin, records of one label
    byte then 3,072 image bytes (3x32x32, channel-major)."""
    root = Path(folder)
    if not root.is_dir():
        raise NetError(f"--data cifar10:{folder}: no such folder")

    def read(names):
        xs, ys = [], []
        for name in names:
            path = root / name
            if not path.is_file():
                raise NetError(f"--data cifar10:{folder}: no file {name} there",
                               hint="CIFAR-10's binary version has data_batch_1.bin .. data_batch_5.bin and test_batch.bin")
            try:
                raw = np.fromfile(path, dtype=np.uint8)
            except OSError as exc:
                raise os_error(exc, "read", path) from None
            if raw.size == 0 or raw.size % 3073:
                raise NetError(f"{path}: {raw.size:,} bytes is not a whole number of 3,073-byte records")
            rec = raw.reshape(-1, 3073)
            if rec[:, 0].max() > 9:
                raise NetError(f"{path}: a label byte is {rec[:, 0].max()}, expected 0-9; is this the binary version?")
            ys.append(rec[:, 0].astype(np.int64))
            xs.append(rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    x_test, y_test = read(["test_batch.bin"])
    return Dataset("cifar10", x_train, y_train, x_test, y_test, 10, class_names=CIFAR10_NAMES)


def load(spec: str) -> Dataset:
    """`digits`, `mnist:FOLDER`, `fashion:FOLDER`, `cifar10:FOLDER` or `folder:DIR` (streamed
    from disk: train/folder.py). Every split, and every statistic measured on the data, depends on
    the data alone, never on --seed: a checkpoint is evaluated on the same test images whatever
    seed resumes it."""
    name, _, folder = spec.partition(":")
    if name == "digits":
        return load_digits()
    if name in ("mnist", "fashion", "fashion-mnist"):
        if not folder:
            raise NetError(f"--data {spec}: name the folder, e.g. --data {name}:~/data/{name}")
        return load_idx_set(str(Path(folder).expanduser()), name)
    if name == "folder":
        if not folder:
            raise NetError(f"--data {spec}: name the folder, e.g. --data folder:~/data/imagenette")
        from .folder import FolderDataset
        return FolderDataset(folder)
    if name == "cifar10":
        if not folder:
            raise NetError(f"--data {spec}: name the folder, e.g. --data cifar10:~/data/cifar-10-batches-bin")
        return load_cifar10(str(Path(folder).expanduser()))
    raise NetError(f"--data {spec}: unknown data set", hint="use digits, mnist:FOLDER, fashion:FOLDER, cifar10:FOLDER or folder:DIR")


def resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) images (align_corners=False, as image libraries do)."""
    n, c, ih, iw = x.shape
    if (ih, iw) == (h, w):
        return x

    def axis(out_size, in_size):
        pos = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        pos = np.clip(pos, 0, in_size - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, ih)
    x0, x1, fx = axis(w, iw)
    rows = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def prepare(ds: Dataset, input_shape: tuple[int, ...], classes: int, seed: int = 0) -> Dataset:
    """Fit a data set to a network: size, channels, standardisation, class count."""
    if not isinstance(ds, Dataset):  # streamed from disk: fitted batch by batch as it is read
        return ds.prepared(input_shape, classes, seed)
    if len(input_shape) != 3:
        c_h_w = None
    else:
        c_h_w = input_shape
    if classes < ds.classes:
        raise NetError(f"the network has {classes} outputs but {ds.name} has {ds.classes} classes")

    def fit(x):
        if c_h_w is None:
            flat = x.reshape(len(x), -1)
            if flat.shape[1] != input_shape[0]:
                raise NetError(f"{ds.name} images have {flat.shape[1]} values; the network takes {input_shape[0]}")
            return flat
        c, h, w = c_h_w
        x = resize(x, h, w)  # said once, in `fitted` below
        if x.shape[1] == c:
            return x
        if x.shape[1] == 1:
            return np.repeat(x, c, axis=1)
        if c == 1:
            return x.mean(axis=1, keepdims=True)
        raise NetError(f"{ds.name} images have {x.shape[1]} channels; the network takes {c}")

    x_train, x_test = fit(ds.x_train), fit(ds.x_test)
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
    channels = input_shape[0] if c_h_w is not None else 1
    return Dataset(ds.name, ((x_train - mean) / std).astype(np.float32), ds.y_train,
                   ((x_test - mean) / std).astype(np.float32), ds.y_test, ds.classes,
                   fitting(ds.name, ds.x_train.shape[1:], input_shape), ds.class_names,
                   (mean,) * channels, (std,) * channels)


def fitting(name: str, found: tuple[int, ...], wanted: tuple[int, ...]) -> tuple[str, ...]:
    """What fitting images of shape `found` (C, H, W) to a network's `wanted` input does, in words."""
    if len(wanted) != 3:
        return (f"{name} images {'x'.join(map(str, found))} are flattened to {wanted[0]} values",) \
            if len(found) != 1 else ()
    said = []
    if tuple(found[1:]) != tuple(wanted[1:]):
        said.append(f"{name} images are resized from {found[1]}x{found[2]} to {wanted[1]}x{wanted[2]} "
                    f"(bilinear) for the network's input {'x'.join(map(str, wanted))}")
    if found[0] != wanted[0]:
        said.append(f"{name} images have {found[0]} channel{'s' if found[0] != 1 else ''}, the network takes "
                    f"{wanted[0]}: " + ("the grey channel is repeated" if found[0] == 1 else "channels averaged"))
    return tuple(said)
