"""What a person sees while training: plain lines on a non-terminal, a live bar on a terminal,
--quiet, the settings in force, what fitting the data to the network does, and --help."""
import io
import re

import pytest

from netdsl.cli import main
from netdsl.train.progress import Progress, clock

TINY = "network tiny\ninput 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"
CONTROL = re.compile(r"[\r\x1b]")
ENTRY = dict(epoch=1, loss=0.5, train_accuracy=0.8, test_accuracy=0.75, test_loss=0.6, seconds=2.0,
             images_per_s=719.0, lr=0.05)


@pytest.fixture
def tiny(tmp_path):
    f = tmp_path / "t.net"
    f.write_text(TINY)
    return f


def test_on_a_non_terminal_progress_is_plain_lines(tiny, capsys):
    assert main(["train", str(tiny), "--epochs", "2", "--batch", "64"]) == 0
    out, err = capsys.readouterr()
    assert not CONTROL.search(err) and not CONTROL.search(out)
    lines = err.splitlines()
    assert lines[0].startswith("tiny on digits: 1,438 training and 359 test images")
    assert "settings: 2 epochs, batch 64, lr cosine from 0.05 to 0 over 2 epochs, momentum 0.9, weight decay " \
           "0.0005, seed 0" in err
    kept = [l for l in lines if l.startswith("epoch ")]
    assert [l.split()[1] for l in kept] == ["1/2", "2/2"]
    assert all("train loss" in l and "test loss" in l and "img/s" in l and "lr " in l for l in kept)
    assert out.startswith("test accuracy")


def test_quiet_prints_only_the_result(tiny, capsys):
    assert main(["train", str(tiny), "--epochs", "1", "--batch", "64", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1 and out.startswith("test accuracy")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_a_bar_redraws_and_the_epoch_line_is_kept():
    screen = Terminal()
    p = Progress(screen)
    assert p.live
    p.start(1, 3, 1000)
    for k in range(1, 11):
        p.step(100 * k, 1000, 0.5, 0.8, 0.05, 500.0, 65.0)
    p.epoch_done(ENTRY, 65.0)
    text = screen.getvalue()
    assert "\r" in text and "epoch 1/3" in text and "img/s" in text and "loss 0.5000 acc 80.0%" in text
    assert text.rstrip().endswith("epoch 1/3  train loss 0.5000 acc 80.0%  test loss 0.6000 acc 75.0%  2.0 s, "
                                  "719 img/s, lr 0.05, run ETA 1:05")


def test_plain_progress_says_a_long_epoch_every_so_often(monkeypatch):
    import netdsl.train.progress as progress
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    out = io.StringIO()
    p = Progress(out)
    p.start(2, 3, 1000)
    p.step(400, 1000, 0.25, 0.9, 0.01, 800.0, 3700.0)
    assert out.getvalue() == "epoch 2/3 400/1,000 images  loss 0.2500 acc 90.0% lr 0.01 run ETA 1:01:40  800 img/s\n"


def test_clock():
    assert (clock(5), clock(65), clock(3725)) == ("0:05", "1:05", "1:02:05")


def test_fitting_the_data_is_said_once_and_a_mismatch_is_warned(tmp_path, capsys):
    f = tmp_path / "wide.net"
    f.write_text("network wide\ninput 1x16x16\nconv 4 3x3 pad 1\nrelu\npool max 4x4\nfc 12\n")
    assert main(["train", str(f), "--epochs", "1", "--batch", "64"]) == 0
    err = capsys.readouterr().err
    assert err.count("resized from 8x8 to 16x16") == 1
    assert "wide has 12 outputs, digits has 10 classes: outputs 10-11 never match a label" in err
    assert "ends in 'fc2' (fc), not in a head" in err and "softmax cross-entropy" in err


def test_a_side_output_ending_in_a_feature_map_is_refused_at_its_line(tmp_path, capsys):
    f = tmp_path / "side.net"
    f.write_text("network s\ninput 1x8x8\nconv 4 3x3 pad 1\nside { conv 3 1x1 }\nfc 10\nsoftmax\n")
    assert main(["train", str(f), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "side output" in err and "a feature map of 3x8x8" in err and f"{f}:4:" in err
    assert "internal error" not in err


def test_help_shows_every_default_and_what_the_schedule_does(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default 20)", "(default 16)", "(default 0.05)", "(default 0.9)", "(default 0.0005)",
                    "(default cosine)", "(default 0;", "(default 50;"):
        assert default in text, default
    assert "from --lr down to 0 along half a cosine over the planned --epochs" in text
