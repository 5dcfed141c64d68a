"""Finite-difference gradient checking in float64, shared by the gradient tests."""
from __future__ import annotations

import numpy as np

import netdsl
from netdsl.backend.executor import Model


def check_gradients(source: str, batch: int = 2, training: bool = True, samples: int = 12, seed: int = 0,
                    eps: float = 1e-6, tol: float = 1e-5, **model_options) -> list[str]:
    """Compare every parameter's and the input's analytic gradient with central differences at
    `samples` random coordinates each. Returns the names checked; asserts on any mismatch.
    model_options go to Model (col_budget=1 forces convs onto the per-image path)."""
    net = netdsl.compile_source(source)
    model = Model(net, device="cpu", dtype="float64", seed=seed, **model_options)
    rng = np.random.default_rng(seed + 7)
    # Zero biases after a ReLU give pre-activations of exactly 0 (a window of zeros), where ReLU
    # has a kink and central differences see half a slope: jitter every parameter first.
    for value in model.parameters().values():
        value += 0.1 * rng.standard_normal(value.shape)
    x = rng.standard_normal((batch, *net.input_shape))
    classes = net.layer(net.outputs[0][1]).shape[0]
    labels = rng.integers(0, classes, batch)

    def loss() -> float:
        model.reseed()
        return model.loss(x, labels, training=training)

    loss()
    analytic = model.backward(input_grad=True)
    tensors = dict(model.parameters())
    tensors["input"] = x
    checked = []
    for name, arr in tensors.items():
        grad = analytic[name]
        assert grad.shape == arr.shape, name
        flat_idx = rng.choice(arr.size, size=min(samples, arr.size), replace=False)
        for fi in flat_idx:
            idx = np.unravel_index(fi, arr.shape)
            numeric = central_difference(loss, arr, idx, eps)
            err = abs(numeric - grad[idx]) / max(1e-3, abs(numeric) + abs(grad[idx]))
            assert err < tol, f"{name}{list(idx)}: analytic {grad[idx]:.10g} vs numeric {numeric:.10g} (rel {err:.2e})"
        checked.append(name)
    return checked


def central_difference(loss, arr, idx, eps: float) -> float:
    """d loss / d arr[idx] by central differences, arr changed in place and restored."""
    old = arr[idx]
    arr[idx] = old + eps
    plus = loss()
    arr[idx] = old - eps
    minus = loss()
    arr[idx] = old
    return (plus - minus) / (2 * eps)
