"""A depthwise conv runs a kernel of its own (dense.py's depthwise variants), so the places that
list each conv's algorithm say so instead of asking conv.py's tuner about it: `netdsl run` (it
used to stop with an internal error on MobileNet v2: the depthwise kernel saves no conv.py path),
`netdsl run --infer`, and `summary --optimised`. Works with or without the compiled kernels."""
import re

import pytest

from netdsl.cli import main

NET = """network tiny_mobile
input 8x12x12
conv 8 1x1
conv 8 3x3 pad 1 groups 8
bn
relu6
conv 16 1x1
pool avg global
flatten
fc 4
softmax
"""


@pytest.fixture
def net(tmp_path):
    f = tmp_path / "tiny_mobile.net"
    f.write_text(NET)
    return str(f)


def _rows(text: str) -> dict[str, str]:
    """layer -> 'algorithm source' from the listing under 'conv algorithms' (run, summary) or after
    the buffers line (run --infer: `conv1: algorithm`)."""
    listing = re.split(r"conv algorithms|buffers:", text)[-1].splitlines()[1:]
    return {m[1]: m[2] for line in listing if (m := re.match(r"\s+(conv\d+)[: ]+(.+?)\s*$", line))}


@pytest.mark.parametrize("argv", [["run", "--batch", "2", "--repeat", "1"], ["run", "--infer", "--batch", "1"],
                                  ["summary", "--optimised"]])
def test_a_depthwise_conv_is_listed_as_its_own_kernel(net, capsys, argv):
    assert main([argv[0], net, *argv[1:]]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["conv2"].split()[0] == "depthwise", rows
    assert rows["conv1"].split()[0] != "depthwise" and rows["conv3"].split()[0] != "depthwise"
