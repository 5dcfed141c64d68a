"""One small graph per op (as ONNX shape inference tests do), and a walk over the op table so
that a new op without a shape case or a diagram style fails here."""
import math
from pathlib import Path

import pytest

import netdsl
from netdsl.ops import OPS, STYLES

# op -> (input, layer line(s), expected output shape of the last layer, expected params)
SHAPE_CASES = {
    "input": ("3x7x9", "relu", (3, 7, 9), 0),
    "conv": ("4x9x7", "conv 6 3x2 /2x1 pad 1x0 groups 2", (6, 5, 6), 6 * 2 * 3 * 2 + 6),
    "pool": ("3x9x9", "pool max 3x3 /2 pad 1", (3, 5, 5), 0),
    "fc": ("2x3x3", "fc 5", (5,), 18 * 5 + 5),
    "relu": ("2x3x3", "relu", (2, 3, 3), 0),
    "tanh": ("2x3x3", "tanh", (2, 3, 3), 0),
    "sigmoid": ("2x3x3", "sigmoid", (2, 3, 3), 0),
    "leaky": ("2x3x3", "leaky 0.1", (2, 3, 3), 0),
    "lrn": ("6x4x4", "lrn 3 alpha=0.001 beta=0.5 k=1", (6, 4, 4), 0),
    "bn": ("5x4x4", "bn eps=0.001", (5, 4, 4), 10),
    "dropout": ("7", "dropout 0.3", (7,), 0),
    "flatten": ("2x3x4", "flatten", (24,), 0),
    "concat": ("2x5x5", "concat {\n{ conv 3 1x1 }\n{ pool max 3x3 /1 pad 1 }\n}", (5, 5, 5), 3 * 2 + 3),
    "add": ("2x5x5", "add {\n{ conv 2 3x3 pad 1 nobias }\nshortcut\n}", (2, 5, 5), 2 * 2 * 9),
    "shortcut": ("2x6x6", "add {\n{ conv 4 3x3 /2 pad 1 nobias; bn }\nshortcut\n}", (4, 3, 3),
                 4 * 2 * 9 + 8 + 4 * 2 + 8),  # projection: 1x1 conv /2 (no bias) + bn
    "softmax": ("10", "softmax", (10,), 0),
    "svm": ("10", "svm margin=2", (10,), 0),
    # the zoo's ops (issue 26)
    "relu6": ("2x3x3", "relu6", (2, 3, 3), 0),
    "hsigmoid": ("2x3x3", "hsigmoid", (2, 3, 3), 0),
    "hswish": ("2x3x3", "hswish", (2, 3, 3), 0),
    "silu": ("2x3x3", "silu", (2, 3, 3), 0),
    # SE: pool, 1x1 conv 8 -> 2 (+bias), 1x1 conv 2 -> 8 (+bias): 8*2+2 + 2*8+8
    "gate": ("8x5x5", "gate {\nshortcut\n{ pool avg global; conv 2 1x1; relu; conv 8 1x1; sigmoid }\n}",
             (8, 5, 5), 8 * 2 + 2 + 2 * 8 + 8),
    # option A: (7 - 1)//2 + 1 = 4 rows; 4 zero channels added, no parameters
    "zeropad": ("4x7x7", "zeropad 8 /2", (8, 4, 4), 0),
    "split": ("6x3x3", "split 3 take 2", (2, 3, 3), 0),
    "shuffle": ("6x3x3", "shuffle 3", (6, 3, 3), 0),
}


@pytest.mark.parametrize("op", sorted(SHAPE_CASES))
def test_shape_case(op):
    inp, body, shape, params = SHAPE_CASES[op]
    net = netdsl.compile_source(f"input {inp}\n{body}\n")
    assert net.layers[-1].shape == shape
    assert net.totals().params == params


def test_every_op_has_a_shape_case_and_a_style():
    assert set(OPS) == set(SHAPE_CASES), "add a SHAPE_CASES row for the new op"
    for op in OPS.values():
        assert op.style in STYLES, f"{op.name} has no diagram style"
        assert op.doc
        assert op.kind in ("opaque", "elementwise", "reduction", "injective", "merge", "head", "source")


def test_params_come_from_the_parameter_shapes():
    net = netdsl.load(Path(__file__).resolve().parent.parent / "nets" / "resnet18.net")
    for node, data in net.graph.nodes(data=True):
        assert data["weights"] + data["biases"] == sum(math.prod(s) for _, s in data["params"])
