"""The checks every importer's numbers go through, where they are read (issue 21).

A model file is someone else's data: every size, count and setting read from it is checked here
before anything is computed or allocated from it, and a refusal names the place (the ONNX node,
the Caffe or Darknet layer, and for text formats the line and column in the file itself). The
readers call these few functions; nothing they read reaches Python's own exceptions
(ZeroDivisionError for a stride of 0, MemoryError for a constant of 2^50 values, a product of
dims that wraps to 0).

The bounds (docs/interchange.md lists them):
- a file: at most its format's size (checked from the file's own size before it is read);
- one count or size (a dim, filters, a kernel): a whole number up to MAX_VALUES;
- one tensor: at most MAX_VALUES values (2 GiB of float32, the largest file read), its product
  computed exactly (Python integers), never wrapped;
- one sample's input: at most MAX_VALUES values.
"""
from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..errors import NetError, Span
from ..ops import OPS, ShapeContext

MAX_VALUES = 1 << 29  # 536,870,912 values: 2 GiB of float32, the largest file netdsl reads


@dataclass(frozen=True)
class Place:
    """Where a value was read: the file, the node or layer, and (text formats) the span in the file."""

    path: str
    what: str  # "node 'conv1' (Conv)", "layer 'conv1' (Convolution)", "[convolutional] layer 3"
    span: Span | None = None

    def error(self, message: str, hint: str | None = None, span: Span | None = None) -> NetError:
        """A refusal at this place; with a span the CLI shows the line and a caret, so the message
        leaves the file's name to the span's `file:line:col`."""
        span = span or self.span
        head = f"{self.what}: " if span is not None else f"{self.path}: {self.what}: "
        return NetError(head + message, span, hint)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole(value: Any, what: str, place: Place, low: int = 1, high: int = MAX_VALUES,
          span: Span | None = None) -> int:
    """A whole number in [low, high]: an int, an integral float (3.0), or the text of one ("3");
    anything else (3.5, "abc", True, 2^40) is refused naming `what` and the place."""
    number: int | None = None
    if isinstance(value, np.generic):  # a numpy scalar read out of a tensor: as Python's number
        value = value.item()
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii() and len(text) <= 30:
            number = int(text)
    words = f"a whole number from {low:,} to {high:,}"
    if number is None:
        raise place.error(f"{what} is {_shown(value)}; it must be {words}", span=span)
    if not low <= number <= high:
        raise place.error(f"{what} is {number:,}; it must be {words}", span=span)
    return number


def real(value: Any, what: str, place: Place, span: Span | None = None) -> float:
    """A finite number: an int, a float or the text of one (Darknet's values are text)."""
    number: float | None = None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 60:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise place.error(f"{what} is {_shown(value)}; it must be a finite number", span=span)
    return number


def flag(value: Any, what: str, place: Place, span: Span | None = None) -> bool:
    """A yes/no setting: true/false, or 0/1 (Darknet writes batch_normalize=1)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return bool(whole(value, what, place, low=0, high=1, span=span))


def bounded_product(dims: Iterable[int], what: str, place: Place, limit: int = MAX_VALUES) -> int:
    """The product of `dims`, exactly (Python integers: 2^32 x 2^32 is 2^64, not 0), at most `limit`."""
    total = 1
    dims = list(dims)
    for d in dims:
        total *= d
        if total > limit:
            shown = " x ".join(f"{x:,}" for x in dims)
            raise place.error(f"{what} of {shown} holds more than {limit:,} values",
                              "netdsl reads tensors of at most 2^29 values (2 GiB of float32)")
    return total


def dims(values: Iterable[Any], what: str, place: Place, low: int = 1, limit: int = MAX_VALUES) -> tuple[int, ...]:
    """A shape: whole numbers of at least `low` (0 where a format allows empty tensors), each and
    their product at most `limit`."""
    out = tuple(whole(v, f"a dimension of {what}", place, low=low, high=limit) for v in values)
    bounded_product(out, what, place, limit)
    return out


def check_file(path: str | os.PathLike, limit: int, what: str) -> int:
    """A model file's size from the file system, before a byte is read: a regular file of at most
    `limit` bytes (a 4 GB sparse file is refused by its size, a FIFO or a device never read)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NetError(f"no such file: {path}") from None
    except OSError as exc:
        from ..files import os_error
        raise os_error(exc, "read", path) from None
    if stat.S_ISDIR(info.st_mode):
        raise NetError(f"{path} is a directory, not {what}")
    if not stat.S_ISREG(info.st_mode):
        raise NetError(f"{path} is not a regular file, so not {what}",
                       hint="netdsl reads model files from disk, not from pipes or devices")
    if info.st_size > limit:
        raise NetError(f"{path} is {info.st_size:,} bytes: larger than {limit:,}, the most netdsl reads as {what}",
                       hint="is it the right file?")
    return info.st_size


def read_file(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of a model file: its kind and size checked before it is opened (check_file: a
    FIFO would block open()), then read as many bytes as the file has, not as the bound allows
    (reading `limit` bytes at once would reserve that much memory for a file of a few)."""
    check_file(path, limit, what)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(min(size, limit) + 1)
            if len(data) == size + 1 and size < limit:  # it grew since: the rest, up to the bound
                data += f.read(limit - size)
    except OSError as exc:
        from ..files import os_error
        raise os_error(exc, "read", path) from None
    if len(data) > limit:
        raise NetError(f"{path} is larger than {limit:,} bytes, the most netdsl reads as {what}",
                       hint="is it the right file?")
    return data


def read_text(path: str | os.PathLike, limit: int, what: str) -> str:
    """A model file's text (prototxt, cfg): as read_file, then UTF-8."""
    data = read_file(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NetError(f"{path} is not UTF-8 text, so not {what}") from None


# --- a layer's settings, by the op table's own rules -------------------------------------------------

def _value_types(op: str) -> dict[str, Any]:
    sig = OPS[op].signature
    types: dict[str, Any] = dict(sig.positional)
    types.update(sig.options)
    types.update(sig.keywords)
    if sig.slash:
        types.setdefault(sig.slash, next((t for n, t in sig.positional if n == "kernel"), None))
    return types


def _ints_within(value: Any) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return all(not isinstance(v, int) or isinstance(v, bool) or abs(v) <= MAX_VALUES for v in items)


def layer_settings(op: str, attrs: dict, place: Place) -> None:
    """Every setting an importer gives a layer, checked by the value types the language itself
    binds them with (ops.py): a stride of 0, 3.5 filters, a slope of 2 are refused here, at the
    source's node, never in the imported text."""
    types = _value_types(op)
    flags = {attr for attr, _ in OPS[op].signature.flags.values()} | {"ceil", "count_pad"}
    for key, value in attrs.items():
        if key in flags:
            if not isinstance(value, bool):
                raise place.error(f"{key} is {_shown(value)}; it must be true or false")
            continue
        vtype = types.get(key)
        if vtype is None:
            continue  # an importer's own note (Caffe's bn remembers its Scale layer)
        if value is None:
            raise place.error(f"has no {key}", f"netdsl's {op} needs {vtype.name}")
        if isinstance(value, str):
            if value in vtype.accepts_word:
                continue
            raise place.error(f"{key} is {_shown(value)}; netdsl's {op} needs {vtype.name}")
        try:
            vtype.convert(value)
        except (ValueError, TypeError) as exc:
            shown = "x".join(map(str, value)) if isinstance(value, tuple) else _shown(value)
            raise place.error(f"{key} is {shown}; netdsl's {op} needs {exc.args[0] if exc.args else vtype.name}",
                              vtype.hint) from None
        if not _ints_within(value):
            raise place.error(f"{key} is {value}; netdsl reads sizes and counts up to {MAX_VALUES:,}")


def layer_shape(op: str, attrs: dict, inputs: list[tuple], place: Place, name: str = "") -> tuple:
    """The output shape of one imported layer, its settings checked first (layer_settings); a
    shape the op refuses (a kernel larger than its input) is reported at the source's place."""
    layer_settings(op, attrs, place)
    try:
        shape = OPS[op].shape(inputs, attrs, ShapeContext(None, name or op))
    except NetError as err:
        raise place.error(err.message, err.hint) from None
    bounded_product(shape, f"the output of {op}", place)
    return tuple(shape)
