"""The activations that may run as an epilogue (netdsl.ops.EPILOGUES), each as a rule: a
forward on an array (in place on the CPU) and a gradient from the OUTPUT y. Written this way so
that the same rule serves the standalone ops and the fused epilogues (passes/fuse.py). On the
GPU both run as one generated kernel from gpu/cuda.py's expressions of the same rule.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ..device import on_gpu
from ..cpu.threads import over_batch


class Activation(NamedTuple):
    apply: Callable  # (xp, a) -> activation(a); on the CPU in place
    grad: Callable  # (xp, dy, y) -> dx, from the activation's output y


def _relu_inplace(xp, a):
    over_batch(xp, a.shape[0], a.size, lambda lo, hi: xp.maximum(a[lo:hi], 0, out=a[lo:hi]))
    return a


# The gradient rules write a C-ordered result in dy's logical shape even where dy and y are
# transposed views: a conv writes its activation's gradient straight into its GEMM's layout.
def _relu_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    over_batch(xp, dy.shape[0], dy.size, lambda lo, hi: xp.multiply(dy[lo:hi], y[lo:hi] > 0, out=dx[lo:hi]))
    return dx


def _tanh_inplace(xp, a):
    over_batch(xp, a.shape[0], a.size, lambda lo, hi: xp.tanh(a[lo:hi], out=a[lo:hi]))
    return a


def _tanh_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)

    def work(lo, hi):  # dy * (1 - y^2), in one buffer
        d = dx[lo:hi]
        xp.multiply(y[lo:hi], y[lo:hi], out=d)
        xp.subtract(1, d, out=d)
        xp.multiply(d, dy[lo:hi], out=d)
    over_batch(xp, dy.shape[0], dy.size, work)
    return dx


def _sigmoid_inplace(xp, a):
    # 1/(1+e^-a) without overflow: e^(-log(1 + e^-a))
    xp.negative(a, out=a)
    xp.logaddexp(0, a, out=a)
    xp.negative(a, out=a)
    return xp.exp(a, out=a)


def _sigmoid_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    xp.subtract(1, y, out=dx)
    dx *= y
    dx *= dy
    return dx


# relu6 and hsigmoid are piecewise linear: their gradient is the slope where the output lies strictly
# between the clamps, 0 on and beyond them. PyTorch's hardtanh_backward and hardsigmoid_backward
# mask with the input strictly inside (0, 6) and (-3, 3): at x exactly 0, 6, -3 or 3 the gradient is
# 0, which is what the output's test gives (y = 0 or y = 6 there; hsigmoid's y = 0 or 1).
def _relu6_inplace(xp, a):
    over_batch(xp, a.shape[0], a.size, lambda lo, hi: xp.clip(a[lo:hi], 0, 6, out=a[lo:hi]))
    return a


def _relu6_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)

    def work(lo, hi):
        yb = y[lo:hi]
        xp.multiply(dy[lo:hi], (yb > 0) & (yb < 6), out=dx[lo:hi])
    over_batch(xp, dy.shape[0], dy.size, work)
    return dx


def _hsigmoid_inplace(xp, a):
    def work(lo, hi):  # relu6(x + 3)/6 = clip(x/6 + 1/2, 0, 1), in the array itself
        b = a[lo:hi]
        b *= 1 / 6
        b += 0.5
        xp.clip(b, 0, 1, out=b)
    over_batch(xp, a.shape[0], a.size, work)
    return a


def _hsigmoid_grad(xp, dy, y):
    dx = xp.empty(dy.shape, dtype=dy.dtype)

    def work(lo, hi):
        yb, d = y[lo:hi], dx[lo:hi]
        xp.multiply(dy[lo:hi], (yb > 0) & (yb < 1), out=d)
        d *= 1 / 6
    over_batch(xp, dy.shape[0], dy.size, work)
    return dx


def _device_rule(name: str, cpu_apply, cpu_grad) -> Activation:
    """The CPU rule, or on the GPU the activation as one generated CUDA kernel each way."""
    def apply(xp, a):
        if on_gpu(xp):
            from ..gpu.cuda import chain
            return chain(("x",), "x", name)(a)
        return cpu_apply(xp, a)

    def grad(xp, dy, y):
        if on_gpu(xp):
            from ..gpu.cuda import activation_grad
            return activation_grad(name)(dy, y)
        return cpu_grad(xp, dy, y)
    return Activation(apply, grad)


ACTIVATIONS: dict[str, Activation] = {
    "relu": _device_rule("relu", _relu_inplace, _relu_grad),
    "tanh": _device_rule("tanh", _tanh_inplace, _tanh_grad),
    "sigmoid": _device_rule("sigmoid", _sigmoid_inplace, _sigmoid_grad),
    "relu6": _device_rule("relu6", _relu6_inplace, _relu6_grad),
    "hsigmoid": _device_rule("hsigmoid", _hsigmoid_inplace, _hsigmoid_grad),
}
