"""The command line: output, JSON keys, exit status 0/1/2, and no tracebacks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = str(ROOT / "nets" / "alexnet.net")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(capsys):
    code, out, _ = run(capsys, "check", ALEXNET)
    assert code == 0
    assert "ok" in out and "62,378,344 parameters" in out


def test_summary_table_has_totals_and_conventions(capsys):
    code, out, _ = run(capsys, "summary", ALEXNET)
    assert code == 0
    assert "conv 96 11x11 /4" in out and "96x55x55" in out and "34,944" in out
    assert "62,378,344" in out and "1,135,256,096" in out
    assert "conventions: MACs: one multiply-add = 1" in out


def test_summary_json_keys(capsys):
    code, out, _ = run(capsys, "summary", str(ROOT / "nets" / "googlenet.net"), "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("network", "input", "layers", "outputs", "totals"):
        assert key in data
    assert data["network"] == "googlenet" and data["input"] == [3, 224, 224]
    layer = next(l for l in data["layers"] if l["name"] == "conv1")
    for key in ("name", "op", "shape", "params", "macs", "rf"):
        assert key in layer
    assert layer["shape"] == [64, 112, 112] and layer["rf"]["size"] == [7, 7]
    assert {o["name"] for o in data["outputs"]} == {"output", "aux1", "aux2"}
    for key in ("params", "macs", "activations"):
        assert key in data["totals"]
    assert data["totals"]["params"] == 13_378_280


def test_explain_in_the_lectures_words(capsys):
    code, out, _ = run(capsys, "explain", ALEXNET, "conv1")
    assert code == 0
    assert "output (227 - 11)/4 + 1 = 55 -> 96x55x55" in out
    assert "weights 11*11*3*96 = 34,848" in out and "biases 96" in out
    assert "receptive field 1 + (11 - 1)*1 = 11" in out


def test_explain_unknown_layer_is_an_input_error(capsys):
    code, _, err = run(capsys, "explain", ALEXNET, "conv9")
    assert code == 1
    assert "no layer, block, group or branch named 'conv9'" in err and "did you mean" in err


def test_input_error_exit_1_with_caret(tmp_path, capsys):
    bad = tmp_path / "bad.net"
    bad.write_text("input 3x32x32\nconv 6 5x5\ncnov 16 5x5\n")
    code, _, err = run(capsys, "check", str(bad))
    assert code == 1
    assert f"{bad}:3:1: error: unknown layer or block 'cnov'" in err
    assert "^^^^" in err and "did you mean 'conv'?" in err
    assert "Traceback" not in err


def test_usage_errors_exit_2_and_name_the_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["summary", ALEXNET, "--memory-limit", "12XB"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--memory-limit" in err and "12XB" in err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_warnings_go_to_stderr(tmp_path, capsys):
    f = tmp_path / "a224.net"
    f.write_text("input 3x224x224\nconv 96 11x11 /4\n")
    code, out, err = run(capsys, "check", str(f))
    assert code == 0
    assert "warning: conv output height and width: (224 - 11)/4 + 1 = 54.25, floored to 54" in err


def test_print_after_all(capsys):
    code, _, err = run(capsys, "check", str(ROOT / "nets" / "lenet5.net"), "--print-after-all")
    assert code == 0
    for name in ("infer_shapes", "lower_shortcuts", "count", "receptive_field"):
        assert f"IR after {name}" in err
    assert "%c1 = conv(%input)" in err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "netdsl", "check", ALEXNET], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
