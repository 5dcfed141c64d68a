"""The GPU back end's control flow on machines without a GPU: a stand-in array module named
`cupy` (numpy underneath) sends the executor down every GPU-only branch (batch-major convs for
all layouts, strided conv outputs, activation gradients fused into the conv's transposed copy,
generated chain kernels, the one-kernel SGD update), with numpy versions of the CUDA kernels.
What only a GPU can check (the CUDA code itself) is tests/test_gpu.py's, on a GPU."""
import types

import numpy as np
import pytest

import netdsl
from netdsl.backend import im2col
from netdsl.backend.gpu import cuda as gpu_kernels
from netdsl.backend.gpu import layers as gpu_layers
from netdsl.backend.device import Device
from netdsl.backend.executor import Model
from netdsl.backend.kernels import ACTIVATIONS

from .test_gpu import FUSED
from .test_gradients import GRAD_CASES, MINI_INCEPTION, MINI_RESNET

_NUMPY_ACTIVATIONS = {None: lambda v: v, "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
                      "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "relu6": lambda v: np.minimum(np.maximum(v, 0), 6),
                      "hsigmoid": lambda v: np.minimum(np.maximum(v + 3, 0), 6) / 6}


def _chain(operands, expr, activation):
    """The generated kernel's meaning: activation(expr) over the named operands (the expressions
    the back end generates are Python too: sums and products of names)."""
    def kernel(*arrays):
        return _NUMPY_ACTIVATIONS[activation](eval(expr, {}, dict(zip(operands, arrays))))
    return kernel


def _sgd_update():
    def kernel(g, momentum, decay, lr, w, v):
        v[...] = momentum * v + g + decay * w
        w -= lr * v
    return kernel


@pytest.fixture
def stand_in(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
    monkeypatch.setattr(gpu_kernels, "im2col", lambda x, geo, batch_major=False: (
        im2col.im2col_batch_major(np, x, geo) if batch_major else im2col.im2col(np, x, geo)))
    monkeypatch.setattr(gpu_kernels, "col2im", lambda cols, geo, n=None: (
        im2col.col2im(np, cols, geo) if n is None else im2col.col2im_batch_major(np, cols, geo, n)))
    monkeypatch.setattr(gpu_kernels, "chain", _chain)
    monkeypatch.setattr(gpu_kernels, "activation_grad", lambda name: lambda dy, y: ACTIVATIONS[name][1](np, dy, y))
    monkeypatch.setattr(gpu_kernels, "sgd_update", _sgd_update)
    monkeypatch.setattr(gpu_layers, "ENABLED", False)  # their CUDA bodies have no stand-in
    return Device("gpu", fake, "numpy standing in for CuPy")


def _compare(net, device, batch=3, training=None):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((batch, *net.input_shape))
    labels = rng.integers(0, net.layer(net.outputs[0][1]).shape[0], batch)
    if training is None:
        training = not any(l.op == "dropout" for l in net.layers)
    models = [Model(net, device="cpu", dtype="float64", seed=0), Model(net, device=device, dtype="float64", seed=0)]
    losses = [m.loss(x, labels, training=training) for m in models]
    assert losses[1] == pytest.approx(losses[0], rel=1e-12)
    grads = [m.backward(input_grad=True) for m in models]
    assert set(grads[0]) == set(grads[1])
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], rtol=1e-9, atol=1e-12, err_msg=name)
    for m in models:
        netdsl.SGD(m, lr=0.1, momentum=0.9, weight_decay=1e-2).step()
    for name, w in models[0].parameters().items():
        np.testing.assert_allclose(models[1].parameters()[name], w, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("source", [s for ss in GRAD_CASES.values() for s in ss])
def test_gpu_branches_match_the_cpu(source, stand_in):
    last = source.splitlines()[-1].split()[0]
    _compare(netdsl.compile_source(source if last in ("softmax", "svm") else source + "\nflatten"), stand_in)


def test_gpu_pointwise_convs_per_image_match_the_cpu(stand_in, monkeypatch):
    """1x1 convs on large maps run as batched GEMMs over the input as it lies; with the
    threshold at one position every 1x1 conv of the inception block does, fused and not."""
    from netdsl.backend import conv
    monkeypatch.setattr(conv, "GPU_POINTWISE_MIN_MAP", 1)
    _compare(netdsl.compile_source(MINI_INCEPTION), stand_in)
    _compare(netdsl.optimise(netdsl.compile_source(MINI_INCEPTION), "training"), stand_in)


def _bn_statistics(x3, running_mean, running_var, momentum, eps):
    count = x3.shape[0] * x3.shape[2]
    mean, var = x3.mean(axis=(0, 2)), x3.var(axis=(0, 2))
    running_mean[...] = running_mean * (1 - momentum) + momentum * mean
    running_var[...] = running_var * (1 - momentum) + momentum * var * count / max(count - 1, 1)
    return mean, 1 / np.sqrt(var + eps)


def _bn_apply(x3, mean, inv_std, gamma, beta, activation):
    col = lambda v: v.reshape(1, -1, 1)  # noqa: E731
    xhat = (x3 - col(mean)) * col(inv_std)
    return xhat, _NUMPY_ACTIVATIONS[activation](xhat * col(gamma) + col(beta))


def _bn_backward(dy3, y3, xhat3, gamma, inv_std, training, activation):
    g = ACTIVATIONS[activation][1](np, dy3, y3) if activation else dy3
    dbeta, dgamma = g.sum(axis=(0, 2)), (g * xhat3).sum(axis=(0, 2))
    inv_count = 1 / (g.shape[0] * g.shape[2]) if training else 0.0
    col = lambda v: v.reshape(1, -1, 1)  # noqa: E731
    return col(gamma * inv_std) * (g - col(dbeta) * inv_count - xhat3 * col(dgamma) * inv_count), dgamma, dbeta


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_gpu_bn_layer_kernel_glue_matches_the_cpu(stand_in, monkeypatch, mode):
    """The executor's side of the whole-layer bn kernels (what it hands them, what it keeps),
    with numpy standing in for their CUDA bodies, which tests/test_gpu.py checks on a GPU."""
    monkeypatch.setattr(gpu_layers, "ENABLED", True)
    monkeypatch.setattr(gpu_layers, "bn_statistics", _bn_statistics)
    monkeypatch.setattr(gpu_layers, "bn_apply", _bn_apply)
    monkeypatch.setattr(gpu_layers, "bn_backward", _bn_backward)
    _compare(netdsl.optimise(netdsl.compile_source(MINI_RESNET), mode), stand_in, training=mode == "training")
    _compare(netdsl.compile_source(MINI_RESNET), stand_in, training=mode == "training")


@pytest.mark.parametrize("source", [FUSED, MINI_RESNET, MINI_INCEPTION])
def test_gpu_branches_match_the_cpu_fused(source, stand_in):
    net = netdsl.optimise(netdsl.compile_source(source), "training")
    assert any(net.graph.nodes[n].get("epilogue") for n in net.graph.nodes)
    _compare(net, stand_in)
