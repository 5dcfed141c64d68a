"""Text -> syntax tree, with lark. Every failure becomes a NetError that points at the place."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import syntax as S
from .errors import ErrorLog, NetError, Span, normalise_line_breaks, split_lines

# Names people recognise, for "expected ..." in parse errors.
_TOKEN_WORDS = {
    "NAME": "a name", "INT": "a number", "FLOAT": "a number", "DIMS": "a size like 3x3",
    "_NL": "end of line", "SEMICOLON": "';'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "COLON": "':'", "EQUAL": "'='", "SLASH": "'/'",
    "COMMA": "','", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "$END": "end of file",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("netdsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


class _Shortcut:
    """A `shortcut` branch while its branch is built: how it meets a different shape."""

    def __init__(self, mode: str):
        self.mode = mode


class _Builder(Transformer):
    """Parse tree -> syntax tree. A mistake the grammar lets through (spaces inside an argument,
    a stride glued to a value) is logged and the tree built on: each is reported, not the first."""

    def __init__(self, file: str, lines: list[str], log: ErrorLog):
        super().__init__()
        self.file = file
        self.lines = lines
        self.log = log

    # spans -------------------------------------------------------------------------------
    def _span(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # expressions -------------------------------------------------------------------------
    def int(self, children):
        (tok,) = children
        return S.Num(int(tok), self._tspan(tok))

    def float(self, children):
        (tok,) = children
        return S.Num(float(tok), self._tspan(tok))

    def var(self, children):
        (tok,) = children
        return S.Var(str(tok), self._tspan(tok))

    @v_args(meta=True)
    def neg(self, meta, children):
        return S.Neg(children[0], self._span(meta))

    def _binop(op):  # noqa: N805 - a tiny factory for the three operators
        @v_args(meta=True)
        def build(self, meta, children):
            return S.BinOp(op, children[0], children[1], self._span(meta))
        return build

    plus, minus, times, divide = _binop("+"), _binop("-"), _binop("*"), _binop("/")

    @v_args(meta=True)
    def paren(self, meta, children):
        return S.Paren(children[0], self._span(meta))

    def _between(self, left: Span, right: Span) -> str:
        """The text between two spans on one line (an operator and any spaces around it)."""
        if left.end_line != right.line:
            return " "
        return self.lines[left.end_line - 1][left.end_column - 1:right.column - 1]

    def _argument(self, expr):
        """An argument outside parentheses is one run of characters: spaces separate arguments,
        so `pad 1 -1` is refused, never read as pad 0 (see grammar.lark)."""
        if isinstance(expr, S.BinOp):
            gap = self._between(expr.left.span, expr.right.span)
            if gap != gap.strip():
                if expr.op == "-" and gap.startswith((" ", "\t")) and not gap.endswith((" ", "\t")):
                    neg = Span(self.file, expr.right.span.line, expr.right.span.column - 1,
                               expr.right.span.end_line, expr.right.span.end_column)
                    line = self.lines[expr.span.line - 1]
                    written = line[expr.span.column - 1:expr.right.span.end_column - 1]
                    self.log.add(NetError(
                        "a negative number: sizes, counts, pads, strides and settings are never negative",
                        neg, f"spaces separate arguments, so '{written}' is two of them; "
                             "to subtract, write n-1 or (n - 1)"))
                else:
                    self.log.add(NetError(f"spaces around '{expr.op}' inside an argument", expr.span,
                                          "spaces separate arguments: write the expression without them "
                                          "(4*c, n-1) or in parentheses ((n - 1))"))
                return expr
            self._argument(expr.left)
            self._argument(expr.right)
        elif isinstance(expr, S.Neg):
            self._argument(expr.operand)
        return expr

    # arguments ---------------------------------------------------------------------------
    def _dims(self, tok: Token) -> S.DimsArg:
        return S.DimsArg(tuple(int(v) for v in str(tok).split("x")), self._tspan(tok))

    def dims(self, children):
        return self._dims(children[0])

    @v_args(meta=True)
    def stride(self, meta, children):
        (value,) = children
        if isinstance(value, Token):
            value = self._dims(value)
        else:
            self._argument(value)
        return S.StrideArg(value, self._span(meta))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        name, value = children
        return S.KwArg(str(name), self._argument(value), self._span(meta))

    @v_args(meta=True)
    def value(self, meta, children):
        return S.ValueArg(self._argument(children[0]), self._span(meta))

    # statements --------------------------------------------------------------------------
    @v_args(meta=True)
    def call(self, meta, children):
        name, *args = children
        for before, arg in zip(args, args[1:]):
            glued = before.span.end_line == arg.span.line and before.span.end_column == arg.span.column
            if isinstance(arg, S.StrideArg) and glued and not isinstance(before, S.DimsArg):
                self.log.add(NetError("a '/' right after a value: is it a stride or a division?", arg.span,
                                      "a stride has a space before it (conv c 1x1 /2, or glued to a size: "
                                      "3x3/2); to divide, use parentheses: conv (c/2) 1x1"))
        return S.Call(str(name), tuple(args), self._span(meta), self._tspan(name))

    def label(self, children):
        return children[0]

    @v_args(meta=True)
    def layer(self, meta, children):
        label, item = children
        label_span = self._tspan(label) if label is not None else None
        return S.Layer(str(label) if label is not None else None, label_span, item, self._span(meta))

    def body(self, children):
        return tuple(children)

    def shortcut(self, children):
        return _Shortcut("zeropad" if children and children[0] is not None else "project")

    @v_args(meta=True)
    def branch(self, meta, children):
        label, body = children
        label = str(label) if label is not None else None
        if isinstance(body, _Shortcut):
            return S.Branch(label, None, self._span(meta), body.mode)
        return S.Branch(label, body, self._span(meta))

    def branches(self, children):
        return tuple(children)

    @v_args(meta=True)
    def concat(self, meta, children):
        return S.Merge("concat", children[0], self._span(meta))

    @v_args(meta=True)
    def add(self, meta, children):
        return S.Merge("add", children[0], self._span(meta))

    @v_args(meta=True)
    def gate(self, meta, children):
        return S.Merge("gate", children[0], self._span(meta))

    @v_args(meta=True)
    def side(self, meta, children):
        return S.Side(children[0], self._span(meta))

    @v_args(meta=True)
    def repeat(self, meta, children):
        count, item = children
        return S.Repeat(self._argument(count), _as_item(item, self._span(meta)), self._span(meta))

    def param(self, children):
        name, default = children
        return S.Param(str(name), default if default is None else self._argument(default), self._tspan(name))

    @v_args(meta=True)
    def block_def(self, meta, children):
        name, *rest = children
        body = rest[-1]
        params = tuple(p for p in rest[:-1] if p is not None)
        return ("block", S.BlockDef(str(name), params, body, self._span(meta), self._tspan(name)))

    @v_args(meta=True)
    def network(self, meta, children):
        return ("network", str(children[0]), self._span(meta))

    @v_args(meta=True)
    def input(self, meta, children):
        tok = children[0]
        dims = tuple(int(v) for v in str(tok).split("x"))
        return ("input", dims, self._tspan(tok))

    def start(self, children):
        return list(children)


def _as_item(item, span: Span):
    """A braced body arrives as a tuple of layers; give it its Group node."""
    return S.Group(item, span) if isinstance(item, tuple) else item


def _fix_groups(layer: S.Layer) -> S.Layer:
    if isinstance(layer.item, tuple):
        return S.Layer(layer.label, layer.label_span, S.Group(layer.item, layer.span), layer.span)
    return layer


def parse(source: str, file: str = "<string>") -> S.Program:
    """Parse .net text into a Program. Raises NetError with a span on any mistake: one NetError
    carrying every syntax error found (the parser recovers line by line), in the file's order."""
    lines = split_lines(source)
    if not source.strip() or all(not line.split("#", 1)[0].strip() for line in lines):
        raise NetError(
            "empty network: there is nothing but blank lines and comments",
            Span(file, 1, 1, 1, 1),
            "a network needs at least an 'input CxHxW' line and one layer, e.g. 'input 3x32x32' then 'conv 6 5x5'",
        )
    text = normalise_line_breaks(source)
    _check_nesting(text, file)
    log = ErrorLog()
    try:
        tree = _parse_recovering(text, file, log)
        items = _Builder(file, lines, log).transform(tree) if tree is not None else []
        program = _assemble(items, source, file, log)
    except VisitError as exc:  # a bug in the builder, or recursion; never show lark's internals
        if isinstance(exc.orig_exc, NetError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            raise NetError("the file nests too deeply to parse", Span(file, 1, 1, 1, 1)) from None
        raise
    except RecursionError:
        raise NetError("the file nests too deeply to parse", Span(file, 1, 1, 1, 1)) from None
    if log:
        log.errors.sort(key=lambda e: (e.span.line, e.span.column) if e.span else (0, 0))
        log.check()
    return program


# Recovery parses the file again with each bad line blanked; this bounds the text parsed again in
# all, so that a megabyte of nonsense costs two parses, not one per line (a 3 KB file: 300).
MAX_REPARSED = 1 << 20


def _parse_recovering(text: str, file: str, log: ErrorLog):
    """The parse tree of `text`, or None where a syntax error left none. Each syntax error is
    logged, its line blanked (its braces kept, so the lines around it still nest as written) and
    the text parsed again, until it parses: every line's first error is found, not just the
    file's. A line that fails again after being blanked with its braces is blanked whole; the
    error found then is the repair's, not the user's, and is not reported."""
    blanked: dict[int, int] = {}  # line -> times blanked
    reparsed = -len(text)  # the first parse is not a reparse
    while True:
        reparsed += len(text)
        try:
            tree = _lark().parse(text)
        except UnexpectedInput as exc:
            err = _syntax_error(exc, text, file)
            line = err.span.line
            if line not in blanked:
                log.add(err)
            times = blanked.get(line, 0)
            if times == 2 or reparsed + len(text) > MAX_REPARSED:
                # lines after this one are unread: say the list may go on
                log.stopped_early = line < len(split_lines(text))
                return None
            text = _blank_line(text, line, keep_braces=times == 0)
            blanked[line] = times + 1
            continue
        return tree


def _blank_line(text: str, line: int, keep_braces: bool) -> str:
    """`text` with line `line` (1-based) emptied, but for its braces (and the concat, add or side
    they open) when `keep_braces` (outside comments); other lines' numbers and columns unchanged."""
    lines = text.split("\n")
    code = lines[line - 1].split("#", 1)[0]
    kept = " ".join(m.group() for m in _STRUCTURE.finditer(code)) if keep_braces else ""
    lines[line - 1] = kept
    return "\n".join(lines)


# What a blanked line keeps: its braces, and the merge or side that a '{' opens (so that the
# branches on the lines below stay branches, `shortcut` included)
_STRUCTURE = re.compile(r"\b(?:concat|add|side)\s*\{|[{}]")


MAX_NESTING = 100  # braces, parentheses and repeats around one another; real networks use about 5
_NESTING = re.compile(r"#[^\n]*|[{}();\n]|\brepeat\b")
_NESTING_WORDS = {"{": "braces", "(": "parentheses", "repeat": "repeats"}


def _check_nesting(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_NESTING where it passes the limit, before the parser's
    and the builder's recursion meets Python's own limit. A repeat nests its item until the
    statement ends (a line break, ';' or the '}' around it)."""
    stack: list[str] = []
    line, line_start = 1, 0
    for m in _NESTING.finditer(text):
        tok = m.group()
        if tok[0] == "#":
            continue
        if tok in ("\n", ";", "}", ")"):
            while stack and stack[-1] == "repeat":  # the statement a repeat nested ended
                stack.pop()
            if tok == "\n":
                line, line_start = line + 1, m.end()
            elif tok in "})" and stack:
                stack.pop()
            continue
        stack.append(tok)
        if len(stack) > MAX_NESTING:
            col = m.start() - line_start + 1
            raise NetError(f"the file nests {_NESTING_WORDS[tok]} too deeply: more than {MAX_NESTING} levels here",
                           Span(file, line, col, line, col + len(tok)),
                           "flatten it: a block or a repeat says the same without the depth")


def _assemble(items: list, source: str, file: str, log: ErrorLog) -> S.Program:
    name = name_span = shape = shape_span = None
    blocks: list[S.BlockDef] = []
    layers: list[S.Layer] = []
    for item in items:
        if isinstance(item, S.Layer):
            layers.append(_fix_layer_tree(item))
            continue
        kind = item[0]
        if kind == "network":
            if name is not None:
                log.add(NetError("the network is named twice", item[2],
                                 f"it is already named '{name}' at line {name_span.line}"))
                continue
            name, name_span = item[1], item[2]
        elif kind == "input":
            if shape is not None:
                log.add(NetError("a second 'input' line", item[2],
                                 f"the input is already {'x'.join(map(str, shape))} (line {shape_span.line})"))
                continue
            if layers:
                log.add(NetError("'input' must come before the first layer", item[2]))
            shape, shape_span = item[1], item[2]
        elif kind == "block":
            bd = item[1]
            blocks.append(S.BlockDef(bd.name, bd.params, tuple(_fix_layer_tree(l) for l in bd.body), bd.span, bd.name_span))
    return S.Program(name, name_span, shape, shape_span, tuple(blocks), tuple(layers), source, file)


def _fix_layer_tree(layer: S.Layer) -> S.Layer:
    """Turn braced bodies used as items into Group nodes, all the way down."""
    layer = _fix_groups(layer)
    item = layer.item
    if isinstance(item, S.Group):
        item = S.Group(tuple(_fix_layer_tree(l) for l in item.body), item.span)
    elif isinstance(item, S.Side):
        item = S.Side(tuple(_fix_layer_tree(l) for l in item.body), item.span)
    elif isinstance(item, S.Merge):
        item = S.Merge(item.kind, tuple(
            S.Branch(b.label, None if b.body is None else tuple(_fix_layer_tree(l) for l in b.body), b.span,
                     b.shortcut)
            for b in item.branches), item.span)
    elif isinstance(item, S.Repeat):
        inner = _fix_layer_tree(S.Layer(None, None, item.item, item.span)).item
        item = S.Repeat(item.count, inner, item.span)
    return S.Layer(layer.label, layer.label_span, item, layer.span)


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"'{tok}'"


def _syntax_error(exc: UnexpectedInput, source: str, file: str) -> NetError:
    line, col = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = split_lines(source) or [""]
        line, col = len(lines), len(lines[-1]) + 1
    width = 1
    if isinstance(exc, UnexpectedCharacters):
        ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        what = f"unexpected character {ch!r}"
        hint = _char_hint(ch)
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type not in ("$END", "_NL") and tok.end_column:
            width = max(1, tok.end_column - tok.column)
        what = f"unexpected {_describe_token(tok)}"
        hint = _expected_hint(exc.expected, tok)
    else:
        what, hint = "unexpected end of file", "a '{' is still open"
    nested = _block_inside_braces(exc, source, file)
    if nested is not None:
        return nested
    return NetError(what, Span(file, line, col, line, col + width), hint)


_BLOCK_START = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*\s*:\s*)?(block)\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|\{|$)")


def _block_inside_braces(exc: UnexpectedInput, source: str, file: str) -> NetError | None:
    """A block definition inside another block (or any braces) fails on whatever token the
    grammar did not expect there ('block', '(' or ')'); say what the mistake is instead."""
    pos = getattr(exc, "pos_in_stream", None)
    if isinstance(exc, UnexpectedToken):
        pos = exc.token.start_pos
    if pos is None or pos > len(source):
        return None
    # the statement the error is in: from the last separator before it
    start = max(source.rfind(sep, 0, pos) for sep in ("\n", ";", "{", "}")) + 1
    m = _BLOCK_START.match(source, start + len(source[start:pos]) - len(source[start:pos].lstrip()))
    if m is None or m.start(1) > pos:
        return None
    enclosing = _open_braces(source, m.start(1))
    if not enclosing:
        return None
    outer = source[source.rfind("\n", 0, enclosing[0]) + 1:enclosing[0]]
    around = re.match(r"\s*block\s+([A-Za-z_][A-Za-z0-9_]*)", outer)
    line = source.count("\n", 0, m.start(1)) + 1
    col = m.start(1) - (source.rfind("\n", 0, m.start(1)) + 1) + 1
    where = f"inside block '{around.group(1)}'" if around else "inside braces"
    return NetError(f"block '{m.group(2)}' is defined {where}: blocks are defined at the top level",
                    Span(file, line, col, line, col + len("block")),
                    "move the definition out, before or after the layers; a block can use any other block")


def _open_braces(source: str, pos: int) -> list[int]:
    """Positions of the '{' still open at `pos`, outermost first (comments skipped)."""
    opened: list[int] = []
    for m in re.finditer(r"#[^\n]*|[{}]", source[:pos]):
        if m.group() == "{":
            opened.append(m.start())
        elif m.group() == "}" and opened:
            opened.pop()
    return opened


def _char_hint(ch: str) -> str | None:
    if ch == "\x00" or (ch and not ch.isprintable() and ch not in "\t\r\n"):
        return "the file contains a control character; is it a text file?"
    if ch in "x":
        return "sizes are written without spaces, like 3x3"
    return None


def _expected_hint(expected: set[str], tok: Token) -> str | None:
    words = sorted({_TOKEN_WORDS.get(e, f"'{e.lower()}'" if e.isupper() else e) for e in expected})
    if tok.type == "RBRACE" and "LBRACE" not in expected:
        return "there is a '}' with no '{' open"
    if tok.type == "$END" and "RBRACE" in expected:
        return "a '{' is never closed: add '}'"
    if tok.type == "MINUS":
        return "numbers here must be positive"
    if len(words) <= 6:
        return "expected " + ", ".join(words)
    return None
