"""Issue 14, class 1: nothing the user wrote is read as something else.

Each case asserts the message, the place (line:column) and, through the CLI, the exit status."""
import numpy as np
import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main
from netdsl.errors import render_diagnostic

IN = "input 3x8x8\n"

# (id, source, words the message must contain, line, column)
REFUSED = [
    ("glued slash after a parameter", IN + "block b(c) { conv c/2 1x1 }\nb 8\nflatten",
     "a '/' right after a value", 2, 20),
    ("glued slash after a number", IN + "conv 8/2 1x1\nflatten", "a '/' right after a value", 2, 7),
    ("glued slash after a keyword value", IN + "block b(c) { lrn 3 k=c/2 }\nb 4\nflatten", "a '/' right after", 2, 23),
    ("space then minus: two numbers, not a difference", IN + "conv 4 3x3 pad 1 -1\nflatten",
     "a negative number", 2, 18),
    ("a negative pad", IN + "conv 4 3x3 pad -1\nflatten", "a negative number", 2, 16),
    ("a negative kernel", IN + "conv 3 -3x3\nflatten", "a negative number", 2, 8),
    ("a negative stride", IN + "conv 3 3x3 /-1\nflatten", "the stride must be a positive whole number, not -1", 2, 12),
    ("a negative in parentheses", IN + "conv 4 3x3 pad (0-1)\nflatten", "must be a whole number, 0 or more, not -1", 2, 16),
    ("spaced plus", IN + "block b(c) { conv c + 1 3x3 }\nb 2\nflatten", "spaces around '+' inside an argument", 2, 19),
    ("spaced repeat count", IN + "block b(n) { repeat n - 1 relu }\nb 3\nflatten", "spaces around '-'", 2, 21),
    ("fractional division", IN + "block b(c) { conv (c/3) 1x1 }\nb 8\nflatten", "not 2.66667", 2, 19),
    ("division by zero", IN + "block b(c) { conv (c/0) 1x1 }\nb 8\nflatten", "division by zero", 2, 20),
    ("pool window wholly in the padding", IN + "pool max 2x2 pad 5\nflatten",
     "pool pad 5 is not less than its 2-wide window (height): the first window covers padding rows -5..-4 only", 2, 1),
    ("pool pad as wide as the window, one axis", IN + "pool avg 3x2 pad 1x2\nflatten",
     "pool pad 2 is not less than its 2-wide window (width)", 2, 1),
    ("global pool with a pad", IN + "pool avg global pad 1\nflatten", "a global pool covers the whole map", 2, 1),
    ("global pool with a stride", IN + "pool max global /2\nflatten", "takes no pad, stride", 2, 1),
    ("lrn k=0 (0/0 after a ReLU)", IN + "relu\nlrn 3 k=0\nflatten", "k must be a positive number", 3, 7),
    ("infinite alpha", IN + "lrn 3 alpha=1e999\nflatten", "alpha must be a number from 0 to 1,000,000, not inf", 2, 7),
    ("absurd beta", IN + "lrn 3 beta=1e9\nflatten", "beta must be a number from 0 to 1,000,000, not 1e+09", 2, 7),
    ("NaN eps", IN + "bn eps=(1e999-1e999)\nflatten", "eps must be a positive number, at most 1,000,000, not nan", 2, 4),
    ("side output named as the trunk's", IN + "output: side { fc 3; softmax }\nfc 5\nsoftmax",
     "'output' names the trunk's output", 2, 1),
]


@pytest.mark.parametrize("source, words, line, column", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_the_place(source, words, line, column):
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "t.net")
    err = info.value
    assert words in err.message, err.message
    assert (err.span.line, err.span.column) == (line, column), err.render(source)


def test_refusals_exit_1_with_a_caret(tmp_path, capsys):
    f = tmp_path / "bad.net"
    f.write_text(IN + "conv 4 3x3 pad 1 -1\nflatten")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:18: error: a negative number" in err
    assert "     2 | conv 4 3x3 pad 1 -1\n       |                  ^^" in err
    assert "so '1 -1' is two of them" in err


ACCEPTED = [
    # (source, layer, attribute, value): what each reads as
    (IN + "block b(c) { conv (c/2) 1x1 }\nb 8\nflatten", "b1/conv1", "out", 4),
    (IN + "block b(c) { conv (c / 2 + 1) 1x1 }\nb 8\nflatten", "b1/conv1", "out", 5),
    (IN + "block b(c) { conv c 1x1 /2 }\nb 8\nflatten", "b1/conv1", "stride", (2, 2)),
    (IN + "pool max 3x3/2\nflatten", "pool1", "stride", (2, 2)),
    (IN + "block b(n) { conv 4*n 3x3 pad n-1 }\nb 2\nflatten", "b1/conv1", "pad", (1, 1)),
    (IN + "pool max 3x3 /1 pad 1\nflatten", "pool1", "pad", (1, 1)),  # pad = half the window: fine
    (IN + "lrn 3 alpha=0.0001 beta=0.75 k=2\nflatten", "norm1", "k", 2.0),
]


@pytest.mark.parametrize("source, layer, attr, value", ACCEPTED)
def test_what_is_written_is_what_is_read(source, layer, attr, value):
    net = netdsl.compile_source(source)
    assert net.graph.nodes[layer]["attrs"][attr] == value


LINES = ("input 3x8x8", "conv 4 3x3 # a comment", "relu", "flatten", "cnov 2")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending_numbers_lines_alike(newline):
    source = newline.join(LINES)
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "t.net")
    assert (info.value.span.line, info.value.span.column) == (5, 1)
    shown = info.value.render(source)
    assert "     5 | cnov 2\n       | ^^^^" in shown


def test_a_lone_carriage_return_after_a_comment_ends_it():
    net = netdsl.compile_source("input 3x8x8\nconv 4 3x3 # comment\rrelu\nflatten")
    assert [l.op for l in net.layers] == ["input", "conv", "relu", "flatten"]


@pytest.mark.parametrize("char", ["\f", "\v", "\u2028", "\u2029", "\x85"])
def test_other_separators_stay_inside_their_line(char):
    """Only CR, LF and CRLF end a line: a form feed is whitespace, the others are refused, and
    the caret lands on the line and column where they stand."""
    source = f"input 3x8x8\nconv 4 3x3{char} pad 1\ncnov"
    try:
        netdsl.compile_source(source, "t.net")
    except NetError as err:
        if char == "\f":
            assert (err.span.line, err.span.column) == (3, 1)
        else:
            assert (err.span.line, err.span.column) == (2, 11), err.render(source)
            assert "     2 | conv 4 3x3" in err.render(source)
    else:
        raise AssertionError("cnov was accepted")


def test_utf8_errors_are_placed_by_the_same_line_rule(tmp_path):
    f = tmp_path / "t.net"
    f.write_bytes(b"input 3x8x8\rconv 4 3x3\r\xffrelu\n")
    with pytest.raises(NetError) as info:
        netdsl.load(f)
    assert (info.value.span.line, info.value.span.column) == (3, 1)


def test_checkpoint_keys_do_not_depend_on_labels(tmp_path):
    """A layer labelled `optim` (or anything) saves and loads as its own network."""
    src = IN + "optim: conv 4 3x3\nrelu\nfc 3\nsoftmax"
    net = netdsl.compile_source(src)
    model = netdsl.Model(net, device="cpu", seed=0)
    opt = netdsl.SGD(model)
    model.loss(np.ones((2, 3, 8, 8), np.float32), [0, 1])
    model.backward()
    opt.step()
    path = tmp_path / "ck.safetensors"
    model.save(path, opt)
    again = netdsl.Model(net, device="cpu", seed=3)
    opt2 = netdsl.SGD(again)
    again.load(path, opt2)
    np.testing.assert_array_equal(again.parameters()["optim.weight"], model.parameters()["optim.weight"])
    np.testing.assert_array_equal(opt2.velocity["optim.weight"], opt.velocity["optim.weight"])


def test_the_trunk_is_the_output_whatever_the_labels():
    src = IN + "aux: side { fc 3; output: softmax }\nconv 4 3x3\nfc 5\nsoftmax"
    net = netdsl.compile_source(src)
    assert net.outputs[0] == ("output", "softmax1")
    model = netdsl.Model(net, device="cpu")
    assert model(np.ones((2, 3, 8, 8), np.float32)).shape == (2, 5)


def test_long_lines_and_names_are_shown_cut_with_their_length():
    name = "x" * 1_000_000
    source = IN + name + " 3"
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "t.net")
    shown = render_diagnostic(info.value.diagnostic, source, "error")
    assert len(shown) < 2000
    assert "(1,000,002 characters)" in shown  # the source line's length
    head = shown.splitlines()[0]
    assert head.startswith("t.net:2:1: error: unknown layer or block 'xxx") and head.endswith("characters)")
    assert len(head) <= 450
