"""Carets where the mistake is (issue 21, left from the first hardening round): nesting too deep
is placed where it passes the limit, a block defined inside another says that blocks are
defined at the top level, and text read from a pipe shows its line under the error. Columns
are counted by hand."""
import os

import pytest

import netdsl
from netdsl.cli import main
from netdsl.errors import NetError
from netdsl.parser import MAX_NESTING


def _error(source):
    with pytest.raises(NetError) as info:
        netdsl.compile_source(source, "x.net")
    return info.value


@pytest.mark.parametrize("kind, line2, column", [
    # the 101st '{' of "{ { { ...": column 1 + 2 * 100
    ("braces", "{ " * (MAX_NESTING + 20) + "relu" + " }" * (MAX_NESTING + 20), 1 + 2 * MAX_NESTING),
    # the 101st '(' after "conv ": column 6 + 100
    ("parentheses", "conv " + "(" * (MAX_NESTING + 20) + "4" + ")" * (MAX_NESTING + 20) + " 3x3", 6 + MAX_NESTING),
    # the 101st "repeat 2 " (9 characters each): column 1 + 9 * 100
    ("repeats", "repeat 2 " * (MAX_NESTING + 20) + "relu", 1 + 9 * MAX_NESTING),
])
def test_nesting_too_deep_is_placed_where_it_passes_the_limit(kind, line2, column):
    err = _error("input 1x8x8\n" + line2 + "\n")
    assert f"nests {kind} too deeply" in err.message
    assert (err.span.line, err.span.column) == (2, column)


def test_nesting_up_to_the_limit_compiles():
    depth = MAX_NESTING
    assert len(netdsl.compile_source("input 1x8x8\n" + "{ " * depth + "relu" + " }" * depth).layers) == 2
    assert len(netdsl.compile_source("input 1x8x8\n" + "repeat 1 " * depth + "relu").layers) == 2


def test_repeats_on_separate_lines_do_not_add_up():
    """A repeat nests its item only to the end of its statement."""
    text = "input 1x8x8\n" + "repeat 1 relu\n" * (MAX_NESTING * 3)
    assert len(netdsl.compile_source(text).layers) == 1 + MAX_NESTING * 3


@pytest.mark.parametrize("source, place, where", [
    ("input 1x8x8\nblock a() {\n  block b() { relu }\n  relu\n}\na\n", (3, 3), "inside block 'a'"),
    ("input 1x8x8\nblock a(c) {\n  conv c 1x1\n  block b(d=2) {\n    relu\n  }\n}\na 4\n", (4, 3), "inside block 'a'"),
    ("input 1x8x8\nblock a() { relu; block b() { relu } }\na\n", (2, 19), "inside block 'a'"),
    ("input 1x8x8\nconcat {\n  { relu }\n  { x: block b() { relu } }\n}\n", (4, 8), "inside braces"),
])
def test_a_block_inside_another_is_told_that_blocks_are_top_level(source, place, where):
    err = _error(source)
    assert err.message == f"block 'b' is defined {where}: blocks are defined at the top level"
    assert (err.span.line, err.span.column, err.span.end_column - err.span.column) == (*place, len("block"))


def test_text_from_a_pipe_shows_its_line(capsys):
    """`netdsl check <(printf ...)`: the pipe is read once; the error shows the line from that read."""
    read, write = os.pipe()
    os.write(write, b"input 1x8x8\nconv 4 3x3 /0\n")
    os.close(write)
    try:
        assert main(["check", f"/dev/fd/{read}"]) == 1
    finally:
        os.close(read)
    err = capsys.readouterr().err
    assert f"/dev/fd/{read}:2:12: error: the stride must be a positive whole number, not 0" in err
    assert "     2 | conv 4 3x3 /0\n       |            ^^" in err


def test_the_python_error_keeps_the_text_it_was_compiled_from():
    err = _error("input 1x8x8\nconv 4 3x3 /0\n")
    assert err.source == "input 1x8x8\nconv 4 3x3 /0\n"
    assert "     2 | conv 4 3x3 /0" in err.render()
