"""--data folder:DIR: the ImageFolder layout streamed from disk (Pillow), and its mistakes."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdsl import NetError, checkpoint
from netdsl.cli import main
from netdsl.train import data as datasets
from netdsl.train.folder import FolderDataset
from netdsl.train.shards import train_plan

TINY_RGB = "network tinyrgb\ninput 3x12x12\nconv 8 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"


def write_folder(root: Path, per_class: int = 12, classes: int = 3) -> Path:
    """Digits as small PNG and JPEG files of varied sizes: root/train/digitK/*.png, root/val/..."""
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(0)
    counts = {}
    for img, y in zip(d.images, d.target):
        if y >= classes or counts.get(y, 0) >= per_class:
            continue
        i = counts[y] = counts.get(y, 0) + 1
        split = "val" if i % 4 == 0 else "train"
        folder = root / split / f"digit{y}"
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray((img / 16 * 255).astype(np.uint8)).resize(
            (int(rng.integers(10, 20)), int(rng.integers(10, 20))))
        im.convert("RGB").save(folder / f"{i}{'.png' if i % 2 else '.jpg'}")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "digits")


def test_layout_classes_and_batches(folder):
    ds = datasets.prepare(datasets.load(f"folder:{folder}"), (3, 12, 12), 10)
    assert ds.class_names == ["digit0", "digit1", "digit2"]
    assert (ds.n_train, ds.n_test) == (27, 9)
    (x, y), = list(ds.train_batches([np.arange(5)], epoch=0))
    assert x.shape == (5, 3, 12, 12) and x.dtype == np.float32 and list(y) == [0] * 5
    (x2, _), = list(ds.train_batches([np.arange(5)], epoch=0))
    np.testing.assert_array_equal(x, x2)  # the crop and flip are seeded: the same on every rank
    (x3, _), = list(ds.train_batches([np.arange(5)], epoch=1))
    assert not np.array_equal(x, x3)  # and another epoch draws others
    (t1, _), = list(ds.test_batches([np.arange(3)]))
    (t2, _), = list(ds.test_batches([np.arange(3)]))
    np.testing.assert_array_equal(t1, t2)  # evaluation: the centre crop


def test_a_rank_reads_only_its_shard(folder, monkeypatch):
    ds = datasets.prepare(datasets.load(f"folder:{folder}"), (3, 12, 12), 10)
    read = []
    real = FolderDataset._decode
    monkeypatch.setattr(FolderDataset, "_decode", lambda self, path, rng: read.append(path) or real(self, path, rng))
    plan = train_plan(np.random.default_rng(0).permutation(ds.n_train), 6, rank=1, size=2)
    list(ds.train_batches([idx for idx, _ in plan], epoch=0))
    assert sorted(read) == sorted(ds.train_files[i] for idx, _ in plan for i in idx)
    assert len(read) == 13  # 27 images: positions 1, 3, ..., 25


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "val").rename(r / "elsewhere"), "expected the subfolders train/ and val/"),
    (lambda r: [p.unlink() for p in (r / "train" / "digit1").iterdir()], "digit1 holds no .jpg, .jpeg or .png files"),
    (lambda r: (r / "val" / "digit9").mkdir(), "has the class folder 'digit9', which train/ lacks"),
    (lambda r: (r / "train" / "digit0" / "1.png").write_bytes(b"not a png"), "1.png: not an image Pillow can read"),
])
def test_mistakes_name_the_place(folder, damage, message):
    damage(folder)
    with pytest.raises(NetError, match=message.replace(".", r"\.").replace("(", r"\(")):
        datasets.prepare(datasets.load(f"folder:{folder}"), (3, 12, 12), 10)


def test_folder_classes_must_fit_the_network(folder):
    with pytest.raises(NetError, match="2 outputs but folder:digits has 3 classes"):
        datasets.prepare(datasets.load(f"folder:{folder}"), (3, 12, 12), 2)


def test_two_ranks_train_the_one_process_model_from_a_folder(folder, tmp_path):
    net = tmp_path / "tinyrgb.net"
    net.write_text(TINY_RGB)
    args = ["train", str(net), "--data", f"folder:{folder}", "--epochs", "2", "--batch", "6", "-q"]
    assert main(args + ["--save", str(tmp_path / "one.safetensors")]) == 0
    done = subprocess.run([sys.executable, "-m", "netdsl", *args, "--ranks", "2", "--save", str(tmp_path / "two.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with checkpoint.Checkpoint(tmp_path / "one.safetensors") as a, checkpoint.Checkpoint(tmp_path / "two.safetensors") as b:
        for name in a.model_keys():
            np.testing.assert_allclose(b.tensor(name), a.tensor(name), rtol=1e-5, atol=1e-6, err_msg=name)
