"""The optimising passes prove themselves: every network's outputs before and after on random
input (inference), and the loss and every gradient before and after (training)."""
import math
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model
from netdsl.passes import fold_bn, fuse_activation, fuse_elementwise, plan_memory, remove_dropout

from .test_gradients import MINI_INCEPTION, MINI_RESNET

NETS = Path(__file__).resolve().parent.parent / "nets"


def randomise_statistics(model, seed=0):
    """Give batch norm non-trivial scale, shift and running statistics, so folding is tested."""
    rng = np.random.default_rng(seed)
    for name, value in model.buffers().items():
        if name.endswith("running_mean"):
            value[...] = rng.standard_normal(value.shape) * 0.2
        else:
            value[...] = rng.uniform(0.5, 1.5, value.shape)
    for name, value in model.parameters().items():
        if value.ndim == 1:
            value[...] = rng.standard_normal(value.shape) * 0.2 + (1.0 if name.endswith(".weight") else 0.0)


@pytest.mark.parametrize("file", sorted(p.name for p in NETS.glob("*.net")))
def test_inference_passes_keep_every_networks_outputs(file):
    net = netdsl.load(NETS / file)
    fast_net = netdsl.optimise(net, "inference")
    model = Model(net, device="cpu", seed=1)
    randomise_statistics(model)
    fast = Model(fast_net, device="cpu", params_from=model)
    x = np.random.default_rng(2).standard_normal((2, *net.input_shape)).astype(np.float32)
    before = model(x)
    after = fast(x)
    scale = max(1e-6, float(np.abs(before).max()))
    assert float(np.abs(after - before).max()) / scale < 2e-4
    assert len(fast_net.layers) < len(net.layers)


@pytest.mark.parametrize("source", [MINI_INCEPTION, MINI_RESNET, (NETS / "lenet5.net").read_text()],
                         ids=["mini-inception", "mini-resnet", "lenet5"])
def test_training_passes_keep_the_loss_and_every_gradient(source):
    net = netdsl.compile_source(source)
    fused_net = netdsl.optimise(net, "training")
    assert any(d.get("epilogue") for _, d in fused_net.graph.nodes(data=True))
    a = Model(net, device="cpu", dtype="float64", seed=3)
    b = Model(fused_net, device="cpu", dtype="float64", seed=3, params_from=a)  # same dropout stream
    x = np.random.default_rng(4).standard_normal((3, *net.input_shape))
    labels = [0, 1, 2]
    a.reseed(), b.reseed()
    assert b.loss(x, labels) == pytest.approx(a.loss(x, labels), rel=1e-12)
    ga, gb = a.backward(input_grad=True), b.backward(input_grad=True)
    assert set(gb) == set(ga)
    for name in ga:
        np.testing.assert_allclose(gb[name], ga[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_fold_bn_absorbs_every_conv_bn_pair_of_resnet50():
    net = netdsl.load(NETS / "resnet50.net")
    folded = fold_bn(net.graph)
    assert sum(1 for _, d in folded.nodes(data=True) if d["op"] == "bn") == 0
    assert sum(1 for _, d in folded.nodes(data=True) if d.get("folded_bn")) == 53  # 49 convs + 4 projections


def test_fusion_rules():
    net = netdsl.load(NETS / "resnet18.net")
    g = fuse_elementwise(fuse_activation(fold_bn(net.graph)))
    ops = [d["op"] for _, d in g.nodes(data=True)]
    assert "relu" not in ops  # conv+bn+relu and add+relu all fused
    assert g.nodes["conv2_x/basic1/add1"]["epilogue"] == "relu"
    assert g.nodes["conv1"]["written"] == "conv 64 7x7 /2 pad 3 + bn + relu"


def test_dropout_removal_and_dead_side_outputs():
    net = netdsl.load(NETS / "googlenet.net")
    fast = netdsl.optimise(net, "inference")
    assert [name for name, _ in fast.outputs] == ["output"]
    assert not any(l.op == "dropout" or l.name.startswith("aux") for l in fast.layers)
    assert fast.totals().params == 6_998_552  # the aux heads are gone, nothing else changed
    assert remove_dropout(net.graph).number_of_nodes() == net.graph.number_of_nodes() - 3


def test_vgg16_planned_peak_is_the_two_largest_live_activations_not_their_sum():
    net = netdsl.optimise(netdsl.load(NETS / "vgg16.net"), "inference")
    peak = net.graph.graph["planned_peak"]
    two_largest = 2 * 64 * 224 * 224  # conv1_1's output feeding conv1_2's
    total = netdsl.load(NETS / "vgg16.net").totals().activations  # 15,237,608: everything kept
    assert two_largest <= peak <= 1.05 * two_largest
    assert peak < total / 2


def test_memory_plan_shares_buffers_without_overlap():
    g = plan_memory(netdsl.load(NETS / "googlenet.net").graph)
    order = list(g.nodes)
    step = {n: i for i, n in enumerate(order)}
    outputs = {n for _, n in g.graph["outputs"]}
    sizes = g.graph["buffers"]
    assert len(sizes) < len(order) / 3  # buffers are reused
    spans = {}
    for n in order:
        end = len(order) if n in outputs else max([step[c] for c in g.successors(n)], default=step[n])
        b = g.nodes[n]["buffer"]
        assert sizes[b] >= math.prod(g.nodes[n]["shape"])
        spans.setdefault(b, []).append((step[n], end, n))
    for b, lives in spans.items():  # values sharing a buffer are never live at once...
        lives.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(lives, lives[1:]):
            same_storage = g.nodes[n2]["op"] in ("flatten", "relu", "tanh", "sigmoid", "dropout")
            assert s2 > e1 or same_storage, (n1, n2)  # ...unless one is a view or in place of the other


def test_optimised_summary_and_print_after_all(capsys):
    from netdsl.cli import main
    assert main(["summary", str(NETS / "resnet18.net"), "--optimised", "--print-after-all"]) == 0
    captured = capsys.readouterr()
    assert "conv 64 7x7 /2 pad 3 + bn + relu" in captured.out
    assert "planned peak" in captured.out
    for name in ("fold_bn", "fuse_activation", "fuse_elementwise", "plan_memory"):
        assert f"IR after {name}" in captured.err


@pytest.mark.parametrize("pass_name,file", [
    ("eliminate_dead", "googlenet.net"),
    ("remove_dropout", "alexnet.net"),
    ("fold_bn", "resnet18.net"),
    ("fuse_activation", "alexnet.net"),
    ("fuse_elementwise", "resnet18.net"),
    ("plan_memory", "googlenet.net"),
])
def test_each_pass_alone_keeps_the_outputs(pass_name, file):
    """Every optimising pass on its own, on a network where it has work to do."""
    import netdsl.passes as P
    from netdsl.compiler import Network
    net = netdsl.load(NETS / file)
    changed = P.run_pipeline(net.graph, (getattr(P, pass_name), P.count, P.activation_memory))
    assert changed.nodes != net.graph.nodes or pass_name == "plan_memory"
    model = Model(net, device="cpu", seed=5)
    randomise_statistics(model)
    other = Model(Network(changed), device="cpu", params_from=model)
    x = np.random.default_rng(6).standard_normal((1, *net.input_shape)).astype(np.float32)
    before, after = model(x), other(x)
    assert float(np.abs(after - before).max()) / max(1e-6, float(np.abs(before).max())) < 2e-4


BN_TANH = "input 3x6x6\nconv 4 3x3 pad 1 nobias\nbn\ntanh\nflatten\nfc 3\nsoftmax"


@pytest.mark.parametrize("source", [MINI_RESNET, BN_TANH], ids=["mini-resnet", "bn-tanh"])
def test_fused_graph_over_small_blocks_and_threads(source, fine_grained_work):
    """The same check with batch norm and pooling working one channel a block, the blocks
    shared out over two threads: fused ReLU and tanh inside bn's blocks, every boundary crossed."""
    test_training_passes_keep_the_loss_and_every_gradient(source)
