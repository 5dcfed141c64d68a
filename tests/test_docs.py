"""The README and every page in docs/ run as shown (issue 22).

- Every ```python block runs, in order per page, in a folder holding the clone's nets/.
- Every command line a page writes out (`$ netdsl ...` in a fenced block, or a line of a code
  block that starts with `netdsl `) parses with netdsl's own argument parser and passes its usage
  checks, so no page names a command or flag that does not exist. A synopsis line (with
  placeholders such as FILE or [--json]) is checked by test_the_synopsis_lists_every_flag.
- Commands that read only the clone's files and are quick (check, summary, explain, draw, page,
  diff, export, import) run, and where a page shows their output after `$`, what they print now
  holds every line shown (a `...` line stands for lines left out).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from netdsl.cli.main import build_parser, commands, main
from netdsl.cli.usage import check_flags

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = {"check", "summary", "explain", "draw", "page", "diff", "export", "import"}
FLAG_VALUES = {"LR", "TB", "BT", "RL"}  # --rankdir's values, not placeholders
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, and ('', body) of every indented one."""
    found = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    outside = FENCE.sub("", text)
    for m in re.finditer(r"(?:^(?: {4}|\t).*\n?)+", outside, re.M):
        found.append(("", "\n".join(line[4:] for line in m.group(0).splitlines())))
    return found


def _commands(text: str) -> list[tuple[str, list[str] | None]]:
    """(command line, the output shown after it or None) for every netdsl command on a page."""
    out = []
    for lang, body in _blocks(text):
        if lang == "python":
            continue
        lines = body.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ netdsl "):
                shown = []
                for follow in lines[i + 1:]:
                    if follow.startswith("$ "):
                        break
                    shown.append(follow)
                out.append((line[2:], shown))
            elif line.startswith("netdsl "):
                out.append((line, None))
    return out


def _synopsis(command: str) -> bool:
    """A line with placeholders (FILE, OUT.svg, [--json], a|b, ...) describes, it does not run."""
    if any(mark in command for mark in ("[", "|", "...", "<(")):
        return True
    words = shlex.split(command.split("#")[0])
    for word in words:
        for part in re.split(r"[=:/]", word):
            if part not in FLAG_VALUES and re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\w+)?", part):
                return True
    return False


def _argv(command: str) -> list[str]:
    """The arguments, without a trailing comment or the shell's redirection of the output."""
    return shlex.split(command.split("  #")[0].split(" > ")[0])[1:]


def _holds(printed: str, shown: list[str], where: str) -> None:
    """Every line the page shows (a `...` line stands for lines left out) is in what was printed."""
    flat = " ".join(printed.split())
    for line in shown:
        text = " ".join(line.split())
        if text and not text.startswith("..."):
            assert text in flat, f"{where} no longer prints\n  {line}\nit prints:\n{printed}"


def _cases():
    for page in PAGES:
        for command, shown in _commands(page.read_text()):
            if not _synopsis(command):
                yield pytest.param(page, command, shown, id=f"{page.name}: {command[:60]}")


def _workspace(tmp_path: Path) -> Path:
    for name in ("nets", "tests", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _python_blocks(page: Path) -> list[str]:
    return [body for lang, body in _blocks(page.read_text()) if lang == "python"]


# only the pages that hold Python: a page without any has nothing to run (and no skip to read)
@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(page, tmp_path, capsys):
    blocks = _python_blocks(page)
    cwd = os.getcwd()
    os.chdir(_workspace(tmp_path))
    try:
        scope: dict = {}
        for block in blocks:
            exec(compile(block, str(page), "exec"), scope)
    finally:
        os.chdir(cwd)
    if page.name == "README.md":
        assert "(6, 28, 28) 61706" in capsys.readouterr().out
        assert (tmp_path / "lenet5.safetensors").is_file() and (tmp_path / "lenet5.onnx").is_file()


def test_the_pages_hold_commands():
    assert len(list(_cases())) >= 20


@pytest.mark.parametrize("page, command, shown", list(_cases()))
def test_every_command_line_is_one_netdsl_takes(page, command, shown, tmp_path, capsys):
    parser = build_parser()
    argv = _argv(command)
    refused = bool(shown) and any("error:" in line for line in shown)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        err = capsys.readouterr().err
        if refused and stop.code == 2:  # a page showing a usage mistake: refused as shown
            _holds(err, shown, f"{page.name}: `{command}`")
            return
        pytest.fail(f"{page.name}: `{command}` is not a command line netdsl takes:\n{err}")
    args.argv = argv
    check_flags(args, commands(parser)[args.command])
    if args.command not in RUNS or not shown:
        return
    files = [a for a in argv if a.endswith((".net", ".onnx", ".prototxt", ".cfg"))]
    workspace = _workspace(tmp_path)
    if not all((workspace / f).exists() for f in files[:1]):
        return  # the page's own example file (bad.net): shown, not shipped
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        os.chdir(cwd)
    printed = out.getvalue() + err.getvalue()
    assert (status != 0) == refused, f"{page.name}: `{command}` exited {status}\n{printed}"
    _holds(printed, shown, f"{page.name}: `{command}`")


def test_the_synopsis_lists_every_flag():
    """docs/command-line.md's synopsis names every command, and in each command's entry every flag
    it has (the flags every compiling command shares are named once, after it)."""
    text = (ROOT / "docs" / "command-line.md").read_text()
    block = next(body for lang, body in _blocks(text) if body.startswith("netdsl check"))
    entries: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith("netdsl "):
            name = line.split()[1]
            entries[name] = entries.get(name, "") + line
        elif line.strip():
            entries[name] += line
    shared = re.search(r"^Every command that compiles a FILE.*?\n\n", text, re.M | re.S).group(0)
    missing = []
    for name, parser in commands(build_parser()).items():
        if name not in entries:
            missing.append(f"netdsl {name}")
            continue
        for action in parser._actions:
            if not action.option_strings or "--help" in action.option_strings:
                continue
            said = entries[name].split("#")[0] + shared
            if not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", said) for o in action.option_strings):
                missing.append(f"netdsl {name} {max(action.option_strings, key=len)}")
    assert not missing, f"docs/command-line.md's synopsis does not name: {missing}"


def test_the_python_views_need_only_import_netdsl():
    """`import netdsl` is enough for every view the pages show (netdsl.render once needed its own
    import), and the views answer alike: reports that print as text and show as HTML."""
    import subprocess
    import sys
    code = ("import netdsl\n"
            "net = netdsl.load('nets/lenet5.net')\n"
            "d = netdsl.render.diagram(net)\n"
            "s, e = net.summary(), net.explain('c1')\n"
            "print(type(d).__name__, all(hasattr(r, '_repr_html_') and str(r) for r in (s, e)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Digraph", "True"]
