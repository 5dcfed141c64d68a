"""The kernel table: forward and backward for every op, keyed by the op table's names.

One module per family: dense (conv with its depthwise variant, fc; convolution's algorithms are
backend/conv.py's), pooling, normalisation (LRN, batch norm), activations (and dropout), joins
(input, flatten, concat, add, gate), channels (zeropad, split, shuffle), heads (softmax, svm).
Each op's kernel is a list of named variants, the reference first, chosen in one place and
recorded on the node (variants.py). Every kernel is written
against `xp` (numpy or CuPy); layout NCHW.

Adding an op: its entry in netdsl/ops.py, its variants in the family's module here, its row
below, its ONNX mapping (interchange/onnx_export.py) and a gradient case (tests/test_gradients.py).
An activation that may be fused (ops.OpSpec.epilogue) also needs its rule in activation_rules.py,
its C gradient (cpu/native.py), its CUDA expressions (gpu/cuda.py) and its ONNX type:
tests/test_epilogue_table.py names what is missing.
"""
from __future__ import annotations

from .activation_rules import ACTIVATIONS, Activation
from .activations import DROPOUT, HSWISH, LEAKY, SILU, activation_kernel
from .channels import SHUFFLE, SPLIT, ZEROPAD
from .dense import CONV, FC
from .heads import SOFTMAX, SVM
from .joins import ADD, CONCAT, FLATTEN, GATE, IDENTITY
from .normalisation import BN, LRN, update_running
from .pooling import POOL
from .variants import Kernel, Variant

KERNELS: dict[str, Kernel] = {
    "input": IDENTITY,
    "conv": CONV,
    "fc": FC,
    "pool": POOL,
    **{name: activation_kernel(name) for name in ACTIVATIONS},  # relu, tanh, sigmoid, relu6, hsigmoid
    "leaky": LEAKY,
    "hswish": HSWISH,
    "silu": SILU,
    "dropout": DROPOUT,
    "lrn": LRN,
    "bn": BN,
    "flatten": FLATTEN,
    "concat": CONCAT,
    "add": ADD,
    "gate": GATE,
    "zeropad": ZEROPAD,
    "split": SPLIT,
    "shuffle": SHUFFLE,
    "softmax": SOFTMAX,
    "svm": SVM,
}

__all__ = ["ACTIVATIONS", "Activation", "KERNELS", "Kernel", "Variant", "update_running"]
