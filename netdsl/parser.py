"""Text -> syntax tree, with lark. Every failure becomes a NetError that points at the place."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import syntax as S
from .errors import NetError, Span, normalise_line_breaks, split_lines

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
    def __init__(self, file: str, lines: list[str]):
        super().__init__()
        self.file = file
        self.lines = lines

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
                    raise NetError("a negative number: sizes, counts, pads, strides and settings are never negative",
                                   neg, f"spaces separate arguments, so '{written}' is two of them; "
                                        "to subtract, write n-1 or (n - 1)")
                raise NetError(f"spaces around '{expr.op}' inside an argument", expr.span,
                               "spaces separate arguments: write the expression without them (4*c, n-1) "
                               "or in parentheses ((n - 1))")
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
                raise NetError("a '/' right after a value: is it a stride or a division?", arg.span,
                               "a stride has a space before it (conv c 1x1 /2, or glued to a size: 3x3/2); "
                               "to divide, use parentheses: conv (c/2) 1x1")
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
    """Parse .net text into a Program. Raises NetError with a span on any mistake."""
    lines = split_lines(source)
    if not source.strip() or all(not line.split("#", 1)[0].strip() for line in lines):
        raise NetError(
            "empty network: there is nothing but blank lines and comments",
            Span(file, 1, 1, 1, 1),
            "a network needs at least an 'input CxHxW' line and one layer, e.g. 'input 3x32x32' then 'conv 6 5x5'",
        )
    try:
        tree = _lark().parse(normalise_line_breaks(source))
        items = _Builder(file, lines).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, normalise_line_breaks(source), file) from None
    except VisitError as exc:  # a bug in the builder, or recursion; never show lark's internals
        if isinstance(exc.orig_exc, NetError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            raise NetError("the file nests braces too deeply", Span(file, 1, 1, 1, 1)) from None
        raise
    except RecursionError:
        raise NetError("the file nests braces too deeply", Span(file, 1, 1, 1, 1)) from None
    return _assemble(items, source, file)


def _assemble(items: list, source: str, file: str) -> S.Program:
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
                raise NetError("the network is named twice", item[2], f"it is already named '{name}' at line {name_span.line}")
            name, name_span = item[1], item[2]
        elif kind == "input":
            if shape is not None:
                raise NetError("a second 'input' line", item[2], f"the input is already {'x'.join(map(str, shape))} (line {shape_span.line})")
            if layers:
                raise NetError("'input' must come before the first layer", item[2])
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
    return NetError(what, Span(file, line, col, line, col + width), hint)


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
