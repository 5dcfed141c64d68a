"""`--data folder:DIR`: images streamed from disk in the ImageFolder layout.

    DIR/train/<class>/*.jpg|*.jpeg|*.png     one subfolder per class (names sorted: class 0, 1, ...)
    DIR/val/<class>/...   (or DIR/test/)     the same class names, or some of them

Nothing is held in memory but the file list: each batch is decoded (Pillow) when it is needed,
by a few threads a couple of batches ahead (threads, not processes: nothing forks once MPI has
started). Only the files of this rank's share are read. Training images are resized (shorter side
to 8/7 of the network's input, as the ImageNet recipe's 256 for 224), cropped at a random place
and flipped half the time, seeded by (seed, epoch, image): the same on any number of ranks.
Evaluation takes the centre crop. Both are standardised per channel with the mean and standard
deviation of a fixed sample of training images (the same whatever --seed says).
"""
from __future__ import annotations

import os
import stat
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from ..backend.cpu.threads import cores_per_process
from ..errors import NetError

EXTENSIONS = {".jpg", ".jpeg", ".png"}
RESIZE = 8 / 7          # shorter side / crop side (256 / 224)
SAMPLE = 256            # training images the standardisation is measured on
STANDARDISE_SEED = 0    # the sample the standardisation is measured on (the data's, never --seed)
# An image with more pixels is refused before it is decoded: a few hundred bytes of PNG can
# promise 20,000 x 20,000 pixels (1.2 GB decoded). 8192 x 8192 fits, as does a 50 MP photo.
MAX_IMAGE_PIXELS = 1 << 26
PILLOW_FORMATS = ("JPEG", "PNG")  # what .jpg, .jpeg and .png files hold, as Pillow's registry names them


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _images(folder: Path, spec: str) -> list[Path]:
    """The folder's images, in name order. Only regular files are images: a FIFO, socket or
    device named 9.png would block the reader or never end, so it is refused here, by name."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in EXTENSIONS:
                continue
            if not entry.is_file():  # follows links: a link to an image is one
                try:
                    what = _kind(os.stat(entry.path).st_mode)
                except OSError:
                    what = "a link to nothing"
                raise NetError(f"{spec}: {entry.path} is {what}, not an image file",
                               hint="a data folder holds regular .jpg, .jpeg and .png files")
            found.append(Path(entry.path))
    return sorted(found)


def _open_regular(path: Path):
    """The file for reading, refused unless it is a regular file. Opened without blocking, so a
    file that became a FIFO after the listing is refused rather than waited on for ever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NetError(f"{path} is {_kind(mode)}, not an image file")
    return os.fdopen(fd, "rb")


def _open_image(f, path: Path):
    """Pillow's reader for the file's format, which reads only its header; the size is checked
    before any pixel is decoded. (Image.open would run Pillow's own bomb check first, which only
    warns, on stderr, for up to twice its limit.)"""
    from PIL import Image, UnidentifiedImageError
    Image.preinit()  # registers the JPEG and PNG readers
    prefix = f.read(16)
    for name in PILLOW_FORMATS:
        factory, accept = Image.OPEN[name]
        verdict = accept(prefix) if accept else True
        if verdict and not isinstance(verdict, str):
            f.seek(0)
            img = factory(f, str(path))
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise NetError(f"{path}: {w} x {h} pixels is more than netdsl decodes ({MAX_IMAGE_PIXELS:,} "
                               f"pixels): a decompression bomb, or an image to shrink first",
                               hint="resize it (the network sees it at its input size anyway)")
            return img
    raise UnidentifiedImageError("neither a JPEG nor a PNG file")


class FolderDataset:
    def __init__(self, root: str):
        self.root = Path(root).expanduser()
        spec = f"--data folder:{root}"
        if not self.root.is_dir():
            raise NetError(f"{spec}: no such folder")
        train = self.root / "train"
        held_out = next((self.root / n for n in ("val", "test") if (self.root / n).is_dir()), None)
        if not train.is_dir() or held_out is None:
            raise NetError(f"{spec}: expected the subfolders train/ and val/ (or test/), each with one folder "
                           f"of images per class", hint="e.g. DIR/train/cat/1.jpg, DIR/val/cat/7.jpg")
        self.class_names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.class_names:
            raise NetError(f"{spec}: {train} holds no class folders")
        index = {name: k for k, name in enumerate(self.class_names)}
        self.train_files, self.train_labels = self._list(train, index, spec, every_class=True)
        unknown = sorted(p.name for p in held_out.iterdir() if p.is_dir() and p.name not in index
                         and not p.name.startswith("."))
        if unknown:
            raise NetError(f"{spec}: {held_out} has the class folder '{unknown[0]}', which train/ lacks")
        self.test_files, self.test_labels = self._list(held_out, index, spec, every_class=False)
        self.name = f"folder:{self.root.name}"
        self.classes = len(self.class_names)
        self.shape: tuple[int, int, int] | None = None
        self.mean = self.std = None
        self.seed = 0
        self.fitted: tuple[str, ...] = ()

    @staticmethod
    def _list(split: Path, index: dict[str, int], spec: str, every_class: bool):
        files, labels = [], []
        for name, k in index.items():
            folder = split / name
            found = _images(folder, spec) if folder.is_dir() else []
            if not found and every_class:
                raise NetError(f"{spec}: {folder} holds no .jpg, .jpeg or .png files")
            files += found
            labels += [k] * len(found)
        if not files:
            raise NetError(f"{spec}: {split} holds no images")
        return files, np.array(labels, dtype=np.int64)

    @property
    def n_train(self) -> int:
        return len(self.train_files)

    @property
    def n_test(self) -> int:
        return len(self.test_files)

    def prepared(self, input_shape: tuple[int, ...], classes: int, seed: int = 0) -> "FolderDataset":
        """Fitted to a network taking C x H x W images; the standardisation measured."""
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise NetError(f"--data {self.name}: the network takes {'x'.join(map(str, input_shape))}; images fit "
                           "a network that takes 1xHxW (grey) or 3xHxW (colour)")
        if classes < self.classes:
            raise NetError(f"the network has {classes} outputs but {self.name} has {self.classes} classes "
                           f"({', '.join(self.class_names[:5])}{', ...' if self.classes > 5 else ''})")
        self.shape, self.seed = tuple(input_shape), seed
        # the standardisation sample depends on the data alone, not on --seed: a checkpoint is
        # evaluated on the same numbers whatever seed resumes it
        rng = np.random.default_rng([STANDARDISE_SEED, 7])
        sample = rng.choice(self.n_train, size=min(SAMPLE, self.n_train), replace=False)
        x = np.stack([self._decode(self.train_files[i], None) for i in sorted(sample)])
        self.mean = x.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)[:, None, None]
        std = x.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
        self.std = np.where(std > 0, std, 1).astype(np.float32)[:, None, None]
        h, w = self.shape[1:]
        self.fitted = (f"{self.name} images: shorter side resized to {round(min(h, w) * RESIZE)}, then cropped to "
                       f"{h}x{w} (a random crop, flipped half the time, for training; the centre for testing)",)
        return self

    def info(self) -> dict:
        """What a checkpoint keeps so that `netdsl predict` sees an image as evaluation did: the
        shorter side resized to RESIZE x the input's, the centre cropped, standardised per channel."""
        return {"name": self.name, "mean": [float(v) for v in np.ravel(self.mean)],
                "std": [float(v) for v in np.ravel(self.std)], "class_names": list(self.class_names),
                "resize": "shorter side", "ratio": RESIZE}

    def _decode(self, path: Path, rng: np.random.Generator | None) -> np.ndarray:
        """One image as C x H x W float32 in [0, 1]: resized, then cropped (at random with `rng`,
        else in the centre) and, with `rng`, flipped half the time."""
        from PIL import Image, UnidentifiedImageError
        c, h, w = self.shape
        try:
            with _open_regular(path) as f, _open_image(f, path) as img:
                img = img.convert("RGB" if c == 3 else "L")
                scale = max(h, w) * RESIZE / min(img.size)
                size = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
                img = img.resize(size, Image.BILINEAR)
                if rng is None:
                    left, top = (size[0] - w) // 2, (size[1] - h) // 2
                else:
                    left, top = int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1))
                img = img.crop((left, top, left + w, top + h))
                a = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NetError(f"{path}: not an image Pillow can read ({exc})") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if rng is not None and rng.random() < 0.5:
            a = a[:, :, ::-1]
        return a

    def _batch(self, files: list[Path], labels: np.ndarray, idx: np.ndarray, epoch: int | None):
        def one(i):
            rng = None if epoch is None else np.random.default_rng([self.seed, epoch, int(i)])
            return self._decode(files[i], rng)
        x = np.stack([one(i) for i in idx])
        return ((x - self.mean) / self.std).astype(np.float32), labels[idx]

    def _ahead(self, jobs: list, make) -> Iterator:
        """make(job) for each job in order, computed by a few threads a couple of jobs ahead."""
        workers = max(1, min(4, cores_per_process()))
        with ThreadPoolExecutor(workers, thread_name_prefix="netdsl-prefetch") as pool:
            pending: deque = deque()
            jobs = iter(jobs)
            for job in jobs:
                pending.append(pool.submit(make, job))
                if len(pending) > workers:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(jobs, None)
                if nxt is not None:
                    pending.append(pool.submit(make, nxt))
                yield result

    def train_batches(self, plan: list[np.ndarray], epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._ahead(plan, lambda idx: self._batch(self.train_files, self.train_labels, idx, epoch))

    def test_batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._ahead(plan, lambda idx: self._batch(self.test_files, self.test_labels, idx, None))
