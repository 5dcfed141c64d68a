"""Every op's gradient against finite differences in float64, at several shapes (stride > 1,
padding, groups, odd sizes), and whole small networks of each architecture family."""
import pytest

from netdsl.backend.executor import check_kernel_table
from netdsl.backend.kernels import KERNELS
from netdsl.ops import LOWERED, OPS

from .gradcheck import check_gradients

# op -> sources; each runs with `flatten` appended (unless it ends in a head), whose output
# feeds softmax cross-entropy, so the loss depends on every output value.
GRAD_CASES = {
    "input": ["input 2x3x3\nflatten"],
    "conv": ["input 4x7x6\nconv 4 3x3 /2 pad 1 groups 2",
             "input 3x5x5\nconv 2 2x3 pad 0x1",
             "input 2x6x6\nconv 3 1x1",
             "input 2x9x9\nconv 2 5x5 /3 pad 2 nobias",
             "input 3x7x5\nconv 2 3x1 /2x1",
             "input 2x18x17\nconv 3 3x3 pad 1",  # a map of 306 positions: one GEMM per image
             "input 4x18x18\nconv 4 3x3 /1 pad 1 groups 2",
             "input 3x4x5\nconv 4 4x5",
             "input 2x6x7\nconv 3 3x3 /2 padend 1",  # TensorFlow's SAME at stride 2: more padding after
             "input 2x5x5\nconv 2 2x2 pad 1 padend 0x1"],  # one window covers the whole input (LeNet's c5): no columns
    "pool": ["input 2x7x7\npool max 3x3 /2 pad 1",
             "input 2x6x6\npool max 2x2",
             "input 3x7x7\npool avg 3x3 /2",
             "input 2x5x5\npool avg 3x3 /2 pad 1",
             "input 3x5x4\npool avg global",
             "input 2x6x4\npool avg 2x2",      # windows that tile the input: one broadcast
             "input 2x6x6\npool avg 3x2 /3x2",
             "input 2x5x6\npool max 2x3 /1",
             # ceil rounding (an extra window, and one dropped for starting in the right padding)
             # and average pooling's divisor without the padding (issue 15)
             "input 2x6x6\npool max 3x3 /2 ceil",
             "input 2x5x5\npool max 2x2 /2 pad 1 ceil",
             "input 2x6x7\npool avg 3x3 /2 pad 1 ceil",
             "input 2x5x5\npool avg 3x3 /2 pad 1 exclude_pad",
             "input 2x6x6\npool avg 3x3 /2 pad 1 ceil exclude_pad",
             "input 2x5x5\npool max 2x2 /1 padend 1",  # Darknet's odd maxpool padding
             "input 2x6x5\npool avg 3x3 /2 padend 1",
             "input 2x6x6\npool avg 3x3 /2 pad 1 padend 1 exclude_pad ceil"],
    "fc": ["input 2x3x3\nfc 4", "input 5\nfc 3 nobias"],
    "relu": ["input 2x3x3\nrelu"],
    "tanh": ["input 2x3x3\ntanh"],
    "sigmoid": ["input 2x3x3\nsigmoid"],
    "leaky": ["input 2x3x3\nleaky 0.1", "input 7\nleaky 0.3", "input 2x3x3\nconv 2 3x3 pad 1\nleaky"],
    "lrn": ["input 6x3x3\nlrn 5 alpha=0.1 beta=0.75 k=2", "input 4x2x3\nlrn 2 alpha=0.5 beta=0.6 k=1"],
    "bn": ["input 3x4x4\nbn", "input 5\nbn", "input 2x3x3\nconv 3 3x3 pad 1\nbn momentum=0.5"],
    "dropout": ["input 3x4x4\ndropout 0.3", "input 7\ndropout 0.5"],
    "flatten": ["input 2x3x3\nflatten"],
    "concat": ["input 2x5x5\nconcat {\n{ conv 2 1x1 }\n{ conv 3 3x3 pad 1 }\n{ pool max 3x3 /1 pad 1 }\n}"],
    "add": ["input 2x5x5\nadd {\n{ conv 2 3x3 pad 1 }\nshortcut\n}",
            "input 2x6x6\nadd {\n{ conv 4 3x3 /2 pad 1 nobias; bn }\nshortcut\n}"],
    "softmax": ["input 6\nsoftmax", "input 2x2x2\nfc 5\nsoftmax", "input 2x3x3\nfc 5\nsoftmax\nfc 3"],
    "svm": ["input 6\nsvm", "input 6\nsvm margin=2"],
    # the zoo's ops (issue 26); a bias shift keeps the inputs off the kinks at 0, 6 and +-3
    "relu6": ["input 2x3x3\nconv 2 1x1\nrelu6", "input 2x3x3\nrelu6"],
    "hsigmoid": ["input 2x3x3\nhsigmoid", "input 7\nfc 5\nhsigmoid"],
    "hswish": ["input 2x3x3\nhswish", "input 2x4x4\nconv 3 3x3 pad 1\nhswish"],
    "silu": ["input 2x3x3\nsilu"],
    "gate": ["input 4x3x3\ngate {\nshortcut\n{ pool avg global; conv 2 1x1; relu; conv 4 1x1; sigmoid }\n}",
             "input 4x3x3\ngate {\n{ conv 4 1x1 }\n{ pool avg global; fc 2; relu; fc 4; hsigmoid }\n}"],
    "zeropad": ["input 2x5x5\nzeropad 4 /2", "input 3x4x4\nzeropad 5",
                "input 2x6x6\nadd {\n{ conv 4 3x3 /2 pad 1 nobias; bn }\nshortcut zeropad\n}"],
    "split": ["input 4x3x3\nconcat {\n{ split 2 take 2 }\n{ split 2 take 1; conv 2 1x1 }\n}"],
    "shuffle": ["input 6x2x3\nconv 6 1x1\nshuffle 3", "input 4x3x3\nshuffle 2"],
}


# ops whose CPU kernels come in two implementations, compiled (native.py) and numpy: checked with each
NATIVE_OPS = ("conv", "pool", "bn", "concat", "add")

DEPTHWISE_CASES = ["input 4x7x7\nconv 4 3x3 /2 pad 1 groups 4", "input 3x6x5\nconv 3 5x5 pad 2 groups 3 nobias",
                   "input 3x6x6\nconv 3 3x3 /2 padend 1 groups 3\nrelu", "input 2x5x5\nconv 2 3x1 /1x2 groups 2"]


@pytest.mark.parametrize("source", DEPTHWISE_CASES, ids=["strided", "5x5-nobias", "padend-relu", "3x1"])
def test_depthwise_kernel_gradient(source):
    """The depthwise variant of conv (backend/kernels/dense.py), with a fused relu and TensorFlow's padend."""
    check_gradients(source + "\nflatten")


def test_concat_with_the_block_input_gradient():
    """DenseNet's dense layer: the input itself is one of the concat's branches."""
    checked = check_gradients("input 3x4x4\nconcat {\nshortcut\n{ bn; relu; conv 2 3x3 pad 1 nobias }\n}\n"
                              "concat { shortcut; { conv 2 1x1 } }\nflatten", batch=3)
    assert "b2/conv1.weight" in checked


def _cases(native: bool):
    for op, sources in GRAD_CASES.items():
        if (op in NATIVE_OPS) == native:
            for i, src in enumerate(sources):
                yield pytest.param(op, src, id=f"{op}-{i}")


def _check_op(op, source):
    last_op = source.splitlines()[-1].split()[0]
    ends_in_head = last_op in OPS and OPS[last_op].is_head
    full = source if ends_in_head else source + "\nflatten"
    batch = 4 if op == "bn" else 2
    checked = check_gradients(full, batch=batch)
    assert "input" in checked


@pytest.mark.parametrize("op,source", list(_cases(native=False)))
def test_gradient(op, source):
    _check_op(op, source)


@pytest.mark.parametrize("op,source", list(_cases(native=True)))
def test_gradient_both_cpu_kernels(op, source, cpu_kernels):
    _check_op(op, source)


@pytest.mark.parametrize("source", GRAD_CASES["conv"], ids=[f"conv-{i}" for i in range(len(GRAD_CASES["conv"]))])
def test_conv_gradient_by_native_columns(source, monkeypatch):
    """The compiled im2col/col2im paths for the thin layers the direct kernels otherwise take."""
    from netdsl.backend.cpu import direct
    monkeypatch.setattr(direct, "MAX_INNER", 0)
    _check_op("conv", source)


def test_bn_gradient_in_evaluation_mode(cpu_kernels):
    check_gradients("input 3x4x4\nbn\nflatten", batch=3, training=False)


def test_every_op_has_a_kernel_and_a_gradient_check():
    assert check_kernel_table() == []
    lowered = LOWERED  # rewritten into conv + bn or nothing before execution
    assert set(GRAD_CASES) == set(OPS) - lowered
    assert set(KERNELS) == set(OPS) - lowered


def test_shortcut_projection_appears_in_the_checked_graph():
    checked = check_gradients("input 2x6x6\nadd {\n{ conv 4 3x3 /2 pad 1 nobias; bn }\nshortcut\n}\nflatten")
    assert "shortcut/conv.weight" in checked and "shortcut/bn.weight" in checked


MINI_INCEPTION = """
input 3x12x12
block inception(c1, r3, c3, r5, c5, pp) {
  concat {
    { conv c1 1x1; relu }
    { conv r3 1x1; relu; conv c3 3x3 pad 1; relu }
    { conv r5 1x1; relu; conv c5 5x5 pad 2; relu }
    { pool max 3x3 /1 pad 1; conv pp 1x1; relu }
  }
}
conv 4 3x3 /2 pad 1; relu
lrn 3 alpha=0.01
i1: inception 2 2 3 1 2 2
aux: side { pool avg 3x3 /2; fc 4; softmax }
pool max 2x2
i2: inception 2 2 2 1 1 1
pool avg global
dropout 0.4
fc 4
softmax
"""

MINI_RESNET = """
input 3x8x8
block basic(c, s=1) {
  add {
    { conv c 3x3 /s pad 1 nobias; bn; relu; conv c 3x3 pad 1 nobias; bn }
    shortcut
  }
  relu
}
conv 4 3x3 pad 1 nobias; bn; relu
basic 4
basic 6 s=2
pool avg global
fc 3
svm
"""


def test_whole_mini_inception_with_auxiliary_head():
    checked = check_gradients(MINI_INCEPTION, batch=2, samples=4)
    assert "aux/fc1.weight" in checked and "i2/b3/conv2.weight" in checked


def test_whole_mini_resnet_with_projection_shortcut():
    checked = check_gradients(MINI_RESNET, batch=3, samples=4)
    assert "basic2/shortcut/conv.weight" in checked


WINOGRAD_CASES = ["input 16x16x16\nconv 16 3x3 pad 1", "input 16x17x15\nconv 20 3x3 pad 1 nobias\nrelu\nconv 16 3x3 pad 1"]


def _fast_precision(monkeypatch):
    """The default precision as `fast`: every Winograd variant may run, as --precision fast lets it."""
    from netdsl.backend import tuner
    monkeypatch.setitem(tuner.PRECISIONS, "default", tuner.PRECISIONS["fast"])


@pytest.fixture(params=[2, 4], ids=["F2x2", "F4x4"])
def small_winograd(request, monkeypatch):
    """Winograd for the test's 16-channel 16x16 layers (by default it takes 128 channels, 64 with
    the native transforms, and 56x56 maps), with 2x2 output tiles or, where native.c's
    transforms run, 4x4 ones (by default from 56x56 maps). Returns the tile size asked for."""
    from netdsl.backend import winograd
    from netdsl.backend.im2col import Geometry
    monkeypatch.setattr(winograd, "F4_MIN_MAP", 8 if request.param == 4 else 1 << 30)
    monkeypatch.setattr(winograd, "F4_SMALL_MAP", 8 if request.param == 4 else 1 << 30)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)
    monkeypatch.setattr(winograd, "NATIVE_MIN_CHANNELS", 16)
    monkeypatch.setattr(winograd, "MIN_TILES", 64)
    monkeypatch.setattr(winograd, "NATIVE_MIN_MACS", 0)
    _fast_precision(monkeypatch)  # F(4x4) is outside the default float32 error budget (backend/tuner.py)
    for native_transforms in (False, True):
        assert winograd.applies(Geometry.of((1, 16, 16, 16), (3, 3), (1, 1), (1, 1)), 1, 16, native_transforms)
    return request.param


@pytest.mark.parametrize("source", WINOGRAD_CASES, ids=["even", "odd-sizes"])
def test_winograd_gradient(source, small_winograd, cpu_kernels):
    check_gradients(source + "\nflatten", batch=2, samples=8)


FIVE_BY_FIVE_CASES = ["input 6x13x11\nconv 5 5x5 pad 2", "input 4x9x10\nconv 6 5x5 pad 2 nobias\nrelu\nconv 4 5x5 pad 2"]


@pytest.fixture
def small_five_by_five(monkeypatch):
    """F(2x2, 5x5) Winograd (native.c's wino25_*) for the tests' thin 5x5 layers, which by
    default stay with im2col or the direct kernels."""
    from netdsl.backend import winograd
    from netdsl.backend.cpu import direct, native
    if native.library() is None:
        pytest.fail("no working C compiler: F(2x2, 5x5) is native.c's only")
    monkeypatch.setattr(winograd, "FIVE_MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "NATIVE_MIN_MACS", 0)
    monkeypatch.setattr(winograd, "NATIVE_MIN_MAP", 1)
    monkeypatch.setattr(direct, "MAX_INNER", 0)
    _fast_precision(monkeypatch)  # F(2x2, 5x5) is outside the default float32 error budget


@pytest.mark.parametrize("source", FIVE_BY_FIVE_CASES, ids=["one-layer", "two-layers-odd"])
def test_five_by_five_winograd_gradient(source, small_five_by_five):
    check_gradients(source + "\nflatten", batch=2, samples=8)


@pytest.mark.parametrize("source", FIVE_BY_FIVE_CASES, ids=["one-layer", "two-layers-odd"])
def test_five_by_five_winograd_matches_im2col(source, small_five_by_five, fine_grained_work):
    """F(2x2, 5x5) against im2col in float64, forward and every gradient, the work split over two
    threads at every boundary."""
    ran = _winograd_against_im2col(source, lambda saved: (saved["path"], saved.get("r")))
    assert ran == {("winograd", 5)}


def _winograd_against_im2col(source: str, describe) -> set:
    """A model with Winograd and one without, the same parameters, one float64 batch: outputs and
    every gradient agree; returns describe(saved) over the first model's convs (which path ran)."""
    import numpy as np

    import netdsl
    from netdsl.backend.executor import Model
    net = netdsl.compile_source(source + "\nflatten")
    fast = Model(net, device="cpu", dtype="float64", winograd=True)
    plain = Model(net, device="cpu", dtype="float64", winograd=False, params_from=fast)
    x = np.random.default_rng(0).standard_normal((3, *net.input_shape))
    np.testing.assert_allclose(fast(x), plain(x), rtol=1e-12, atol=1e-12)
    fast.loss(x, [0, 1, 2]), plain.loss(x, [0, 1, 2])
    ran = {describe(node.saved.conv) for node in fast.nodes if node.op == "conv"}
    gf, gp = fast.backward(input_grad=True), plain.backward(input_grad=True)
    for name in gp:
        np.testing.assert_allclose(gf[name], gp[name], rtol=1e-10, atol=1e-12)
    return ran


PER_IMAGE_CASES = ["input 4x7x6\nconv 5 3x3 /2 pad 1", "input 3x9x9\nconv 4 3x3 pad 1\nrelu\nconv 2 2x2 /2",
                   "input 16x16x16\nconv 4 1x1"]


@pytest.mark.parametrize("source", PER_IMAGE_CASES, ids=["strided", "two-layers", "pointwise"])
def test_per_image_path_gradient(source):
    """Convs whose columns exceed the budget run image by image (here every one: budget 1 byte)."""
    check_gradients(source + "\nflatten", batch=3, samples=8, col_budget=1)


@pytest.mark.parametrize("source", WINOGRAD_CASES, ids=["even", "odd-sizes"])
def test_winograd_matches_im2col(source, small_winograd, cpu_kernels):
    ran = _winograd_against_im2col(source, lambda saved: (saved["path"], saved.get("tile")))
    assert ran == {("winograd", small_winograd if cpu_kernels == "native" else 2)}  # F(4x4) is native.c's only


SPLIT_CASES = ["input 3x9x9\nconv 4 3x3 pad 1\nrelu\nconv 2 3x3 /2 pad 1\ntanh",   # columns, wide col2im
               "input 2x7x7\npool max 3x3 /2 pad 1", "input 2x6x4\npool avg 2x2",
               "input 3x5x5\nbn\nrelu", "input 2x6x6\nadd {\n{ conv 4 3x3 /2 pad 1 nobias; bn }\nshortcut\n}"]


@pytest.mark.parametrize("source", SPLIT_CASES, ids=["convs", "max-pool", "avg-pool", "bn", "residual"])
def test_gradient_with_work_split_over_threads(source, fine_grained_work, cpu_kernels):
    """The CPU kernels split their copies and passes over batch slices on two threads only for
    arrays of 1M elements and more; with the threshold at 0 every slice boundary is exercised,
    and batch norm and max pooling work one channel a block."""
    check_gradients(source + "\nflatten", batch=4, samples=8)


def test_winograd_gradient_with_work_split_over_threads(fine_grained_work, small_winograd, cpu_kernels):
    check_gradients(WINOGRAD_CASES[1] + "\nflatten", batch=3, samples=8)


@pytest.mark.parametrize("source", ["input 3x7x7\npool max 3x3 /2 pad 1", "input 2x5x6\npool max 2x3 /1",
                                    "input 3x4x4\nrelu\npool max 2x2"], ids=["strided", "stride-1", "ties"])
def test_max_pool_gradient_over_channel_blocks(source, monkeypatch, cpu_kernels):
    """Max pooling routes its gradient over blocks of channels; one channel a block here."""
    from netdsl.backend.kernels import windows
    monkeypatch.setattr(windows, "POOL_BLOCK", 1)
    assert len(windows.channel_blocks(3, 49)) == 3
    check_gradients(source + "\nflatten", batch=2, samples=8)
