"""`netdsl predict`: LeNet-5 trained one epoch on digits (the checkpoint records the data set's
statistics and class names), asked about held-out digits written as PNG files and .npy arrays;
and the mistakes a user can make, each a clear error naming the file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli.main import main

NET = str(Path(__file__).resolve().parent.parent / "nets" / "lenet5.net")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of LeNet-5 after one epoch on digits, and 8 digits from its test split
    (8x8 pixels, 0-16), with their labels: the files are written by the tests themselves."""
    from netdsl.train.data import load_digits
    folder = tmp_path_factory.mktemp("predict")
    ck = folder / "lenet5.safetensors"
    netdsl.train(NET, "digits", epochs=1, save=str(ck), progress=False)
    ds = load_digits()
    return ck, ds.x_test[:8, 0] * 16, ds.y_test[:8]


def _write_digits(folder: Path, images, labels) -> list[str]:
    from PIL import Image
    paths = []
    for k, (image, label) in enumerate(zip(images, labels)):
        png, npy = folder / f"digit{k}_{label}.png", folder / f"digit{k}_{label}.npy"
        Image.fromarray(np.round(image / 16 * 255).astype(np.uint8)).save(png)
        np.save(npy, (image / 16).astype(np.float32))
        paths += [str(png), str(npy)]
    return paths


def test_checkpoint_records_the_data_sets_statistics_and_names(trained):
    from netdsl import checkpoint
    ck, _, _ = trained
    with checkpoint.Checkpoint(ck) as c:
        data = c.info["data"]
    assert data["class_names"] == [str(k) for k in range(10)]
    # digits' pixels in [0, 1] (the 0-16 values / 16): their mean and spread lie inside it
    assert len(data["mean"]) == len(data["std"]) == 1
    assert 0.1 < data["mean"][0] < 0.6 and 0.1 < data["std"][0] < 0.6


def test_predicts_the_labels_of_png_and_npy_digits(trained, tmp_path, capsys):
    ck, images, labels = trained
    paths = _write_digits(tmp_path, images, labels)
    assert main(["predict", NET, "--weights", str(ck), *paths, "--top", "10", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == paths
    hits = 0
    for r, label in zip(results, np.repeat(labels, 2)):
        probabilities = [t["probability"] for t in r["top"]]
        assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-5
        assert probabilities == sorted(probabilities, reverse=True)
        hits += r["top"][0]["name"] == str(label)
    assert hits >= 12  # of 16 (96% of the test split after one epoch)
    # the PNG (rounded to 8 bits) and the array of each digit agree on the class
    assert all(a["top"][0]["class"] == b["top"][0]["class"] for a, b in zip(results[::2], results[1::2]))


def test_one_line_per_image_with_top_k(trained, tmp_path, capsys):
    ck, images, labels = trained
    paths = _write_digits(tmp_path, images[:2], labels[:2])[::2]
    assert main(["predict", NET, "--weights", str(ck), *paths, "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, paths):
        assert line.startswith(f"{path}: ") and line.count(",") == 2


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("not_an_image", "not an image Pillow can read"),
    ("three_channels", "has 3 channels, the network takes 1"),
    ("text_array", "is not an image"),
])
def test_bad_images_are_clear_errors_naming_the_file(trained, tmp_path, capsys, case, message):
    ck, _, _ = trained
    path = tmp_path / {"missing": "gone.png", "not_an_image": "notes.png", "three_channels": "rgb.npy",
                       "text_array": "words.npy"}[case]
    if case == "not_an_image":
        path.write_text("this is not a picture")
    elif case == "three_channels":
        np.save(path, np.zeros((3, 8, 8), np.float32))
    elif case == "text_array":
        np.save(path, np.array(["a", "b"]))
    assert main(["predict", NET, "--weights", str(ck), str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err


def test_checkpoint_without_statistics_needs_an_explicit_flag(trained, tmp_path, capsys):
    _, images, labels = trained
    bare = tmp_path / "bare.safetensors"
    netdsl.Model(netdsl.load(NET), device="cpu", seed=0).save(bare)  # no data set: no statistics
    path = _write_digits(tmp_path, images[:1], labels[:1])[0]
    assert main(["predict", NET, "--weights", str(bare), path]) == 1
    err = capsys.readouterr().err
    assert str(bare) in err and "no data set statistics" in err and "--no-normalise" in err
    assert main(["predict", NET, "--weights", str(bare), path, "--no-normalise"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ")
