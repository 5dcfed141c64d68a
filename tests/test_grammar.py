"""The language: every form the issue lists, written the ways people write it."""

import netdsl


def shapes(src):
    return {l.name: l.shape for l in netdsl.compile_source(src).layers}


def test_layer_forms():
    net = netdsl.compile_source("""network demo
input 3x227x227                  # channels x height x width
conv1: conv 96 11x11 /4          # labelled
pool max 3x3 /2
lrn 5 alpha=0.0001 beta=0.75 k=2
conv 256 5x5 pad 2
conv 384 3 pad same groups 2
conv 64 1x7 pad 0x3 nobias
pool avg 3x3 /1
pool avg global
fc 4096
relu; tanh; sigmoid; bn; dropout 0.5; flatten; softmax
""")
    s = {l.name: l for l in net.layers}
    assert net.name == "demo"
    assert s["conv1"].shape == (96, 55, 55)
    assert s["conv3"].shape == (384, 27, 27) and s["conv3"].weights == 3 * 3 * 128 * 384
    assert s["conv4"].shape == (64, 27, 27) and s["conv4"].biases == 0 and s["conv4"].weights == 7 * 384 * 64
    assert s["pool3"].shape == (64, 1, 1)
    assert s["fc5"].shape == (4096,)  # conv and fc share the lecture's layer counter
    assert [l.op for l in net.layers[-7:]] == ["relu", "tanh", "sigmoid", "bn", "dropout", "flatten", "softmax"]


def test_crlf_tabs_semicolons_and_comments_are_all_fine():
    a = shapes("input 3x32x32\nconv 6 5x5\nrelu\n")
    b = shapes("# lenet start\r\ninput\t3x32x32\r\n\r\n\tconv 6 5x5 ; relu   # done\r\n")
    assert a == b


def test_pool_stride_defaults_to_its_size():
    assert shapes("input 3x32x32\npool max 2x2")["pool1"] == (3, 16, 16)


def test_blocks_defaults_arithmetic_and_hierarchical_names():
    net = netdsl.compile_source("""
input 64x56x56
block bottleneck(c, s=1) {
  add {
    { conv c 1x1 nobias; bn; relu; conv c 3x3 /s pad 1 nobias; bn; relu; conv 4*c 1x1 nobias; bn }
    shortcut
  }
  relu
}
first: bottleneck 64
down: bottleneck 128 s=2
repeat 2 bottleneck 128
""")
    names = [l.name for l in net.layers]
    assert "first/b1/conv3" in names and net.layer("first/b1/conv3").shape == (256, 56, 56)
    assert net.layer("down/add1").shape == (512, 28, 28)
    assert net.layer("down/shortcut/conv").written == "conv 512 1x1 /2 nobias"
    # the repeated copies; labelled instances count too, as labelled convs do (conv1: ...; conv -> conv2)
    assert "bottleneck3/add1" in names and "bottleneck4/add1" in names
    assert "bottleneck3/shortcut/conv" not in names  # shapes match: identity
    assert net.layer("first/b1/conv1").block == (("first", "bottleneck"),)


def test_explicit_projection_branch_and_labelled_branches():
    net = netdsl.compile_source("""
input 64x8x8
add {
  main: { conv 128 3x3 /2 pad 1 }
  proj: { conv 128 1x1 /2 }
}
""")
    assert net.layer("add1").shape == (128, 4, 4)
    assert net.layer("proj/conv1").inputs == ("input",)


def test_side_outputs_leave_the_trunk_unchanged():
    net = netdsl.compile_source("""
input 8x14x14
conv 16 3x3 pad 1
head: side { pool avg 5x5 /3; fc 10; softmax }
conv 16 3x3 pad 1
fc 10
svm
""")
    assert [n for n, _ in net.outputs] == ["output", "head"]
    assert net.layer("conv2").inputs == ("conv1",)
    assert net.layer("head/pool1").shape == (16, 4, 4)
    assert net.layers[-1].op == "svm"


def test_labelled_repeat_and_group():
    net = netdsl.compile_source("""
input 3x8x8
stage: { conv 4 3x3 pad 1; relu }
c: repeat 3 conv 4 3x3 pad 1
""")
    names = [l.name for l in net.layers]
    assert names[1:] == ["stage/conv1", "stage/relu1", "c_1", "c_2", "c_3"]


def test_default_names_skip_user_labels():
    names = [l.name for l in netdsl.compile_source("input 3x8x8\nconv2: conv 4 1x1\nconv 4 1x1\n").layers]
    assert names == ["input", "conv2", "conv3"]


def test_input_vector_and_mlp():
    net = netdsl.compile_source("input 784\nfc 100\nrelu\nfc 10\nsoftmax")
    assert net.totals().params == 784 * 100 + 100 + 100 * 10 + 10


def test_nested_blocks_keep_their_instance_path():
    net = netdsl.compile_source("""
input 3x8x8
block inner(c) { conv c 1x1 }
block outer(c) { inner c; inner 2*c }
o: outer 4
""")
    layer = net.layer("o/inner2/conv1")
    assert layer.shape == (8, 8, 8)
    assert layer.block == (("o", "outer"), ("o/inner2", "inner"))


def test_compile_accepts_a_path_or_text(tmp_path):
    p = tmp_path / "tiny.net"
    p.write_text("input 1x4x4\nfc 2\n")
    assert netdsl.compile(str(p)).name == "tiny"
    assert netdsl.compile(p).name == "tiny"
    assert netdsl.compile("network t\ninput 1x4x4\nfc 2\n").name == "t"


def test_branches_may_share_a_line():
    one_line = netdsl.compile_source("input 4x8x8\nadd { { conv 4 3x3 pad 1; relu; conv 4 3x3 pad 1 } shortcut }\n")
    several = netdsl.compile_source("input 4x8x8\nadd {\n  { conv 4 3x3 pad 1; relu; conv 4 3x3 pad 1 }\n  shortcut\n}\n")
    assert [l.name for l in one_line.layers] == [l.name for l in several.layers]
