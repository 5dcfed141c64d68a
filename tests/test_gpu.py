"""numpy-vs-CuPy parity of every kernel, forward and backward, in float32 (relative error under
1e-4), on the same graphs as the gradient checks. Runs only where CuPy sees a GPU."""
import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model

from .test_gradients import GRAD_CASES, MINI_INCEPTION, MINI_RESNET

pytestmark = pytest.mark.gpu


def _rel(a, b):
    return float(np.abs(a - b).max() / max(1e-6, np.abs(b).max()))


def _parity(source, batch=4, training=True):
    net = netdsl.compile_source(source)
    cpu = Model(net, device="cpu", seed=0)
    gpu = Model(net, device="gpu", seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    classes = net.layer(net.outputs[0][1]).shape[0]
    labels = rng.integers(0, classes, batch)
    if any(l.op == "dropout" for l in net.layers):
        training = False  # the two devices draw different masks
    lc = cpu.loss(x, labels, training=training)
    lg = gpu.loss(x, labels, training=training)
    assert abs(lc - lg) <= 1e-4 * max(1.0, abs(lc))
    for name, _ in net.outputs:
        assert _rel(gpu.device.asnumpy(gpu._values[gpu.index[dict(net.outputs)[name]]]),
                    cpu._values[cpu.index[dict(net.outputs)[name]]]) < 1e-4
    gc, gg = cpu.backward(input_grad=True), gpu.backward(input_grad=True)
    for name in gc:
        assert _rel(gpu.device.asnumpy(gg[name]), gc[name]) < 1e-4, name


@pytest.mark.parametrize("op,source", [(op, s) for op, ss in GRAD_CASES.items() for s in ss])
def test_kernel_parity(op, source):
    last = source.splitlines()[-1].split()[0]
    _parity(source if last in ("softmax", "svm") else source + "\nflatten")


def test_mini_networks_parity():
    _parity(MINI_INCEPTION)
    _parity(MINI_RESNET)


def test_big_conv_parity():
    _parity("input 64x56x56\nconv 128 3x3 /2 pad 1\nrelu\nconv 64 5x5 pad 2 groups 2\npool max 3x3 /2\nfc 10\nsoftmax",
            batch=8)
