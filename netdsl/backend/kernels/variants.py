"""How the kernel table runs an op: its device variants, chosen in one place and recorded.

An op's kernel is a list of variants, each a named record `(name, applies, forward, backward)`:
the reference path first (the formula over `xp`, numpy or CuPy: it runs anywhere and the tests
measure the others against it), then the faster ones in order of preference. A forward pass runs
the first faster variant that applies, else the reference, and records it on the node
(`node.variant`) with the state its forward saved (`node.saved`, a small dataclass of the
variant's own); the backward pass runs that same variant's backward on that state. So a backward
never has to work out which forward ran, as conv.py's paths never have to.

A variant that sets `epilogue` applies its node's fused activation itself (passes/fuse.py): its
forward returns the activated output and its backward is handed the gradient of that output
(the activation's output is `node.epilogue_out`). Otherwise the executor applies the activation
after the forward and its gradient before the backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..device import on_gpu
from .activation_rules import ACTIVATIONS


@dataclass(frozen=True)
class Variant:
    name: str
    applies: Callable[[Any, list], bool]  # (node, inputs) -> whether this variant serves them
    forward: Callable[[Any, list], tuple[Any, Any]]  # (node, inputs) -> (output, saved state)
    backward: Callable[[Any, Any, Any, bool], list]  # (node, saved, dout, need_dx) -> input gradients
    epilogue: bool = False  # applies the node's fused activation itself, both ways
    # computes the layer by an algorithm of its own (the depthwise kernels): conv.py's algorithms,
    # and the tuner's choice among them, do not apply where it does
    own_algorithm: bool = False


def always(node, inputs) -> bool:
    return True


@dataclass(frozen=True)
class Kernel:
    """One op's entry in the table. `forward(node, inputs)` returns the output and records the
    variant that ran; `backward(node, dout, need_dx)` returns the inputs' gradients (None where
    not needed) and fills `node.grads` for the parameters."""

    forward: Callable
    backward: Callable
    # heads only: (node, x, labels) -> (loss, dx); the loss of the whole batch, averaged
    loss: Callable | None = None
    variants: tuple[Variant, ...] = ()  # the reference first (for reading and for the tests)


def _run_forward(node, variant: Variant, inputs):
    node.variant = variant
    out, node.saved = variant.forward(node, inputs)
    return out


def _run_backward(node, dout, need_dx):
    return node.variant.backward(node, node.saved, dout, need_dx)


def kernel(*variants: Variant, loss: Callable | None = None) -> Kernel:
    """The kernel of an op with these variants, the reference first."""
    reference, faster = variants[0], variants[1:]

    def forward(node, inputs):
        chosen = next((v for v in faster if v.applies(node, inputs)), reference)
        return _run_forward(node, chosen, inputs)
    return Kernel(forward, _run_backward, loss, variants)


def special_variant(kernel_: Kernel, node, inputs) -> Variant | None:
    """The variant of its own algorithm (`own_algorithm`) that would serve these inputs, if any."""
    return next((v for v in kernel_.variants[1:] if v.own_algorithm and v.applies(node, inputs)), None)


def kernel_by(attr: str, table: dict[Any, tuple[Variant, ...]]) -> Kernel:
    """The kernel of an op that is several ops under one name (pool max | avg): one list of
    variants per value of `attr`, each with its own reference first."""
    kernels = {value: kernel(*variants) for value, variants in table.items()}

    def forward(node, inputs):
        return kernels[node.attrs[attr]].forward(node, inputs)
    return Kernel(forward, _run_backward, None, tuple(v for vs in table.values() for v in vs))


# what variants ask --------------------------------------------------------------------------------


def gpu_layers(node, inputs=None) -> bool:
    """Whether bn, LRN and max pooling run as the GPU's whole-layer kernels (gpu/layers.py)."""
    if not on_gpu(node.xp):
        return False
    from ..gpu.layers import ENABLED
    return ENABLED


def gpu(node, inputs=None) -> bool:
    return on_gpu(node.xp)


def through_epilogue(node, dout):
    """The gradient reaching a node's own output, from that of its fused activation's output."""
    if not node.epilogue:
        return dout
    return ACTIVATIONS[node.epilogue].grad(node.xp, dout, node.epilogue_out)


def chain_out(node, expr: str, operands: dict):
    """A producer's last elementwise step (bias, sum) as one CUDA kernel generated for this chain,
    with the node's fused activation applied in the same pass (a variant with `epilogue`)."""
    from ..gpu.cuda import chain
    return chain(tuple(operands), expr, node.epilogue)(*operands.values())
