"""Bad programs: each gives one clear message at the right place, never a traceback."""
import pytest

import netdsl
from netdsl import NetError

INPUT = "input 3x32x32\n"

# (id, source, words the message must contain, line, column)
BAD = [
    ("misspelt op", INPUT + "cnov 6 5x5", "unknown layer or block 'cnov'", 2, 1),
    ("unknown op", INPUT + "frobnicate 3", "unknown layer or block 'frobnicate'", 2, 1),
    ("missing filter count", INPUT + "conv", "conv needs a filter count", 2, 1),
    ("missing kernel", INPUT + "conv 6", "conv needs a kernel size", 2, 1),
    ("zero filters", INPUT + "conv 0 3x3", "must be a positive whole number, not 0", 2, 6),
    ("negative filters", INPUT + "conv -4 3x3", "must be a positive whole number, not -4", 2, 6),
    ("fractional filters", INPUT + "conv 2.5 3x3", "not 2.5", 2, 6),
    ("zero kernel", INPUT + "conv 6 0x3", "the kernel size must be a positive whole number", 2, 8),
    ("zero stride", INPUT + "conv 6 3x3 /0", "the stride must be a positive whole number, not 0", 2, 12),
    ("kernel larger than padded input", "input 3x5x5\nconv 6 7x7", "larger than its padded input 5", 2, 1),
    ("output size zero", "input 3x4x4\nconv 2 3x3\nconv 2 3x3", "larger than its padded input 2", 3, 1),
    ("pool larger than input", "input 3x2x2\npool max 3x3", "pool window 3 is larger", 2, 1),
    ("groups not dividing channels", INPUT + "conv 8 3x3 groups 2", "groups 2 does not divide the 3 input channels", 2, 1),
    ("groups not dividing filters", "input 4x8x8\nconv 6 3x3 groups 4", "groups 4 does not divide the 6 filters", 2, 1),
    ("concat of mismatched sizes", INPUT + "concat {\n { conv 4 3x3 }\n { conv 4 1x1 }\n}",
     "concat needs the same height and width", 2, 1),
    ("add of mismatched shapes", INPUT + "add {\n { conv 4 3x3 pad 1 }\n { conv 8 1x1 }\n}",
     "add needs the same shape in every branch, got 4x32x32, 8x32x32", 2, 1),
    ("merge with one branch", INPUT + "concat {\n { conv 4 1x1 }\n}", "concat needs at least two branches", 2, 1),
    ("empty branch", INPUT + "add {\n { }\n shortcut\n}", "an empty branch", 3, 2),
    # shortcut in a concat is the input itself (DenseNet, issue 26); option A's zero channels need an add
    ("shortcut zeropad in concat", INPUT + "concat {\n { conv 4 1x1 }\n shortcut zeropad\n}", "'shortcut zeropad' belongs in an add", 4, 2),
    ("unknown block", INPUT + "incept 3", "unknown layer or block 'incept'", 2, 1),
    ("too many block arguments", INPUT + "block b(c) { conv c 3x3 }\nb 1 2", "takes 1 argument(s), got 2", 3, 5),
    ("missing block argument", INPUT + "block b(c, d) { conv c 3x3 }\nb 1", "needs a value for 'd'", 3, 1),
    ("unknown block keyword", INPUT + "block b(c, s=1) { conv c 3x3 /s }\nb 1 t=2", "has no parameter 't'", 3, 5),
    ("block instantiates itself", INPUT + "block b(c) { b c }\nb 1", "block 'b' instantiates itself", 2, 14),
    ("blocks instantiate each other", INPUT + "block a() { b }\nblock b() { a }\na",
     "instantiates itself (a -> b -> a)", 3, 13),
    ("duplicate labels", INPUT + "x: conv 3 3x3\nx: relu", "the name 'x' is already used", 3, 1),
    ("duplicate block", INPUT + "block b() { relu }\nblock b() { tanh }\nb", "block 'b' is defined twice", 3, 7),
    ("empty file", "", "empty network", 1, 1),
    ("only comments", "# nothing here\n\n   # still nothing\n", "empty network", 1, 1),
    ("no input line", "conv 3 3x3", "no 'input' line", 1, 1),
    ("input after layers", "conv 3 3x3\ninput 3x8x8", "'input' must come before", 2, 7),
    ("two inputs", "input 3x8x8\ninput 3x8x8\nrelu", "a second 'input' line", 2, 7),
    ("no layers", "input 3x8x8\n", "the network has no layers", 1, 7),
    ("unclosed brace", INPUT + "concat {\n { conv 4 3x3 \n", "unexpected end of file", 3, 15),
    ("stray closing brace", INPUT + "relu }", "unexpected '}'", 2, 6),
    ("stray character", INPUT + "conv 3 3x3 @", "unexpected character '@'", 2, 12),
    ("spaces in a size", INPUT + "conv 3 3 x 3", "too many arguments for conv", 2, 10),
    ("stride on relu", INPUT + "relu /2", "relu takes no stride", 2, 6),
    ("misspelt setting", INPUT + "lrn 5 alfa=1", "lrn has no setting 'alfa='", 2, 7),
    ("bad pool mode", INPUT + "pool mx 2x2", "the pooling mode must be 'max' or 'avg', not 'mx'", 2, 6),
    ("dropout out of range", INPUT + "dropout 1.5", "the drop probability must be from 0 up to", 2, 9),
    ("conv after fc", INPUT + "fc 10\nconv 3 3x3", "conv needs a CxHxW feature map", 3, 1),
    ("unknown name outside a block", INPUT + "conv c 3x3", "unknown name 'c'", 2, 6),
    ("misspelt block parameter", INPUT + "block b(chans) { conv chan 1x1 }\nb 4", "unknown name 'chan'", 2, 23),
    ("pad same with an even kernel", INPUT + "conv 3 2x2 pad same", "pad same needs an odd kernel", 2, 1),
    ("absurd input", "input 3x100000x100000\nconv 3 3", "111.8 GiB", 1, 7),
    ("absurd layer", INPUT + "conv 99999999 3x3", "over the 8.0 GiB memory limit", 2, 1),
    ("absurd parameters", "input 100000\nfc 100000000", "of parameters", 2, 1),
    ("absurd repeat", INPUT + "repeat 1000000000 relu", "absurdly many copies", 2, 8),
    ("repeat of a negative count", INPUT + "repeat -1 relu", "whole number of copies", 2, 8),
    ("option without value", INPUT + "conv 3 3x3 pad", "'pad' needs a value", 2, 12),
    ("option given twice", INPUT + "conv 3 3x3 pad 1 pad 2", "'pad' is given twice", 2, 18),
    ("flat input of two dims", "input 3x8\nrelu", "the input is CxHxW", 1, 7),
    ("zero input size", "input 3x0x8\nrelu", "every input size must be positive", 1, 7),
    ("a block named like a layer", INPUT + "block conv() { relu }\nrelu", "a block cannot be called 'conv'", 2, 7),
]


@pytest.mark.parametrize("source,words,line,column", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_program(source, words, line, column):
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "bad.net")
    err = info.value
    assert words in err.message
    assert (err.span.line, err.span.column) == (line, column), err.render(source)
    rendered = err.render(source)
    assert rendered.startswith(f"bad.net:{line}:{column}: error: ")
    assert "Traceback" not in rendered


def test_there_are_at_least_thirty_bad_programs():
    assert len(BAD) >= 30


@pytest.mark.parametrize("source,hint", [
    (INPUT + "cnov 6 5x5", "did you mean 'conv'?"),
    (INPUT + "lrn 5 alfa=1", "did you mean 'alpha'?"),
    (INPUT + "conv 3 3 x 3", "sizes are written without spaces"),
    ("input 3x28x28\nconcat {\n { conv 4 5x5 }\n { conv 4 1x1 }\n}", "pad 2 keeps 28x28"),
    ("input 3x5x5\nconv 6 7x7", "pad 1 would make it fit"),
    (INPUT + "conv 8 3x3 groups 2", "choose groups from 1, 3"),
])
def test_hints_suggest_a_fix(source, hint):
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source)
    assert hint in (info.value.hint or "")


def test_caret_sits_under_the_culprit():
    src = INPUT + "conv 6 5x5 /0"
    with pytest.raises(NetError) as info:
        netdsl.compile_source(src, "f.net")
    lines = info.value.render(src).splitlines()
    assert lines[1].endswith("conv 6 5x5 /0")
    caret = lines[2]
    assert caret.index("^") - caret.index("|") == lines[1].index("/0") - lines[1].index("|")


def test_memory_limit_is_configurable():
    src = "input 3x256x256\nconv 64 3x3 pad 1"  # 64*256*256*4 bytes = 16 MiB
    netdsl.compile_source(src)
    with pytest.raises(NetError, match="over the 8.0 MiB memory limit"):
        netdsl.compile_source(src, memory_limit=8 * 2**20)


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.net"
    p.write_bytes("input 3x8x8\n# caf\xe9\nrelu\n".encode("latin-1"))
    with pytest.raises(NetError) as info:
        netdsl.load(p)
    assert "not UTF-8" in info.value.message
    assert (info.value.span.line, info.value.span.column) == (2, 6)


def test_binary_file(tmp_path):
    p = tmp_path / "blob.net"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(NetError):
        netdsl.load(p)


def test_missing_file():
    with pytest.raises(NetError, match="no such file"):
        netdsl.load("does/not/exist.net")


def test_deep_nesting_is_an_error_not_a_crash():
    assert len(netdsl.compile_source(INPUT + "{ " * 50 + "relu" + " }" * 50).layers) == 2
    with pytest.raises(NetError, match="nests braces too deeply"):
        netdsl.compile_source(INPUT + "{ " * 3000 + "relu" + " }" * 3000)
