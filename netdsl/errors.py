"""One error type for every mistake in a user's input, carrying the place it was made.

The parser, the passes and the back ends raise `NetError`; only the command line formats it
(file:line:col, the source line, a caret under the culprit, and a fix where one is known).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# The one rule for where a line ends, shared by the parser (which numbers lines), the error
# renderer (which shows them) and the file readers: "\r\n", "\r" (old Mac files) or "\n".
# Nothing else ends a line: form feeds, vertical tabs and Unicode line separators are characters
# within one (a form feed is whitespace; the others are refused where they stand).
LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Error output stays readable whatever the input: a source line is shown as a window around the
# caret, and a message or hint (which may quote what the user wrote) is cut, with its length.
SHOWN_LINE = 120
SHOWN_MESSAGE = 400


def split_lines(text: str) -> list[str]:
    """The lines of `text` by LINE_BREAK (a final line break does not start an empty line)."""
    lines = LINE_BREAK.split(text)
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def normalise_line_breaks(text: str) -> str:
    """`text` with every line break as "\n": same line numbers and columns as split_lines."""
    return LINE_BREAK.sub("\n", text)


def cut(text: str, limit: int = SHOWN_MESSAGE) -> str:
    """`text`, or its start and its length when it is longer than `limit` characters."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text):,} characters)"


@dataclass(frozen=True)
class Span:
    """Where something was written: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """A message about a place in the source; used for warnings and as the body of errors."""

    message: str
    span: Span | None = None
    hint: str | None = None

    def render(self, source: str | None, severity: str = "error") -> str:
        return render_diagnostic(self, source, severity)


class NetError(Exception):
    """A mistake in the user's network description (or data, or command line value)."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)

    @property
    def message(self) -> str:
        return self.diagnostic.message

    @property
    def span(self) -> Span | None:
        return self.diagnostic.span

    @property
    def hint(self) -> str | None:
        return self.diagnostic.hint

    def render(self, source: str | None = None) -> str:
        return render_diagnostic(self.diagnostic, source, "error")


class NetTypeError(NetError, TypeError):
    """A Python caller passed the wrong kind of value (bytes for text, a list for an array)."""


class NetValueError(NetError, ValueError):
    """A Python caller passed a value of the right kind that cannot be right (lr=-1, a label of 12)."""


def render_diagnostic(diag: Diagnostic, source: str | None, severity: str) -> str:
    """`file:line:col: error: message`, the line itself, a caret run under the culprit, a hint."""
    span = diag.span
    message = cut(diag.message)
    head = f"{span}: {severity}: {message}" if span else f"{severity}: {message}"
    lines = [head]
    if span is not None and source is not None:
        src_lines = split_lines(source)
        if 1 <= span.line <= len(src_lines):
            text = src_lines[span.line - 1].replace("\t", " ")
            width = 1
            if span.end_line == span.line and span.end_column > span.column:
                width = span.end_column - span.column
            text, column, width = _window(text, span.column, width)
            lines.append(f"  {span.line:>4} | {text}")
            lines.append(f"       | {' ' * (column - 1)}{'^' * width}")
    if diag.hint:
        lines.append(f"  hint: {cut(diag.hint)}")
    return "\n".join(lines)


def _window(text: str, column: int, width: int) -> tuple[str, int, int]:
    """A long source line cut to SHOWN_LINE characters around the caret, with its length said."""
    if len(text) <= SHOWN_LINE:
        return text, column, width
    width = min(width, SHOWN_LINE // 2)
    start = max(0, min(column - 1 - SHOWN_LINE // 4, len(text) - SHOWN_LINE))
    shown = text[start:start + SHOWN_LINE]
    prefix = "…" if start else ""
    suffix = f"… ({len(text):,} characters)" if start + SHOWN_LINE < len(text) else ""
    return prefix + shown + suffix, column - start + len(prefix), width
