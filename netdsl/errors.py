"""One error type for every mistake in a user's input, carrying the place it was made.

The parser, the passes and the back ends raise `NetError`; only the command line formats it
(file:line:col, the source line, a caret under the culprit, and a fix where one is known).

One NetError may stand for several independent mistakes (`diagnostics`), as rustc and Elm report
every error they find: the parser recovers line by line, expansion goes on past a layer it
cannot build, shape inference past a layer whose shape fails (ErrorLog gathers them). Its
message is the first one's; `render` shows each with its caret, then the count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

# The one rule for where a line ends, shared by the parser (which numbers lines), the error
# renderer (which shows them) and the file readers: "\r\n", "\r" (old Mac files) or "\n".
# Nothing else ends a line: form feeds, vertical tabs and Unicode line separators are characters
# within one (a form feed is whitespace; the others are refused where they stand).
LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Error output stays readable whatever the input: a source line is shown as a window around the
# caret, and a message or hint (which may quote what the user wrote) is cut, with its length.
SHOWN_LINE = 120
SHOWN_MESSAGE = 400
# Past this many errors in one file the rest are likely consequences, and the reader has enough
# to fix: netdsl stops looking and says so.
MAX_ERRORS = 50


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
    """A mistake in the user's network description (or data, or command line value).

    `diagnostics`: every independent mistake found (the first is the error's own message, span
    and hint); `source`: the text the spans point into, where it was kept (a file read from a
    pipe cannot be read again to show its lines)."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)
        self.more: tuple[Diagnostic, ...] = ()
        self.stopped_early = False  # more errors than MAX_ERRORS: netdsl stopped looking
        self.final = False  # no phase goes on past this one (a size limit, the error count)
        self.source: str | None = None
        self.source_file: str | None = None

    @classmethod
    def together(cls, errors: Sequence["NetError"], stopped_early: bool = False) -> "NetError":
        """One error carrying every diagnostic of `errors` (in order); the first one's message."""
        first = errors[0]
        if len(errors) == 1 and not stopped_early:
            return first
        err = cls(first.message, first.span, first.hint)
        err.more = first.more + tuple(d for e in errors[1:] for d in e.diagnostics)
        err.stopped_early = stopped_early or any(e.stopped_early for e in errors)
        err.final = err.stopped_early or any(e.final for e in errors)
        err.source, err.source_file = first.source, first.source_file
        return err

    @property
    def message(self) -> str:
        return self.diagnostic.message

    @property
    def span(self) -> Span | None:
        return self.diagnostic.span

    @property
    def hint(self) -> str | None:
        return self.diagnostic.hint

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return (self.diagnostic,) + self.more

    def keep_source(self, file: str, source: str) -> "NetError":
        """Remember the text the spans in `file` point into (unless a text is already kept)."""
        if self.source is None:
            self.source, self.source_file = source, file
        return self

    def render(self, source: str | None = None) -> str:
        if source is None and self.source is not None:
            return render_error(self)
        return render_error(self, lambda file: source)


def render_error(err: NetError, read: Callable[[str], str | None] = lambda file: None) -> str:
    """Every diagnostic of `err`, each with its source line (the kept text, else `read(file)`),
    then how many there are when there are several."""
    sources: dict[str, str | None] = {}
    if err.source_file is not None:
        sources[err.source_file] = err.source
    parts = []
    for diag in err.diagnostics:
        file = diag.span.file if diag.span is not None else None
        if file is not None and file not in sources:
            sources[file] = read(file)
        parts.append(render_diagnostic(diag, sources.get(file) if file is not None else None, "error"))
    if len(parts) > 1 or err.stopped_early:
        count = f"{len(parts)} error{'s' if len(parts) > 1 else ''}"
        parts.append(count + ("; netdsl stopped looking there: fix these and check again" if err.stopped_early else ""))
    return "\n\n".join(parts)


class ErrorLog:
    """Errors a phase gathers while it goes on past them. An error at a place already reported
    (a misspelt layer in a block used nine times, a width wrong in every instance) is kept once;
    at MAX_ERRORS the phase stops. An error marked `final` (a size limit) stops it at once."""

    def __init__(self):
        self.errors: list[NetError] = []
        self._seen: set = set()
        self.stopped_early = False  # the phase gave up before the end of the file

    def add(self, err: NetError) -> None:
        if err.final:
            raise NetError.together(self.errors + [err]) from None
        key = err.span if err.span is not None else err.message
        if key in self._seen:
            return
        self._seen.add(key)
        self.errors.append(err)
        if sum(len(e.diagnostics) for e in self.errors) >= MAX_ERRORS:
            raise NetError.together(self.errors, stopped_early=True)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def check(self) -> None:
        """Raise every error gathered, as one NetError, if there is any."""
        if self.errors:
            raise NetError.together(self.errors, stopped_early=self.stopped_early)


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
