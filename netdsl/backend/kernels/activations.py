"""The activations as layers of their own (relu, tanh, sigmoid: the rules of activation_rules;
leaky) and dropout: elementwise, their gradients from what their forward kept."""
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
