"""numpy-vs-CuPy parity of every kernel, forward and backward, in float32 (relative error under
1e-4), on the same graphs as the gradient checks: through both GPU convolution layouts
(batch-major and per-image), and through the optimised graphs whose fused epilogues run as
generated kernels on the GPU. Runs only where CuPy sees a GPU."""
import numpy as np
import pytest

import netdsl
from netdsl.backend import conv
from netdsl.backend.executor import Model

from .test_gradients import GRAD_CASES, MINI_INCEPTION, MINI_RESNET

pytestmark = pytest.mark.gpu

# Every activation behind every producer that takes one as an epilogue (passes/fuse.py).
FUSED = """
input 3x9x9
conv 6 3x3 pad 1; relu
conv 6 3x3 pad 1 nobias; bn; relu6
conv 6 1x1; hsigmoid
conv 6 3x3 pad 1 nobias; bn; hsigmoid
conv 6 3x3 /2 nobias; bn; tanh
add { { conv 6 3x3 pad 1; bn } shortcut }
sigmoid
add { { conv 6 3x3 pad 1; bn } shortcut }
relu6
pool max 2x2 /2; relu
fc 8; relu
fc 5 nobias; tanh
fc 4
softmax
"""


def _rel(a, b):
    """Error relative to the reference's largest entry; gradients that are zero in exact
    arithmetic (a conv bias before batch norm) are rounding noise, judged against 1e-2."""
    return float(np.abs(a - b).max() / max(1e-2, np.abs(b).max()))


def _parity(net, batch=4, training=True, col_budget=None):
    extra = {} if col_budget is None else {"col_budget": col_budget}
    cpu = Model(net, device="cpu", seed=0)
    gpu = Model(net, device="gpu", seed=0, **extra)
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
    assert set(gc) == set(gg)
    for name in gc:
        assert _rel(gpu.device.asnumpy(gg[name]), gc[name]) < 1e-4, name


def _source_net(source):
    last = source.splitlines()[-1].split()[0]
    return netdsl.compile_source(source if last in ("softmax", "svm") else source + "\nflatten")


@pytest.fixture(params=["batch_major", "per_image"])
def layout(request, monkeypatch):
    """per_image: no column budget on the GPU, so every conv runs image by image in chunks of one."""
    if request.param == "per_image":
        monkeypatch.setattr(conv, "GPU_COL_BUDGET", 0)
        return 1
    return None


@pytest.mark.parametrize("op,source", [(op, s) for op, ss in GRAD_CASES.items() for s in ss])
def test_kernel_parity(op, source, layout):
    _parity(_source_net(source), col_budget=layout)


def test_mini_networks_parity(layout):
    _parity(netdsl.compile_source(MINI_INCEPTION), col_budget=layout)
    _parity(netdsl.compile_source(MINI_RESNET), col_budget=layout)


@pytest.mark.parametrize("source", [FUSED, MINI_RESNET, MINI_INCEPTION])
@pytest.mark.parametrize("mode", ["training", "inference"])
def test_fused_epilogues_parity(source, mode):
    net = netdsl.optimise(netdsl.compile_source(source), mode)
    assert any(net.graph.nodes[n].get("epilogue") for n in net.graph.nodes)
    _parity(net, training=mode == "training")


def test_big_conv_parity(layout):
    # the 1x1 conv on a 28x28 map runs per image over its input as it lies (GPU_POINTWISE_MIN_MAP)
    _parity(_source_net("input 64x56x56\nconv 128 3x3 /2 pad 1\nrelu\nconv 48 1x1\nrelu\n"
                        "conv 64 5x5 pad 2 groups 2\npool max 3x3 /2\nfc 10\nsoftmax"), batch=8, col_budget=layout)


BN_MAPS = """
input 3x20x20
conv 8 3x3 pad 1 nobias; bn; relu
conv 8 3x3 /2 pad 1 nobias; bn; tanh
conv 4 1x1 nobias; bn
pool avg global
fc 3
svm
"""


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_bn_one_pass_sums_parity(mode):
    """bn's one-pass per-channel sums walk 20x20 maps map by map and 10x10 ones flat, over the
    batch-major conv's strided output; with and without fused activations, in training and with
    the running statistics."""
    _parity(netdsl.compile_source(BN_MAPS), batch=6, training=mode == "training")
    _parity(netdsl.optimise(netdsl.compile_source(BN_MAPS), mode), batch=6, training=mode == "training")


def test_sgd_step_parity():
    """Two SGD steps (momentum, weight decay) give the same weights on both devices."""
    net = netdsl.compile_source(MINI_RESNET)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, *net.input_shape)).astype(np.float32)
    labels = rng.integers(0, 3, 4)
    weights = []
    for device in ("cpu", "gpu"):
        model = Model(net, device=device, seed=0)
        opt = netdsl.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-3)
        for _ in range(2):
            model.loss(x, labels)
            model.backward()
            opt.step()
        weights.append({k: model.device.asnumpy(v) for k, v in model.parameters().items()})
    for name in weights[0]:
        assert _rel(weights[1][name], weights[0][name]) < 1e-4, name


def test_a_gpu_model_runs_the_gpu_modules():
    """The other side of test_layout's CPU check: on CuPy's arrays the backend/gpu/ code runs."""
    import sys
    net = netdsl.optimise(netdsl.compile_source(FUSED), "training")
    model = Model(net, device="gpu", seed=0)
    opt = netdsl.SGD(model)
    model.loss(np.ones((2, 3, 9, 9), np.float32), [0, 1])
    model.backward()
    opt.step()
    assert {"netdsl.backend.gpu.cuda", "netdsl.backend.gpu.layers"} <= set(sys.modules)
