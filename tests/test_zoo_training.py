"""The zoo's ideas learn (issue 26): a small DenseNet-style net (dense layers: concat with the input
itself, transitions) and a small MobileNet-style net (inverted residuals: 1x1 expand, depthwise 3x3,
squeeze-and-excitation with a hard sigmoid, relu6 and hswish) learn sklearn's digits (1x8x8) to the
test accuracy a plain CNN of about the same size reaches on the same split, seed and schedule."""
import netdsl

PLAIN = """network plain
input 1x8x8
conv 24 3x3 pad 1 nobias; bn; relu
conv 48 3x3 /2 pad 1 nobias; bn; relu
conv 48 3x3 pad 1 nobias; bn; relu
pool avg global
fc 10
softmax
"""

DENSE = """network small_dense
input 1x8x8
block dense_layer(k) {
  concat {
    shortcut
    { bn; relu; conv 4*k 1x1 nobias; bn; relu; conv k 3x3 pad 1 nobias }
  }
}
conv 16 3x3 pad 1 nobias
repeat 3 dense_layer 8                  # 16 + 3*8 = 40
bn; relu; conv 24 1x1 nobias
pool avg 2x2 /2                         # 24x4x4
repeat 3 dense_layer 8                  # 24 + 3*8 = 48
bn; relu
pool avg global
fc 10
softmax
"""

MOBILE = """network small_mobile
input 1x8x8
block se(c, r) {
  gate {
    shortcut
    { pool avg global; conv r 1x1; relu; conv c 1x1; hsigmoid }
  }
}
block inverted(c, e) {                  # MobileNet v2/v3: expand, filter each channel, excite, project
  add {
    { conv e 1x1 nobias; bn; relu6; conv e 3x3 pad 1 groups e nobias; bn; hswish; se e 8; conv c 1x1 nobias; bn }
    shortcut
  }
}
conv 16 3x3 pad 1 nobias; bn; hswish
inverted 16 64
conv 32 1x1 nobias; bn; relu6
conv 32 3x3 /2 pad 1 groups 32 nobias; bn; relu6      # depthwise, 32x4x4
inverted 32 96
inverted 32 96
pool avg global
fc 10
softmax
"""


def _accuracy(text: str) -> tuple[float, int]:
    net = netdsl.compile_source(text)
    history = netdsl.train(net, "digits", epochs=4, batch=128, lr=0.1, seed=0, progress=False)
    return history.test_accuracy, net.totals().params


def test_densenet_and_mobilenet_style_nets_learn_digits_as_a_plain_cnn_does():
    plain, plain_params = _accuracy(PLAIN)
    dense, dense_params = _accuracy(DENSE)
    mobile, mobile_params = _accuracy(MOBILE)
    print(f"\ndigits test accuracy: plain CNN {plain:.3f} ({plain_params:,} parameters), DenseNet-style "
          f"{dense:.3f} ({dense_params:,}), MobileNet-style {mobile:.3f} ({mobile_params:,})")
    for params in (dense_params, mobile_params):  # the same size, within a factor of two
        assert plain_params / 2 <= params <= plain_params * 2
    assert plain >= 0.9  # the plain CNN itself learns (else the comparison says nothing)
    assert dense >= plain - 0.03 and mobile >= plain - 0.03
