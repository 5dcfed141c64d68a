"""summary and explain in every format, each checked by a reader that is not netdsl's: the csv
module, markdown-it-py, Python's HTML parser, a LaTeX structure check (and pdflatex where one is
installed)."""
import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def resnet18():
    return netdsl.load(ROOT / "nets" / "resnet18.net")


def test_csv_reads_back_to_the_same_numbers(resnet18):
    rows = list(csv.DictReader(io.StringIO(resnet18.summary().to("csv"))))
    assert [r["layer"] for r in rows] == [l.name for l in resnet18.layers]
    for row, layer in zip(rows, resnet18.layers):
        assert int(row["params"]) == layer.params and int(row["MACs"]) == layer.macs  # unformatted
        assert int(row["activations"]) == layer.activations
    assert sum(int(r["params"]) for r in rows) == 11_689_512  # torchvision's resnet18


def test_csv_is_rfc4180(resnet18):
    text = resnet18.summary(blocks=True).to("csv")
    assert text.endswith("\r\n") and "\r\n" in text.rstrip("\r\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["block or layer", "kind", "level"]
    stage = next(r for r in rows if r[0] == "conv3_x")
    assert int(stage[5]) == sum(int(r[5]) for r in rows if r[0].strip().startswith("conv3_x/"))


def test_markdown_is_a_table(resnet18):
    from markdown_it import MarkdownIt
    text = resnet18.summary().to("md")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = [t.type for t in tokens]
    assert "table_open" in kinds and "th_open" in kinds
    rows = sum(1 for t in tokens if t.type == "tr_open")
    assert rows == len(resnet18.layers) + 1  # the header and one row a layer
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "conv2\\_x" not in html and "conv2_x/basic1/b1/conv1" in html  # escapes come back as written
    assert "11,689,512" in text


def test_explain_markdown_keeps_arithmetic_verbatim():
    from markdown_it import MarkdownIt
    net = netdsl.load(ROOT / "nets" / "alexnet.net")
    html = MarkdownIt("commonmark").enable("table").render(net.explain("conv1").to("md"))
    assert "weights 11*11*3*96 = 34,848" in html  # in a code block: no emphasis eats the stars


def test_latex_structure(resnet18, tmp_path):
    tex = resnet18.explain("conv3_x/basic1").to("latex")
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") >= 1
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in tex
    assert "conv3\\_x/basic1" in tex and "conv3_x/basic1" not in tex.replace("\\begin{verbatim}", "").split(
        "\\begin{verbatim}")[0].split("\\end{verbatim}")[-1]
    latex = shutil.which("pdflatex")
    if latex is None:
        pytest.skip("no pdflatex on this machine: the LaTeX was checked for structure only")
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n")
    result = subprocess.run([latex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.cells, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("table", "tr", "td", "th", "div", "p", "pre", "thead", "tbody", "strong", "em"):
            self.stack.append(tag)
        self.tables += tag == "table"

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.cells.append(data.strip())


def test_html_parses_and_escapes(resnet18):
    parser = _Tables()
    parser.feed(resnet18.summary()._repr_html_())
    parser.close()
    assert not parser.stack and parser.tables == 1
    assert "conv2_x/basic1/b1/conv1" in parser.cells and "11,689,512" not in parser.cells
    page = netdsl.load(ROOT / "nets" / "alexnet.net").explain("conv1").to("html")
    assert "-&gt; 96x55x55" in page and "-> 96x55x55" not in page  # the lines are escaped text


def test_json_adds_keys_and_keeps_the_old_ones(capsys):
    assert main(["summary", str(ROOT / "nets" / "googlenet.net"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("network", "file", "input", "layers", "outputs", "totals", "conventions", "warnings"):
        assert key in data
    assert data["depth"] == 22 and any(b["name"] == "inception3a" and b["params"] == 163_696 for b in data["blocks"])
    assert main(["summary", str(ROOT / "nets" / "googlenet.net"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data


def test_text_table_is_whole_off_a_terminal(capsys):
    assert main(["summary", str(ROOT / "nets" / "resnet152.net"), "--blocks"]) == 0
    out = capsys.readouterr().out
    assert "conv4_x/bottleneck23" in out and "\x1b[" not in out  # no colour, no cut names in a pipe


def test_bad_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["summary", str(ROOT / "nets" / "lenet5.net"), "--format", "docx"])
    assert info.value.code == 2 and "--format" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["text", "md", "csv", "latex", "html", "json"])
def test_every_format_from_the_command_line(fmt, capsys):
    assert main(["explain", str(ROOT / "nets" / "googlenet.net"), "inception3a", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "csv":
        assert sum(int(r["params"]) for r in csv.DictReader(io.StringIO(out))) == 163_696
    else:
        assert "163,696" in out or "163696" in out
