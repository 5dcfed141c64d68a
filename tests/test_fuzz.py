"""No input, however broken, produces anything but a NetError (property-based, hypothesis)."""
import gzip
import json
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetError
from netdsl.train import data as datasets

NETS = sorted((Path(__file__).resolve().parent.parent / "nets").glob("*.net"))
SOURCES = [p.read_text() for p in NETS if p.stat().st_size < 4000]  # the small ones keep it quick
TOKENS = ["conv", "pool", "fc", "{", "}", ";", "\n", "x", "/", "0", "-1", "99999", "3x3", "pad", "same",
          "groups", "add", "concat", "shortcut", "repeat", "side", "block", "(", ")", "=", "*", ":",
          "\t", "\r\n", "#", "é", "\x00", "nobias", "global", "max", "input", "1e9", "2.5",
          # line endings (issue 14): old Mac CR, form feed, vertical tab, Unicode separators
          "\r", "\f", "\v", "\u2028", "\u2029", "\x85",
          # signs and operators, spaced and glued: '1 -1' is two arguments, '/' a stride or a division
          "-", " -", "- ", "+", " + ", "*", " * ", " /", "/ ", "(c/2)", "( 1 - 1 )", "(0/0)", "1e999",
          "k=0", "alpha=-1", "pad 9", "repeat 99999"]


def _flip_sign(text: str, draw) -> str:
    """One number of the text negated, or one operator swapped for another."""
    import re
    spots = [m.start() for m in re.finditer(r"[0-9]+|[-+*/]", text)]
    if not spots:
        return text
    pos = draw(st.sampled_from(spots))
    if text[pos] in "-+*/":
        return text[:pos] + draw(st.sampled_from("-+*/")) + text[pos + 1:]
    return text[:pos] + "-" + text[pos:]


def _line_endings(text: str, draw) -> str:
    return text.replace("\n", draw(st.sampled_from(["\r", "\r\n", "\n\r", "\f\n", "\u2028"])))


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "sign", "endings"]))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        end = min(len(text), pos + draw(st.integers(1, 12)))
        if kind == "sign":
            text = _flip_sign(text, draw)
        elif kind == "endings":
            text = _line_endings(text, draw)
        elif kind == "insert":
            text = text[:pos] + piece + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[end:]
        elif kind == "replace":
            text = text[:pos] + piece + text[end:]
        else:
            text = text[:pos] + text[pos:end] + text[pos:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_nets_compile_or_raise_net_error(text):
    try:
        net = netdsl.compile_source(text, "fuzz.net", memory_limit=2**28)
    except NetError as err:
        assert err.message
        err.render(text)  # rendering must not fail either
    else:
        assert net.layers


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "x.net"
    p.write_bytes(data)
    try:
        netdsl.load(p)
    except NetError as err:
        assert err.message


# --- every file reader, fed random bytes and headers that look right ---------------------------

def _idx_header(draw) -> bytes:
    ndim = draw(st.integers(0, 5))
    dims = [draw(st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1))) for _ in range(ndim)]
    magic = bytes([0, 0, draw(st.sampled_from([8, 8, 9])), ndim])
    return magic + b"".join(d.to_bytes(4, "big") for d in dims)


@st.composite
def idx_files(draw):
    head = _idx_header(draw) if draw(st.booleans()) else b""
    body = draw(st.binary(max_size=64))
    data = head + body
    return gzip.compress(data) if draw(st.booleans()) else data


@st.composite
def checkpoint_files(draw):
    """Random bytes, or a safetensors header (sometimes well-formed, sometimes lying) and a body."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=128))
    entries = {}
    offset = 0
    for i in range(draw(st.integers(0, 3))):
        shape = draw(st.lists(st.integers(0, 2**20), max_size=4))
        dtype = draw(st.sampled_from(["F32", "F64", "I8", "U8", "BOOL", "F32X"]))
        size = draw(st.integers(0, 64))
        entries[draw(st.sampled_from(["conv1.weight", "conv1.bias", "fc2.weight", f"x{i}", "optim:velocity.a"]))] = {
            "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    meta = draw(st.sampled_from([{}, {"format": "netdsl-checkpoint-2", "info": "{"},
                                 {"format": "netdsl-checkpoint-2", "info": "[]", "source": "input 1x8x8"},
                                 {"format": "netdsl-checkpoint-1", "info": '{"epoch": -3}'}]))
    header = json.dumps({"__metadata__": meta, **entries}).encode()
    claimed = draw(st.sampled_from([len(header), len(header) + 7, 2**40]))
    return struct.pack("<Q", claimed) + header + draw(st.binary(min_size=0, max_size=offset + 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(idx_files())
def test_idx_reader_never_crashes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("idx")
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        p = folder / name
        p.write_bytes(data)
        try:
            datasets.read_idx(p)
        except NetError as err:
            assert str(p) in err.message


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3073 * 2 + 5))
def test_cifar_reader_never_crashes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cifar")
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(data)
    try:
        datasets.load_cifar10(str(folder))
    except NetError as err:
        assert str(folder) in err.message


TINY = "input 1x8x8\nconv 4 3x3 pad 1\nrelu\npool max 2x2\nfc 10\nsoftmax\n"


@settings(max_examples=200, deadline=None)
@given(checkpoint_files())
def test_checkpoint_reader_never_crashes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("ck") / "ck.safetensors"
    p.write_bytes(data)
    model = netdsl.Model(netdsl.compile_source(TINY), device="cpu")
    try:
        model.load(p, netdsl.SGD(model), warn=lambda s: None)
    except NetError as err:
        assert str(p) in err.message
