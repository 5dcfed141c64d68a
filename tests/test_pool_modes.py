"""Issue 15's language features against float64 references written here: ceil rounding, average
pooling without the padding in its divisor, leaky ReLU; and against ONNX's own node tests (the
cases the `onnx` package generates for MaxPool, AveragePool and LeakyRelu) on the same inputs."""
import math

import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model


def reference_pool(x, mode, k, s, p, ceil=False, count_pad=True):
    """Window by window in float64: each output's window in input coordinates, the rule written
    out (a ceil-mode last window that would start in the right padding is dropped)."""
    n, c, h, w = x.shape

    def size(length, kk, ss, pp):
        if ceil:
            out = math.ceil((length + 2 * pp - kk) / ss) + 1
            return out - 1 if (out - 1) * ss >= length + pp else out
        return (length + 2 * pp - kk) // ss + 1
    oh, ow = size(h, k[0], s[0], p[0]), size(w, k[1], s[1], p[1])
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            r1, c1 = r0 + k[0], c0 + k[1]
            rows = slice(max(r0, 0), min(r1, h))
            cols = slice(max(c0, 0), min(c1, w))
            win = x[:, :, rows, cols].astype(np.float64)
            if mode == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                if count_pad:
                    divisor = (min(r1, h + p[0]) - r0) * (min(c1, w + p[1]) - c0)
                else:
                    divisor = win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / divisor
    return out


CASES = [  # (input CxHxW, pool line, mode, kernel, stride, pad, ceil, count_pad)
    ((2, 6, 6), "pool max 3x3 /2 ceil", "max", (3, 3), (2, 2), (0, 0), True, True),
    ((2, 5, 5), "pool max 2x2 /2 pad 1 ceil", "max", (2, 2), (2, 2), (1, 1), True, True),  # one dropped
    ((3, 7, 6), "pool avg 3x3 /2 pad 1 ceil", "avg", (3, 3), (2, 2), (1, 1), True, True),
    ((2, 5, 5), "pool avg 3x3 /2 pad 1 exclude_pad", "avg", (3, 3), (2, 2), (1, 1), False, False),
    ((2, 6, 6), "pool avg 3x3 /2 pad 1 ceil exclude_pad", "avg", (3, 3), (2, 2), (1, 1), True, False),
    ((2, 8, 7), "pool avg 2x3 /2x2 pad 1x1 ceil", "avg", (2, 3), (2, 2), (1, 1), True, True),
    ((2, 13, 13), "pool max 3x3 /2 ceil", "max", (3, 3), (2, 2), (0, 0), True, True),  # 13 tiles: no extra
    ((2, 112, 112), "pool max 3x3 /2 ceil", "max", (3, 3), (2, 2), (0, 0), True, True),  # GoogLeNet's in Caffe
]


@pytest.mark.parametrize("chw, line, mode, k, s, p, ceil, count_pad", CASES, ids=[c[1] for c in CASES])
def test_pool_modes_match_the_float64_reference(chw, line, mode, k, s, p, ceil, count_pad, cpu_kernels):
    net = netdsl.compile_source(f"input {'x'.join(map(str, chw))}\n{line}\nflatten")
    x = np.random.default_rng(1).standard_normal((3, *chw)).astype(np.float32)
    want = reference_pool(x, mode, k, s, p, ceil, count_pad)
    assert net.layer("pool1").shape == want.shape[1:]
    model = Model(net, device="cpu")
    model.forward(x, keep=True)
    got = model.value("pool1")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_ceil_shape_rule_and_explain():
    net = netdsl.compile_source("input 1x5x5\npool max 2x2 /2 pad 1 ceil\nflatten")
    assert net.layer("pool1").shape == (1, 3, 3)  # ceil(2.5) + 1 = 4, the 4th starts in the padding
    text = net.explain("pool1")
    assert ("output (5 + 2*1 - 2)/2 + 1 = 3.5, ceiled to 4; window 4 would start at 5 in the right padding "
            "(input ends at 4), so it is dropped: 3") in text
    assert not net.warnings  # the floor note is for floor layers


def test_floor_warning_stays_for_floor_layers():
    net = netdsl.compile_source("input 1x6x6\npool max 3x3 /2\nflatten")
    assert net.warnings and "floored to 2" in net.warnings[0].message


def test_average_divisor_is_stated_in_explain():
    inc = netdsl.compile_source("input 1x5x5\npool avg 3x3 /2 pad 1\nflatten").explain("pool1")
    exc = netdsl.compile_source("input 1x5x5\npool avg 3x3 /2 pad 1 exclude_pad\nflatten").explain("pool1")
    assert "divided by its 3*3 = 9 positions, padding counted" in inc
    assert "divided by the input values it covers (exclude_pad: padding not counted)" in exc


@pytest.mark.parametrize("line, words", [
    ("pool max 3x3 exclude_pad", "exclude_pad is for average pooling"),
    ("pool avg global ceil", "takes no pad, stride, ceil or exclude_pad"),
    ("leaky 1.5", "slope must be from 0 up to \\(not including\\) 1, not 1.5"),
    ("leaky -0.1", "slope must be from 0 up to .* not -0.1"),
])
def test_feature_misuse_is_refused(line, words):
    with pytest.raises(netdsl.NetError, match=words):
        netdsl.compile_source(f"input 2x8x8\n{line}\nflatten")


def test_leaky_matches_its_definition():
    net = netdsl.compile_source("input 2x3x3\nleaky 0.2\nflatten")
    x = np.random.default_rng(2).standard_normal((4, 2, 3, 3)).astype(np.float32)
    model = Model(net, device="cpu")
    np.testing.assert_allclose(model(x), np.where(x > 0, x, 0.2 * x).reshape(4, -1), rtol=1e-6)
    assert netdsl.compile_source("input 2x3x3\nleaky\nflatten").graph.nodes["leaky1"]["attrs"]["slope"] == 0.1


def test_receptive_field_and_diagram_follow_ceil():
    net = netdsl.compile_source("input 3x13x13\npool max 3x3 /2 ceil\nconv 4 3x3\nflatten")
    assert net.layer("pool1").rf.size == (3, 3) and net.layer("conv1").rf.size == (7, 7)
    from netdsl.views.render import diagram
    assert "pool max 3x3 /2 ceil" in diagram(net).source


# --- ONNX's node tests -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_cases():
    import warnings
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)  # once: the op_type filter only applies to a first call
    return {c.name: c for c in cases if c.model.graph.node and
            c.model.graph.node[0].op_type in ("MaxPool", "AveragePool", "LeakyRelu")}


def _as_netdsl(node, shape):
    """One ONNX pooling or LeakyRelu node as a netdsl line, or None where netdsl has no such layer
    (dilations, asymmetric or automatic padding, 1-D/3-D, integer types)."""
    from onnx import helper
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    if node.op_type == "LeakyRelu":
        return f"leaky {a.get('alpha', 0.01):g}"
    if len(shape) != 4 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(
            d != 1 for d in a.get("dilations", [1, 1])) or "storage_order" in a:
        return None
    k = a["kernel_shape"]
    st = a.get("strides", [1, 1])
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        return None
    mode = "max" if node.op_type == "MaxPool" else "avg"
    line = f"pool {mode} {k[0]}x{k[1]} /{st[0]}x{st[1]} pad {pads[0]}x{pads[1]}"
    if a.get("ceil_mode"):
        line += " ceil"
    if mode == "avg" and not a.get("count_include_pad", 0):
        line += " exclude_pad"
    return line


def test_onnx_node_tests_for_ceil_count_include_pad_and_leaky(onnx_cases, cpu_kernels):
    wanted = ["test_maxpool_2d_ceil", "test_maxpool_2d_ceil_output_size_reduce_by_one",
              "test_averagepool_2d_ceil", "test_averagepool_2d_pads", "test_averagepool_2d_pads_count_include_pad",
              "test_averagepool_2d_precomputed_pads_count_include_pad", "test_leakyrelu", "test_leakyrelu_default",
              "test_leakyrelu_example"]
    checked = []
    for name in sorted(onnx_cases):
        case = onnx_cases[name]
        (inputs, outputs), = case.data_sets[:1]
        x, want = np.asarray(inputs[0]), np.asarray(outputs[0])
        if x.dtype != np.float32:
            continue
        node = case.model.graph.node[0]
        line = _as_netdsl(node, x.shape)
        if line is None:
            continue
        if node.op_type == "LeakyRelu":  # elementwise: any shape, as a batch of vectors
            shaped = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
            net = netdsl.compile_source(f"input {shaped.shape[1]}\n{line}")
            got = Model(net, device="cpu")(shaped).reshape(want.shape)
        else:
            net = netdsl.compile_source(f"input {'x'.join(map(str, x.shape[1:]))}\n{line}")
            got = Model(net, device="cpu")(x)
        # ONNX's backend test runner's tolerances: some expected outputs are written to 4 digits
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7, err_msg=name)
        checked.append(name)
    missing = [w for w in wanted if w not in checked]
    assert not missing, f"these ONNX node tests did not run: {missing}"
