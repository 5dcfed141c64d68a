"""No input, however broken, produces anything but a NetError (property-based, hypothesis)."""
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetError

NETS = sorted((Path(__file__).resolve().parent.parent / "nets").glob("*.net"))
SOURCES = [p.read_text() for p in NETS if p.stat().st_size < 4000]  # the small ones keep it quick
TOKENS = ["conv", "pool", "fc", "{", "}", ";", "\n", "x", "/", "0", "-1", "99999", "3x3", "pad", "same",
          "groups", "add", "concat", "shortcut", "repeat", "side", "block", "(", ")", "=", "*", ":",
          "\t", "\r\n", "#", "é", "\x00", "nobias", "global", "max", "input", "1e9", "2.5"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        end = min(len(text), pos + draw(st.integers(1, 12)))
        if kind == "insert":
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
