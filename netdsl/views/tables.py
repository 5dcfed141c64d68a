"""One table model, six formats: what `summary` and `explain` show, for the terminal, GitHub
markdown, CSV, LaTeX, HTML and JSON.

A view builds a `Document` (a title, lines of text and `Table`s, its main table for CSV, and its
data for JSON); `render(doc, fmt)` writes it. The formatting is left to well-kept libraries:
rich lays out terminal tables (width-aware, colour only on a terminal), the csv module writes
RFC 4180, tabulate writes GitHub markdown, booktabs LaTeX (escaping names) and HTML (escaping
text). No view formats a table by hand.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import NetError

FORMATS = ("text", "md", "csv", "latex", "html", "json")


@dataclass(frozen=True)
class Column:
    title: str
    kind: str = "text"  # text | int (thousands separators; '-' for 0 where dash_zero) | percent (a fraction)
    dash_zero: bool = False
    max_width: int | None = None  # terminal only: longer text ends in '…'

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "percent")


@dataclass
class Table:
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    title: str | None = None

    def cell(self, column: Column, value: Any) -> str:
        """A value as people read it: 34,944; '-' for nothing; 2.3%."""
        if value is None:
            return "-"
        if column.kind == "int":
            return "-" if column.dash_zero and value == 0 else f"{value:,}"
        if column.kind == "percent":
            return f"{100 * value:.1f}%"
        return str(value)

    def text_rows(self) -> list[list[str]]:
        return [[self.cell(c, v) for c, v in zip(self.columns, row)] for row in self.rows]


Block = Union[str, Table]  # a line of text, or a table


@dataclass
class Document:
    title: str
    blocks: list[Block]
    data: dict  # the JSON form
    main: Table | None = None  # the table CSV writes (a document's CSV is one table)


def render(doc: Document, fmt: str = "text", *, color: bool = False, width: int | None = None) -> str:
    try:
        writer = _WRITERS[fmt]
    except KeyError:
        raise NetError(f"--format {fmt}: expected one of {', '.join(FORMATS)}") from None
    return writer(doc, color=color, width=width)


# text: rich ----------------------------------------------------------------------------------------


def _text(doc: Document, *, color: bool, width: int | None) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    buf = io.StringIO()
    # Not a terminal: wide enough that nothing is cut (files and pipes get whole names).
    # force_jupyter=False: inside a notebook rich would display the table itself instead of writing it here
    console = Console(file=buf, width=width or 10_000, force_terminal=color, force_jupyter=False,
                      color_system="standard" if color else None, highlight=False, emoji=False, markup=False)
    for block in [doc.title, *doc.blocks]:
        if isinstance(block, str):
            console.print(Text(block, style="bold" if color and block is doc.title else ""), soft_wrap=True)
            continue
        table = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                          header_style="bold" if color else "", title=block.title, title_justify="left",
                          title_style="bold" if color else "")
        for column in block.columns:
            table.add_column(column.title, justify="right" if column.numeric else "left",
                             no_wrap=True, overflow="ellipsis", max_width=column.max_width)
        for row in block.text_rows():
            table.add_row(*row)
        console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").split("\n"))


# markdown, LaTeX: tabulate ---------------------------------------------------------------------------


def _tabulate(table: Table, fmt: str, escape=lambda s: s) -> str:
    from tabulate import tabulate
    return tabulate([[escape(c) for c in row] for row in table.text_rows()],
                    headers=[escape(c.title) for c in table.columns], tablefmt=fmt, disable_numparse=True,
                    colalign=["right" if c.numeric else "left" for c in table.columns])


def _runs(doc: Document):
    """The document as it is written out: ("lines", [str, ...]) for each run of arithmetic lines,
    ("table", Table) for each table, in order (every written format but text walks it so)."""
    lines: list[str] = []
    for block in doc.blocks:
        if isinstance(block, str):
            lines.append(block)
            continue
        if lines:
            yield "lines", lines
            lines = []
        yield "table", block
    if lines:
        yield "lines", lines


def _md(doc: Document, **_) -> str:
    out = [f"**{_md_escape(doc.title)}**", ""]
    for kind, part in _runs(doc):
        if kind == "lines":  # arithmetic stays as written (a '*' is a product, not emphasis)
            out += ["```text", *part, "```", ""]
            continue
        if part.title:
            out += [f"*{_md_escape(part.title)}*", ""]
        out += [_tabulate(part, "github", _md_escape), ""]
    return "\n".join(out).rstrip() + "\n"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _latex(doc: Document, **_) -> str:
    """A fragment for a document with \\usepackage{booktabs}: tables as booktabs tabulars (tabulate
    escapes names: conv3_x becomes conv3\\_x), the arithmetic lines verbatim."""
    out = [f"% {doc.title}", f"\\paragraph{{{_latex_escape(doc.title)}}}", ""]
    for kind, part in _runs(doc):
        if kind == "lines":
            out += ["\\begin{verbatim}", *part, "\\end{verbatim}", ""]
            continue
        if part.title:
            out += [f"\\noindent\\textit{{{_latex_escape(part.title)}}}", ""]
        out += [_tabulate(part, "latex_booktabs"), ""]
    return "\n".join(out).rstrip() + "\n"


def _latex_escape(text: str) -> str:
    from tabulate import LATEX_ESCAPE_RULES
    return "".join(LATEX_ESCAPE_RULES.get(ch, ch) for ch in text)


# HTML: tabulate's escaping table, the lines as preformatted text -------------------------------------


def _html(doc: Document, **_) -> str:
    import html
    out = ['<div class="netdsl-report">', f"<p><strong>{html.escape(doc.title)}</strong></p>"]
    for kind, part in _runs(doc):
        if kind == "lines":
            out.append("<pre>" + html.escape("\n".join(part)) + "</pre>")
            continue
        if part.title:
            out.append(f"<p><em>{html.escape(part.title)}</em></p>")
        out.append(_tabulate(part, "html"))
    out.append("</div>")
    return "\n".join(out)


# CSV and JSON: the numbers as they are ---------------------------------------------------------------


def _csv(doc: Document, **_) -> str:
    table = doc.main or next((b for b in doc.blocks if isinstance(b, Table)), None)
    if table is None:
        raise NetError("this view has no table to write as CSV", hint="use --format text, md, html or json")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow([c.title for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if v is None else round(v, 6) if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def _json(doc: Document, **_) -> str:
    return json.dumps(doc.data, indent=1)


_WRITERS = {"text": _text, "md": _md, "csv": _csv, "latex": _latex, "html": _html, "json": _json}


class Report(str):
    """What `net.summary()` and `net.explain(name)` give: the text itself (print it, search it), and
    the same document in every format (`to("md")`), as HTML in a notebook, as data (`as_dict()`)."""

    document: Document

    def __new__(cls, document: Document) -> "Report":
        self = super().__new__(cls, render(document, "text"))
        self.document = document
        return self

    def to(self, fmt: str) -> str:
        return render(self.document, fmt)

    def as_dict(self) -> dict:
        return self.document.data

    def _repr_html_(self) -> str:
        return render(self.document, "html")

    def __repr__(self) -> str:  # the REPL and a notebook's plain text show the report, not a quoted string
        return str(self)

    def __getitem__(self, key):
        if isinstance(key, str):
            raise TypeError(f"a report is text; its data is .as_dict()[{key!r}]")
        return super().__getitem__(key)
