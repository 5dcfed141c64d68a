"""One error type for every mistake in a user's input, carrying the place it was made.

The parser, the passes and the back ends raise `NetError`; only the command line formats it
(file:line:col, the source line, a caret under the culprit, and a fix where one is known).
"""
from __future__ import annotations

from dataclasses import dataclass


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


def render_diagnostic(diag: Diagnostic, source: str | None, severity: str) -> str:
    """`file:line:col: error: message`, the line itself, a caret run under the culprit, a hint."""
    span = diag.span
    head = f"{span}: {severity}: {diag.message}" if span else f"{severity}: {diag.message}"
    lines = [head]
    if span is not None and source is not None:
        src_lines = source.splitlines()
        if 1 <= span.line <= len(src_lines):
            text = src_lines[span.line - 1].replace("\t", " ")
            width = 1
            if span.end_line == span.line and span.end_column > span.column:
                width = span.end_column - span.column
            lines.append(f"  {span.line:>4} | {text}")
            lines.append(f"       | {' ' * (span.column - 1)}{'^' * width}")
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)
