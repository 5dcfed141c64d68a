"""The source's names as netdsl labels, whatever the source calls its nodes (issue 21).

A model file may name a node anything: `/layer1/layer1.0/conv1/Conv`, `café`, a carriage return,
two megabytes of text, a word of the language (`repeat`), or the same name on five nodes. An
imported text must compile whatever the names, so every label goes through here:

- a name that is a plain netdsl name, not a word of the language, becomes the label;
- any other name becomes a safe label (`/layer1/conv1/Conv` -> `layer1_conv1_Conv`) with the
  original kept in a comment, made printable (control characters escaped) and cut when long;
- a name taken already gets `_2`, `_3`, ...; a name longer than MAX_LABEL is shortened (its
  start, then a digest of the whole, so two long names that start alike stay apart).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from importlib import resources

from ..ops import OPS

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _keywords() -> frozenset[str]:
    """The words of the language, read from the grammar itself: the quoted words of its rules
    (`repeat: "repeat" expr _item`), which a label spelled alike does not parse past. (A named
    terminal's word, `ZEROPAD: "zeropad"`, is read only where its rule expects it.)"""
    grammar = resources.files("netdsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    terminal = re.compile(r"\s*[A-Z_][A-Z0-9_]*(\.\d+)?\s*:")
    rules = [line.split("//", 1)[0] for line in grammar.splitlines() if not terminal.match(line)]
    return frozenset(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', "\n".join(rules)))


KEYWORDS = _keywords()
# Names netdsl gives the nodes a person leaves unlabelled: an op's prefix and a number (conv3,
# relu12), a side output (aux1), a shortcut, a group; block instances take their block's name.
DEFAULT_PREFIXES = frozenset({op.prefix for op in OPS.values() if op.prefix} | {"aux", "shortcut", "group"})
MAX_LABEL = 48
MAX_COMMENT = 120


def plain(name: str | None) -> bool:
    """Whether `name` can stand as a label as it is: a netdsl name of at most MAX_LABEL characters,
    not a keyword. An op's name is a fine label (`fc: fc 1000`), and so is `output` but on a side
    output (whose name it would take from the trunk's)."""
    return bool(name) and len(name) <= MAX_LABEL and bool(NAME.match(name)) and name not in KEYWORDS


def safe(name: str) -> str:
    """A label made from any name: runs of other characters as `_`, a leading digit or a word
    of the language with `n_` before it, a long name cut to its start and a digest of the whole
    (so two long names that start alike stay apart)."""
    head = name[: 4 * MAX_LABEL]  # a 2 MB name is cut before any work on it
    text = unicodedata.normalize("NFKD", head).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "node"
    if text[0].isdigit() or text in KEYWORDS:
        text = "n_" + text
    if len(text) > MAX_LABEL or len(name) > len(head):
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        text = f"{text[:MAX_LABEL - 9].rstrip('_')}_{digest}"
    return text


def comment(name: str) -> str:
    """`name` as one printable line for a `# comment`: line breaks and other control characters
    escaped (`\\r`, `\\x00`, `\\u2028`), cut to MAX_COMMENT characters with its length."""
    shown = "".join(ch.encode("unicode_escape").decode("ascii")
                    if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in name[:MAX_COMMENT])
    return shown + (f"… ({len(name):,} characters)" if len(name) > MAX_COMMENT else "")


def default_like(name: str, blocks: set[str]) -> bool:
    """Whether netdsl could give this name to an unlabelled node (an op's prefix, then digits)."""
    m = re.match(r"^([A-Za-z_]+?)(\d*)$", name)
    return bool(m) and (m.group(1) in DEFAULT_PREFIXES or m.group(1) in blocks)


class Labels:
    """Hands out unique labels: each name claimed once; later claims of it get `_2`, `_3`, ..."""

    def __init__(self, taken: set[str] | None = None):
        self.taken: set[str] = set(taken or ())
        self.next: dict[str, int] = {}

    def claim(self, label: str) -> str:
        if label not in self.taken:
            self.taken.add(label)
            return label
        n = self.next.get(label, 2)
        while f"{label}_{n}" in self.taken:
            n += 1
        self.next[label] = n + 1
        unique = f"{label}_{n}"
        self.taken.add(unique)
        return unique
