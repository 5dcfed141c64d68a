"""netdsl plot and netdsl runs over run logs: a PNG of the expected size with the runs' colours
drawn, a table naming what differs; bad inputs named."""
import json

import numpy as np
import pytest
from PIL import Image

from netdsl import runlog
from netdsl.cli import main

TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # matplotlib's first three tab10 colours


def fake_log(path, lr, batch=16, epochs=4, name="lenet5", scale=1.0):
    """A run log as train writes one, its figures made up (the plot's input, not under test)."""
    header = {"kind": "run", "format": runlog.FORMAT, "network": {"name": name, "fingerprint": "f" * 64},
              "data": {"name": "digits", "train": 1438, "test": 359, "classes": 10},
              "settings": {"epochs": epochs, "batch": batch, "lr": lr, "momentum": 0.9, "weight_decay": 5e-4,
                           "schedule": "cosine", "warmup_steps": 0, "seed": 0}}
    rows = [header]
    for e in range(1, epochs + 1):
        rows.append({"kind": "step", "epoch": e, "step": 90 * e - 45, "images": 1438 * (e - 1) + 720,
                     "loss": 1.5 * scale / e, "accuracy": 1 - 0.5 * scale / e, "lr": lr})
        rows.append({"kind": "epoch", "epoch": e, "step": 90 * e, "images": 1438 * e, "loss": scale / e,
                     "train_accuracy": 1 - 0.3 * scale / e, "test_loss": 1.2 * scale / e,
                     "test_accuracy": 1 - 0.4 * scale / e,
                     "seconds": 0.5, "lr": lr})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def colour_pixels(png, colour):
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).sum(axis=2) < 30).sum())


@pytest.mark.parametrize("count", [1, 3])
def test_plot_writes_a_png_with_every_run_drawn(tmp_path, count):
    logs = [fake_log(tmp_path / f"r{k}.log.jsonl", lr, scale=1 + k / 2)
            for k, lr in enumerate((0.1, 0.01, 0.001)[:count])]
    out = tmp_path / "curves.png"
    assert main(["plot", *logs, "-o", str(out)]) == 0
    image = Image.open(out)
    assert image.size == (1210, 462)  # 11 x 4.2 inches at 110 dpi
    pixels = np.asarray(image.convert("L"))
    assert 0.02 < (pixels < 250).mean() < 0.5  # drawn on, not a blank or a black page
    for k in range(count):
        assert colour_pixels(out, TAB10[k]) > 300, f"run {k} is not drawn"
    assert colour_pixels(out, TAB10[count]) < 50 if count < 3 else True


def test_plot_writes_svg_and_pdf_and_refuses_other_formats(tmp_path, capsys):
    log = fake_log(tmp_path / "r.log.jsonl", 0.1)
    for name, magic in (("c.svg", b"<?xml"), ("c.pdf", b"%PDF")):
        assert main(["plot", log, "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic)
    assert main(["plot", log, "-o", str(tmp_path / "c.jpg")]) == 1
    assert "-o " in capsys.readouterr().err and not (tmp_path / "c.jpg").exists()


def test_plot_never_writes_over_its_log_or_into_a_folder_it_cannot(tmp_path, capsys):
    log = fake_log(tmp_path / "r.png", 0.1)
    before = (tmp_path / "r.png").read_bytes()
    assert main(["plot", log, "-o", log]) == 2  # the shared check of every command's outputs (cli/paths.py)
    assert "would replace the LOG argument" in capsys.readouterr().err
    assert (tmp_path / "r.png").read_bytes() == before
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["plot", log, "-o", str(blocker / "c.png")]) == 1
    assert f"-o {blocker / 'c.png'}" in capsys.readouterr().err


def test_plot_of_a_file_that_is_not_a_log_names_it(tmp_path, capsys):
    other = tmp_path / "x.jsonl"
    other.write_text('{"a": 1}\n')
    assert main(["plot", str(other), "-o", str(tmp_path / "c.png")]) == 1
    assert f"{other} is not a netdsl run log" in capsys.readouterr().err


def test_runs_table_names_what_differs(tmp_path, capsys):
    a = fake_log(tmp_path / "a.log.jsonl", 0.1)
    b = fake_log(tmp_path / "b.log.jsonl", 0.01, batch=32)
    assert main(["runs", a, b, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("run,epochs,final test acc,best test acc")
    assert "lr 0.1; batch 16" in rows[1] and "lr 0.01; batch 32" in rows[2]
    assert "momentum" not in rows[1] and "90.00%" in rows[1]  # final test accuracy 1 - 0.4/4
    assert main(["runs", a, b, "--format", "md"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("|---|")


def test_runs_table_shows_the_first_network_difference(tmp_path, capsys):
    a, b = tmp_path / "a.log.jsonl", tmp_path / "b.log.jsonl"
    fake_log(a, 0.1)
    fake_log(b, 0.1)
    for path, width in ((a, 4), (b, 8)):
        rows = [json.loads(l) for l in path.read_text().splitlines()]
        rows[0]["network"] = {"name": "t", "fingerprint": str(width),
                              "source": f"network t\ninput 1x8x8\nconv {width} 3x3\nrelu\nfc 10\nsoftmax\n"}
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["runs", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    # conv1 changed; relu1 (4x6x6 -> 8x6x6) and fc (144 -> 288 inputs) follow from it
    assert "changed conv1: conv 4 3x3  =>  conv 8 3x3 (+2 more)" in out
