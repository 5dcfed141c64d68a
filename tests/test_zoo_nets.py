"""The zoo (issue 26): every network in nets/zoo/ against its published counts, its explain text,
its drawing (clusters per block), a training step on the CPU and onnxruntime's agreement.

Counts at 224x224 are torchvision's published figures (parameters; multiply-adds of conv and fc),
the CIFAR ResNets' are the ResNet paper's Table 6 (0.27M / 0.85M / 1.7M) with the exact figures of
the widely used reimplementation (akamaster/pytorch_resnet_cifar10), and NiN's is worked by hand
below. Running the big ones at 224 would take minutes on two cores: they run at 3x32x32, which
keeps every layer (the parameters do not depend on the map size: a global pool precedes the fc).
"""
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backend.executor import Model
from netdsl.init import initial_state
from netdsl.render import DrawOptions, diagram

ZOO = Path(__file__).resolve().parent.parent / "nets" / "zoo"

PUBLISHED = [  # file, parameters, multiply-adds (None: not published)
    ("densenet121", 7_978_856, 2_834_161_664),
    ("densenet169", 14_149_480, None),
    ("densenet201", 20_013_928, None),
    ("resnext50_32x4d", 25_028_904, 4_230_479_872),
    ("wide_resnet50_2", 68_883_240, 11_398_021_120),
    ("squeezenet1_0", 1_248_424, 818_924_576),
    ("squeezenet1_1", 1_235_496, 349_151_936),
    ("mobilenet_v2", 3_504_872, 300_774_272),
    ("mobilenet_v3_large", 5_483_032, 216_589_760),
    ("efficientnet_b0", 5_288_548, 385_814_752),
    ("shufflenet_v2_x1_0", 2_278_604, 144_907_992),
    ("resnet20_cifar", 269_722, None),
    ("resnet56_cifar", 853_018, None),
    ("resnet110_cifar", 1_727_962, None),
]

# NiN (CIFAR-10), (k*k*cin + 1)*cout per conv: mlpconv1 5x5 3->192, 1x1 ->160, ->96; mlpconv2 5x5
# 96->192, 1x1 ->192, ->192; mlpconv3 3x3 192->192, 1x1 ->192, ->10.
NIN_PARAMS = ((25 * 3 + 1) * 192 + (192 + 1) * 160 + (160 + 1) * 96 + (25 * 96 + 1) * 192 + 2 * (192 + 1) * 192
              + (9 * 192 + 1) * 192 + (192 + 1) * 192 + (192 + 1) * 10)

ALL = sorted(p.stem for p in ZOO.glob("*.net"))


@pytest.fixture(scope="module")
def nets():
    return {name: netdsl.load(ZOO / f"{name}.net") for name in ALL}


def test_the_zoo_is_complete():
    assert set(ALL) == {name for name, _, _ in PUBLISHED} | {"nin_cifar10"}


@pytest.mark.parametrize("name,params,macs", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_counts(nets, name, params, macs):
    totals = nets[name].totals()
    assert totals.params == params
    if macs is not None:
        assert totals.macs == macs


def test_cifar_resnets_round_to_the_papers_figures(nets):
    for name, millions in (("resnet20_cifar", 0.27), ("resnet56_cifar", 0.85), ("resnet110_cifar", 1.7)):
        assert round(nets[name].totals().params / 1e6, 2 if millions < 1 else 1) == millions
        # option A: no projection anywhere, a zeropad where each of stages 2 and 3 begins
        assert not [l for l in nets[name].layers if "shortcut/conv" in l.name]
        assert [l.name for l in nets[name].layers if l.op == "zeropad"] == [
            "stage2/basic1/shortcut/zeropad", "stage3/basic1/shortcut/zeropad"]


def test_nin_by_hand(nets):
    assert nets["nin_cifar10"].totals().params == NIN_PARAMS == 966_986
    assert nets["nin_cifar10"].layer("mlpconv3/conv3").shape == (10, 8, 8)


@pytest.mark.parametrize("name", ALL)
def test_opens_with_its_paper_and_ends_in_a_head(nets, name):
    text = (ZOO / f"{name}.net").read_text()
    assert text.startswith("# ") and "Variant:" in text
    assert nets[name].layers[-1].op == "softmax"
    # SqueezeNet's first conv floors (224 - 7)/2 + 1 = 109.5, as torchvision's does
    assert len(nets[name].warnings) == (1 if name.startswith("squeezenet") else 0)


def test_blocks_are_blocks(nets):
    """A DenseNet is four dense blocks and three transitions; its dense layers hold their input."""
    d = nets["densenet121"]
    kinds = {}
    for layer in d.layers:
        for path, kind in layer.block:
            kinds.setdefault(kind, set()).add(path)
    assert len(kinds["dense_block"]) == 4 and len(kinds["transition"]) == 3
    assert len(kinds["dense_layer"]) == 6 + 12 + 24 + 16
    concat = d.layer("denseblock1/dense_layer1/concat1")
    assert concat.inputs[0] == "pool0" and concat.shape == (96, 56, 56)
    assert d.layer("denseblock4/dense_layer16/concat1").shape == (1024, 7, 7)  # torchvision's 1024 features
    # the widths of the papers' tables
    assert nets["mobilenet_v3_large"].layer("bneck4/se1/gate1").shape == (72, 28, 28)
    assert nets["shufflenet_v2_x1_0"].layer("stage4/unit3/shuffle1").shape == (464, 7, 7)
    assert nets["efficientnet_b0"].layer("stage7/mb_down1/mbconv1/conv3").shape == (320, 7, 7)


def test_explain_and_draw(nets):
    mb = nets["mobilenet_v2"]
    dw = mb.explain("stage1/ir_down1/expand_filter_project1/conv2")
    assert "depthwise: one 3x3 filter per channel, 9 weights each" in str(dw)
    assert "gate: each of the 72 channels" in str(nets["mobilenet_v3_large"].explain("bneck4/se1/gate1"))
    assert "channels 0..63 of 64 + 32" in str(nets["densenet121"].explain("denseblock1/dense_layer2/concat1")) or \
        "64 + 32 = 96" in str(nets["densenet121"].explain("denseblock1/dense_layer1/concat1"))
    for name in ("densenet121", "shufflenet_v2_x1_0", "mobilenet_v3_large", "resnet20_cifar"):
        source = diagram(nets[name], DrawOptions(depth=2)).source
        assert "subgraph cluster" in source, name


def _small(name: str) -> netdsl.Network:
    text = (ZOO / f"{name}.net").read_text()
    return netdsl.compile_source(text.replace("input 3x224x224", "input 3x32x32"), f"{name}.net")


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v3_large", "efficientnet_b0", "shufflenet_v2_x1_0",
                                  "squeezenet1_1", "resnet20_cifar", "nin_cifar10"])
def test_training_step_on_the_cpu(name):
    net = _small(name)
    model = Model(net, device="cpu", seed=0)
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape)).astype(np.float32)
    classes = net.layers[-1].shape[0]
    loss = model.loss(x, np.array([1, classes - 1]), training=True)
    grads = model.backward()
    assert np.isfinite(loss) and set(grads) == set(model.parameters())
    assert all(np.isfinite(g).all() for g in grads.values())
    assert sum(float(np.abs(g).sum()) > 0 for g in grads.values()) > 0.9 * len(grads)


@pytest.mark.parametrize("name", ALL)
def test_onnxruntime_agrees(name):
    import onnxruntime as ort

    from netdsl.interchange.onnx_export import export_onnx
    net = _small(name)
    state = initial_state(net.graph, seed=1)
    model = export_onnx(net, None, state)
    m = Model(net, device="cpu")
    m.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape)).astype(np.float32)
    want = m.forward(x)["output"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": x})
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
