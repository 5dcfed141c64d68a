"""Every error (issue 22): `netdsl check` reports every independent mistake in a file, each at its
file:line:col with a caret, then how many: syntax errors recovered line by line; then, in a file
that parses, every name and argument error; then, in one that expands, every shape error that
does not follow from an earlier one. Lines and columns below are counted by hand."""
import pytest

import netdsl
from netdsl.cli import main
from netdsl.errors import MAX_ERRORS, NetError

MISSPELT = """input 3x32x32
conv 6 5x5
rleu
pool max 2x2
cnv 16 5x5
relu
fc 120
tanhh
fc 10
"""


def _errors(source):
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "x.net")
    return info.value


def _places(err):
    return [(d.span.line, d.span.column, d.message) for d in err.diagnostics]


def test_three_misspelt_layers_are_three_errors():
    err = _errors(MISSPELT)
    assert _places(err) == [(3, 1, "unknown layer or block 'rleu'"), (5, 1, "unknown layer or block 'cnv'"),
                            (8, 1, "unknown layer or block 'tanhh'")]
    assert [d.hint for d in err.diagnostics] == ["did you mean 'relu'?", "did you mean 'conv'?",
                                                 "did you mean 'tanh'?"]
    assert str(err) == err.message == "unknown layer or block 'rleu'"  # the Python API: the first one


def test_check_prints_each_with_its_caret_and_the_count(tmp_path, capsys):
    path = tmp_path / "three.net"
    path.write_text(MISSPELT)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    for line, word in ((3, "rleu"), (5, "cnv"), (8, "tanhh")):
        assert f"{path}:{line}:1: error: unknown layer or block '{word}'" in err
        assert f"{line:>6} | {word}" in err and f"       | {'^' * len(word)}\n" in err
    assert err.rstrip().endswith("3 errors")
    assert "Traceback" not in err


def test_syntax_errors_are_recovered_line_by_line():
    source = ("input 3x32x32\n"
              "conv 6 5x5 pad=\n"           # line 2: the value is missing at the end of the line
              "relu\n"
              "fc 10 +\n"                   # line 4: '+' with nothing after it
              "conv 4 3x3 pad 1 -1\n"       # line 5: a negative number (caught as the tree is built)
              "conv (4 5 3x3\n"             # line 6: a parenthesis never closed
              "fc 10\n")
    assert [(line, col) for line, col, _ in _places(_errors(source))] == [(2, 16), (4, 8), (5, 18), (6, 9)]


def test_a_bad_line_inside_braces_does_not_unbalance_the_rest():
    source = ("input 3x32x32\n"
              "add {\n"
              "  { conv 3 3x3 pad= ; relu }\n"   # line 3, column 21: ';' where the value should be
              "  shortcut\n"
              "}\n"
              "concat {\n"
              "  { conv 8 1x1 x= }\n"            # line 7, column 19: '}' where the value should be
              "  { conv 8 1x1 }\n"
              "}\n"
              "fc 10\n")
    assert [(line, col) for line, col, _ in _places(_errors(source))] == [(3, 21), (7, 19)]


def test_a_bad_merge_line_keeps_its_branches_branches():
    source = ("input 3x32x32\n"
              "add { = \n"          # line 2, column 7: '=' after the brace
              "  { conv 3 3x3 pad 1 }\n"
              "  shortcut\n"        # still a branch of an add: no error here
              "}\n")
    assert [(line, col) for line, col, _ in _places(_errors(source))] == [(2, 7)]


def test_name_errors_wait_until_the_file_parses():
    """A name is only judged in a file that parses: the repaired text is not the user's network."""
    err = _errors("input 3x32x32\nconv 6 5x5 pad=\nrleu\n")
    assert _places(err) == [(2, 16, "unexpected end of line")]


def test_argument_and_definition_errors_are_all_reported():
    source = ("input 3x32x32\n"
              "block b(c, c) {\n"         # line 2, column 12: the parameter twice
              "  conv c 3x3\n"
              "}\n"
              "block b(d) {\n"            # line 5, column 7: the block twice
              "  relu\n"
              "}\n"
              "conv 4 3x3 /0\n"           # line 8, column 12: stride 0
              "pool max 2x2 mode=avg\n"   # line 9, column 14: no such setting
              "fc 10 nobais\n")           # line 10, column 7: a misspelt flag
    err = _errors(source)
    assert [(line, col) for line, col, _ in _places(err)] == [(2, 12), (5, 7), (8, 12), (9, 14), (10, 7)]
    assert "did you mean 'nobias'?" in err.diagnostics[-1].hint


def test_a_mistake_in_a_block_is_reported_once_however_often_it_is_used():
    source = "input 3x32x32\nblock b(c) {\n  conv c 3x3 pad 1\n  rleu\n}\nrepeat 9 b 4\nb 8\nfc 10\n"
    assert _places(_errors(source)) == [(4, 3, "unknown layer or block 'rleu'")]


def test_independent_shape_errors_are_all_reported_and_their_consequences_are_not():
    source = ("input 3x32x32\n"
              "conv 8 3x3\n"                   # 8x30x30
              "aux1: side { conv 4 31x31 }\n"  # line 3: a 31 window on 30: too large
              "aux2: side { pool max 2x2; conv 4 16x16 }\n"  # line 4: pool gives 15x15, then 16 > 15
              "conv 8 40x40\n"                 # line 5: too large for 30x30
              "conv 8 3x3\n"                   # follows from line 5: not reported
              "fc 10\n")
    err = _errors(source)
    assert [(line, col) for line, col, _ in _places(err)] == [(3, 14), (4, 28), (5, 1)]
    assert all("larger than its padded input" in m for _, _, m in _places(err))


def test_a_file_of_mistakes_stops_at_the_bound_and_says_so(tmp_path, capsys):
    path = tmp_path / "many.net"
    path.write_text("input 3x8x8\n" + "rleu\n" * (MAX_ERRORS + 30))
    err = _errors(path.read_text())
    assert len(err.diagnostics) == MAX_ERRORS and err.stopped_early
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().err.rstrip().endswith(
        f"{MAX_ERRORS} errors; netdsl stopped looking there: fix these and check again")


def test_one_error_is_shown_as_before():
    err = _errors("input 3x32x32\nconv 6 5x5\nrleu\n")
    assert len(err.diagnostics) == 1
    assert err.render() == ("x.net:3:1: error: unknown layer or block 'rleu'\n"
                            "     3 | rleu\n"
                            "       | ^^^^\n"
                            "  hint: did you mean 'relu'?")
