"""The activations as layers of their own (relu, tanh, sigmoid, relu6, hsigmoid: the rules of
activation_rules; leaky; hswish, silu) and dropout: elementwise, their gradients from what their forward kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..device import on_gpu
from .activation_rules import ACTIVATIONS
from .variants import Kernel, Variant, always, kernel


@dataclass
class Output:
    out: Any  # the layer's output, which its gradient is a function of


def activation_kernel(name: str) -> Kernel:
    """An epilogue activation (activation_rules) run as a layer: the rule on a copy of its input."""
    rule = ACTIVATIONS[name]

    def forward(node, inputs):
        x = inputs[0]  # the CPU rules work in place; the GPU's kernel writes a new array
        out = rule.apply(node.xp, x if on_gpu(node.xp) else x.copy())
        return out, Output(out)

    def backward(node, saved: Output, dout, need_dx):
        return [rule.grad(node.xp, dout, saved.out)]
    return kernel(Variant("reference", always, forward, backward))


def leaky_forward(node, inputs):
    """x where x > 0, else slope * x. Not an epilogue (it has a parameter: ops.OpSpec.epilogue),
    so it runs as its own pass on both devices."""
    (x,) = inputs
    out = node.xp.where(x > 0, x, x * x.dtype.type(node.attrs["slope"]))
    return out, Output(out)


def leaky_backward(node, saved: Output, dout, need_dx):
    # from the output: y > 0 exactly where x > 0 (the slope is 0 or more, under 1)
    return [node.xp.where(saved.out > 0, dout, dout * dout.dtype.type(node.attrs["slope"]))]


LEAKY = kernel(Variant("reference", always, leaky_forward, leaky_backward))


@dataclass
class Mask:
    mask: Any  # kept / (1 - p), or None where nothing is dropped


def dropout_forward(node, inputs):
    (x,) = inputs
    p = node.attrs["p"]
    if not node.training or p == 0:
        return x, Mask(None)
    keep = node.rng_uniform(x.shape) >= p
    mask = keep.astype(x.dtype) / (1 - p)  # inverted dropout: evaluation needs no rescaling
    return x * mask, Mask(mask)


def dropout_backward(node, saved: Mask, dout, need_dx):
    return [dout if saved.mask is None else dout * saved.mask]


DROPOUT = kernel(Variant("reference", always, dropout_forward, dropout_backward))


# MobileNet v3's and EfficientNet's activations (issue 26), layers of their own (not epilogues: they
# differentiate from their input, ops.OpSpec.epilogue). Each as (forward: x -> y, gradient:
# (dy, x, y) -> dx). relu6 and hsigmoid, whose gradients are functions of their output, are
# epilogues: rules of activation_rules.py, run as layers by activation_kernel.


def _hswish(xp, x):
    return x * xp.clip(x * (1 / 6) + 0.5, 0, 1)


def _hswish_grad(xp, dy, x, y):
    # 0 below -3, 1 above 3, (2x + 3)/6 between (PyTorch's hardswish_backward)
    slope = xp.where(x < -3, 0, xp.where(x > 3, 1, x * (1 / 3) + 0.5)).astype(dy.dtype)
    return dy * slope


def _sigmoid(xp, x):
    return xp.exp(-xp.logaddexp(0, -x))  # 1/(1 + e^-x) without overflow


def _silu(xp, x):
    return x * _sigmoid(xp, x)


def _silu_grad(xp, dy, x, y):
    s = _sigmoid(xp, x)
    return dy * (s * (1 + x * (1 - s)))



@dataclass
class InOut:
    x: Any
    y: Any


def _rule_kernel(apply, grad) -> Kernel:
    def forward(node, inputs):
        (x,) = inputs
        y = apply(node.xp, x)
        return y, InOut(x, y)

    def backward(node, saved: InOut, dout, need_dx):
        return [grad(node.xp, dout, saved.x, saved.y)]
    return kernel(Variant("reference", always, forward, backward))


HSWISH = _rule_kernel(_hswish, _hswish_grad)
SILU = _rule_kernel(_silu, _silu_grad)
