"""Every network in nets/ against published numbers, and the lecture's worked figures.

Reference values come from the papers, torchvision and the lecture (cited per row), never from
netdsl itself.
"""
from pathlib import Path

import pytest

import netdsl

NETS = Path(__file__).resolve().parent.parent / "nets"

# (file, params, MACs) -- torchvision's published counts for the ResNets and VGGs, the papers
# and the lecture for the others (see the table).
PUBLISHED = [
    ("lenet5.net", 61_706, 416_520),
    ("alexnet.net", 62_378_344, 1_135_256_096),
    ("alexnet2012.net", 60_965_224, 724_406_816),
    ("vgg16.net", 138_357_544, 15_470_264_320),
    ("vgg19.net", 143_667_240, 19_632_062_464),
    ("resnet18.net", 11_689_512, 1_814_073_344),
    ("resnet34.net", 21_797_672, 3_663_761_408),
    ("resnet50.net", 25_557_032, 4_089_184_256),
    ("resnet101.net", 44_549_160, 7_801_405_440),
    ("resnet152.net", 60_192_808, 11_513_626_624),
]


@pytest.mark.parametrize("file,params,macs", PUBLISHED)
def test_published_counts(file, params, macs):
    net = netdsl.load(NETS / file)
    totals = net.totals()
    assert totals.params == params
    assert totals.macs == macs
    assert totals.flops == 2 * macs


def test_googlenet_with_and_without_auxiliary_heads():
    net = netdsl.load(NETS / "googlenet.net")
    assert net.totals(with_side_outputs=False).params == 6_998_552
    assert net.totals(with_side_outputs=True).params == 13_378_280
    assert net.totals(with_side_outputs=False).macs == 1_582_671_872
    assert [name for name, _ in net.outputs] == ["output", "aux1", "aux2"]
    shapes = {l.name: l.shape for l in net.layers}
    assert all(shapes[node] == (1000,) for _, node in net.outputs)
    # the paper's Table 1 output sizes
    assert shapes["inception3a/concat1"] == (256, 28, 28)
    assert shapes["inception3b/concat1"] == (480, 28, 28)
    assert shapes["inception4e/concat1"] == (832, 14, 14)
    assert shapes["inception5b/concat1"] == (1024, 7, 7)
    modules = {path for l in net.layers for path, kind in l.block if kind == "inception"}
    assert len(modules) == 9


def test_zfnet_by_hand():
    # (kh*kw*cin + 1)*cout per conv, (in + 1)*out per fc, with the paper's sizes:
    # conv1 7x7x3 -> 96, conv2 5x5x96 -> 256, conv3-5 3x3 with 512, 1024, 512 (the lecture),
    # pool3 leaves 512x6x6 = 18,432 inputs to fc6.
    expected = ((7 * 7 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 512
                + (3 * 3 * 512 + 1) * 1024 + (3 * 3 * 1024 + 1) * 512
                + (512 * 6 * 6 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000)
    net = netdsl.load(NETS / "zfnet.net")
    assert net.totals().params == expected == 107_627_624
    assert net.layer("conv1").shape == (96, 110, 110)  # the paper's figure 3
    assert net.layer("pool1").shape == (96, 55, 55)
    assert net.layer("conv2").shape == (256, 26, 26)
    assert net.layer("pool3").shape == (512, 6, 6)


def test_alexnet_lecture_figures():
    net = netdsl.load(NETS / "alexnet.net")
    conv1 = net.layer("conv1")
    assert conv1.shape == (96, 55, 55)  # (227 - 11)/4 + 1 = 55
    assert conv1.weights == 11 * 11 * 3 * 96 == 34_848
    assert conv1.biases == 96
    pool1 = net.layer("pool1")
    assert pool1.shape == (96, 27, 27)  # (55 - 3)/2 + 1 = 27
    assert pool1.params == 0


def test_alexnet_224_floors_and_warns():
    net = netdsl.compile_source("input 3x224x224\nconv1: conv 96 11x11 /4\n")
    assert net.layer("conv1").shape == (96, 54, 54)
    (w,) = net.warnings
    assert "(224 - 11)/4 + 1 = 54.25, floored to 54" in w.message
    assert (w.span.line, w.span.column) == (2, 8)  # the caret goes under the conv itself


def test_three_stacked_3x3_see_7x7_with_fewer_weights():
    c = 64
    stacked = netdsl.compile_source(f"input {c}x32x32\nconv {c} 3x3 pad 1 nobias\nconv {c} 3x3 pad 1 nobias\n"
                                    f"conv {c} 3x3 pad 1 nobias")
    single = netdsl.compile_source(f"input {c}x32x32\nconv {c} 7x7 pad 3 nobias")
    assert stacked.layers[-1].rf.size == (7, 7)
    assert single.layers[-1].rf.size == (7, 7)
    assert stacked.totals().params == 27 * c * c  # (3*3*C*C)*3
    assert single.totals().params == 49 * c * c


def test_vgg16_activation_memory_matches_cs231n_table():
    net = netdsl.load(NETS / "vgg16.net")
    assert net.totals().activations == 15_237_608
    assert 138_000_000 < net.totals().params < 139_000_000


def test_naive_inception_module():
    net = netdsl.compile_source("""
input 256x28x28
concat {
  { conv 128 1x1 }
  { conv 192 3x3 pad same }
  { conv 96 5x5 pad same }
  { pool max 3x3 /1 pad 1 }
}
""")
    assert net.layers[-1].shape == (672, 28, 28)
    assert net.totals().macs == 854_196_224


def test_resnet50_structure():
    net = netdsl.load(NETS / "resnet50.net")
    adds = [l for l in net.layers if l.op == "add"]
    assert len(adds) == 16
    projections = [l.name for l in net.layers if "/shortcut/" in l.name and l.op == "conv"]
    assert projections == ["conv2_x/bottleneck1/shortcut/conv", "conv3_x/bottleneck1/shortcut/conv",
                           "conv4_x/bottleneck1/shortcut/conv", "conv5_x/bottleneck1/shortcut/conv"]
    assert net.layer("conv3_x/bottleneck1/shortcut/conv").written == "conv 512 1x1 /2 nobias"
    assert net.layers[-1].shape == (1000,)
    assert net.layer("conv5_x/bottleneck3/relu1").shape == (2048, 7, 7)


@pytest.mark.parametrize("file", sorted(p.name for p in NETS.glob("*.net")))
def test_every_net_compiles_cleanly_and_opens_with_its_paper(file):
    text = (NETS / file).read_text()
    assert text.startswith("#"), "each net opens with a comment naming the paper and the variant"
    net = netdsl.load(NETS / file)
    assert net.warnings == ()
    assert net.layers[-1].op in ("softmax", "svm")
