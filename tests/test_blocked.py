"""The blocked direct convolution for inference (backend/cpu/blocked.py, native.c's cb_ section)
against a float64 convolution written from its definition: out[o, y, x] = bias[o] + sum over c,
i, j of w[o, c, i, j] * xpad[c, y*s + i, x*s + j], with the fused residual and ReLU."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.backend.cpu import blocked, native
from netdsl.backend.im2col import Geometry

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def reference(x, w, bias, stride, pad):
    """One image (C, H, W) in float64, loop by loop over the taps of the definition."""
    o, c, kh, kw = w.shape
    xp = np.zeros((c, x.shape[1] + 2 * pad, x.shape[2] + 2 * pad))
    xp[:, pad:pad + x.shape[1], pad:pad + x.shape[2]] = x
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((o, oh, ow)) + (0 if bias is None else bias.astype(np.float64)[:, None, None])
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += np.tensordot(w[:, :, i, j].astype(np.float64), window, axes=(1, 0))
    return out


# (C, H, W, O, kernel, stride, pad): ResNet's 3x3 /1 and /2 and 1x1 /2, odd maps, channel counts
# off the 16-lane blocks, a 7x7 /2 stem, maps narrower than a register tile, 5x5 /1 and 11x11 /4
LAYERS = [(16, 12, 12, 32, 3, 1, 1), (5, 11, 9, 19, 3, 2, 1), (20, 13, 15, 24, 1, 2, 0), (3, 23, 21, 10, 7, 2, 3),
          (33, 7, 7, 70, 3, 1, 1), (9, 5, 3, 17, 3, 1, 1), (40, 15, 15, 36, 3, 2, 1),
          (6, 9, 37, 20, 3, 1, 1),  # rows of 37: two 16-wide blocks transposed in registers and a tail
          (7, 13, 27, 40, 5, 1, 2), (3, 9, 11, 33, 5, 1, 0),  # AlexNet's 5x5 /1 (its own tiles), odd sizes
          (12, 8, 19, 17, 5, 1, 2),  # 12 channels of 25 taps: a chunk of 10 and one of 2
          (3, 31, 35, 9, 11, 4, 0),
          (16, 28, 28, 24, 1, 2, 0)]  # a 1x1 /2 whose reads stay inside the map: x read as it lies  # an 11x11 /4 (AlexNet's conv1 unfolded: the generic tile)


@pytest.mark.parametrize("c,h,w,o,k,s,p", LAYERS)
def test_blocked_equals_the_definition(c, h, w, o, k, s, p):
    rng = np.random.default_rng(c * 100 + o)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    geo = Geometry.of((1, c, h, w), (k, k), (s, s), (p, p))
    want = reference(x, wt, bias, s, p)
    layer = blocked.Layer(wt, bias, geo)
    out = np.full((o, geo.oh, geo.ow), np.nan, dtype=np.float32)
    x_before = x.copy()
    layer(x, out)
    np.testing.assert_array_equal(x, x_before)
    # a float32 sum of n = c*k*k products: within ~sqrt(n) roundings of the sum of their sizes
    # (a wrong tap or channel is off by a whole product, ~1)
    bound = 4 * np.finfo(np.float32).eps * np.sqrt(c * k * k) * reference(np.abs(x), np.abs(wt), None, s, p)
    assert np.all(np.abs(out - want) <= bound)
    # the fused add and ReLU: relu(conv + residual), the residual also as the output itself
    residual = rng.standard_normal(out.shape).astype(np.float32)
    fused = np.maximum(want + residual, 0)
    layer(x, out, residual, relu=True)
    assert np.all(np.abs(out - fused) <= bound)
    in_place = residual.copy()
    layer(x, in_place, in_place, relu=True)
    assert np.all(np.abs(in_place - fused) <= bound)
    # on two threads, the units (a group's block of rows) claimed one at a time: the same sums
    layer.threads, layer.rows = 2, 1
    again = np.empty_like(out)
    layer(x, again, residual, relu=True)
    np.testing.assert_array_equal(again, out)
    # every register tile native.c instantiates gives the same
    for tile in blocked.TILES:
        other = blocked.Layer.__new__(blocked.Layer)
        blocked.Layer.__init__(other, wt, None, geo, tile=tile)
        got = np.empty_like(out)
        other(x, got)
        assert np.all(np.abs(got - (want - bias[:, None, None])) <= bound), tile


def test_a_batch_runs_image_by_image():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 8, 8)).astype(np.float32)
    wt = rng.standard_normal((18, 6, 3, 3)).astype(np.float32)
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    got = blocked.forward(x, wt, None, geo)
    for i in range(3):
        bound = 4 * np.finfo(np.float32).eps * np.sqrt(54) * reference(np.abs(x[i]), np.abs(wt), None, 1, 1)
        assert np.all(np.abs(got[i] - reference(x[i], wt, None, 1, 1)) <= bound)


@pytest.mark.parametrize("h,w,k,s,p", [(112, 112, 3, 2, 1), (9, 7, 3, 2, 1), (10, 11, 2, 2, 0), (8, 8, 3, 1, 1),
                                       (13, 6, 5, 3, 2), (33, 33, 3, 2, 1), (6, 32, 3, 2, 1), (7, 35, 3, 2, 0),
                                       (11, 21, 5, 2, 2), (4, 47, 3, 2, 1)])
def test_inference_max_pooling_equals_the_definition(h, w, k, s, p):
    """native.c's cb_maxpool (the inference path's, float32): each window's maximum over the
    input padded with -inf, written from the definition; a NaN in a window makes its maximum NaN."""
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((5, h, w)).astype(np.float32)
    x[1, h // 2, w // 2] = np.nan
    x[3, h - 1, w - 1] = x[4, 0, 0] = np.nan  # the last column's tail and the first window
    padded = np.full((5, h + 2 * p, w + 2 * p), -np.inf, dtype=np.float32)
    padded[:, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    want = np.empty((5, oh, ow), dtype=np.float32)
    for y in range(oh):
        for z in range(ow):
            window = padded[:, y * s:y * s + k, z * s:z * s + k].reshape(5, -1)
            want[:, y, z] = [np.nan if np.isnan(win).any() else win.max() for win in window]
    got = np.empty_like(want)
    assert native.library().cb_maxpool_f32(native._at(x), native._at(got), 5, h, w, k, k, s, s, p, p, oh, ow) == 0
    np.testing.assert_array_equal(got, want)
    # a batch of them (3 images of 5 planes, the second and third the first shifted) in runs of
    # planes on 1, 2 and 3 threads (8 runs of 15 planes over 2: runs of 1 and 2 planes)
    batch = np.stack([x, np.roll(x, 1, axis=0), np.roll(x, 2, axis=0)])
    geo = Geometry.of(batch.shape, (k, k), (s, s), (p, p))
    for threads in (1, 2, 3):
        pooled = np.full((3, 5, oh, ow), -1.0, dtype=np.float32)
        blocked.bind_max_pool(batch, pooled, geo, threads=threads)()
        for i in range(3):
            np.testing.assert_array_equal(pooled[i], np.roll(want, i, axis=0))


# One image on one thread (as each runs at batch > 1), ms a tile, AMD EPYC (Zen 4): the fastest of 15
# rounds in benchmarks/results/cpu-2026-12-06-r19/tiles-1thread-2.txt, copied by hand. (O, OW, kernel):
# {tile: ms}
MEASURED = {
    (64, 112, 7): {(1, 14): 2.977, (4, 7): 2.937, (2, 14): 3.276, (1, 7): 2.411, (2, 7): 2.483, (4, 6): 3.016,
                   (2, 12): 3.391, (3, 8): 4.391},  # ResNet-18's 7x7 /2 stem
    (64, 56, 3): {(1, 14): 2.176, (4, 7): 2.245, (2, 14): 2.612, (1, 7): 2.197, (2, 7): 2.155, (4, 6): 2.343,
                  (2, 12): 2.404, (3, 8): 3.234},  # 3x3 /1 64 on 56x56
    (512, 7, 3): {(1, 14): 4.351, (4, 7): 2.184, (2, 14): 5.046, (1, 7): 2.355, (2, 7): 2.213, (4, 6): 3.693,
                  (2, 12): 3.722, (3, 8): 2.551},  # 3x3 /1 512 on 7x7
    (256, 27, 5): {(1, 14): 10.06, (4, 7): 9.08, (2, 14): 9.83, (1, 7): 8.83, (2, 7): 8.40, (4, 6): 9.01,
                   (2, 12): 11.78, (3, 8): 11.48},  # AlexNet's conv2, 5x5 /1
}


@pytest.mark.parametrize("layer", sorted(MEASURED))
def test_the_tile_chosen_is_the_measured_best_or_near_it(layer):
    """choose_tile's pick on a layer of ResNet-18 or AlexNet ran within 3% of the fastest tile
    measured on it (benchmarks/blocked_tiles.py, one thread); the old ranking's 1 x 14 on the 7x7
    stem ran 23% behind."""
    o, ow, kw = layer
    times = MEASURED[layer]
    assert set(times) == set(blocked.TILES)
    assert times[blocked.choose_tile(o, ow, kw=kw)] <= 1.03 * min(times.values())


@pytest.mark.parametrize("contiguous", [True, False])
def test_an_image_copied_into_the_padded_planes_either_way(contiguous):
    """A layer's input copied into its padded planes (native.c's row copy for a contiguous
    float32 image, numpy's for a strided view) gives the definition's convolution: odd sizes,
    pad 2, the planes' border left zero by the copy."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 9, 7)).astype(np.float32)
    image = x if contiguous else np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert image.flags.c_contiguous == contiguous
    wt = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    geo = Geometry.of((1, *x.shape), (3, 3), (1, 1), (2, 2))
    layer = blocked.Layer(wt, None, geo)
    out = np.empty((7, geo.oh, geo.ow), dtype=np.float32)
    for _ in range(2):  # the second call on planes the first one filled
        layer(image, out)
    bound = 4 * np.finfo(np.float32).eps * np.sqrt(45) * reference(np.abs(x), np.abs(wt), None, 1, 2)
    assert np.all(np.abs(out - reference(x, wt, None, 1, 2)) <= bound)


def batch_reference(x, w, bias, stride, pad, residual=None, relu=False):
    """The batch in float64, image by image from the definition, + residual, then ReLU."""
    out = np.stack([reference(image, w, bias, stride, pad) for image in x])
    if residual is not None:
        out += residual
    return np.maximum(out, 0) if relu else out


def batch_bound(x, w, stride, pad):
    c, k = w.shape[1], w.shape[2]
    return 4 * np.finfo(np.float32).eps * np.sqrt(c * k * k) * np.stack(
        [reference(np.abs(image), np.abs(w), None, stride, pad) for image in x])


@pytest.mark.parametrize("n", [1, 2, 3, 8])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_batch_on_the_cores_equals_the_definition(n, threads):
    """bind_batch (native.c's cb_forward_batch: whole images on the threads, the images past a
    multiple of the threads split by rows): the float64 definition's relu(conv + bias + residual),
    odd channel counts, and bit for bit today's image-by-image call; also written into the
    residual's own buffer (an in-place add)."""
    rng = np.random.default_rng(n * 10 + threads)
    c, h, w, o = 5, 9, 11, 19
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    layer = blocked.Layer(wt, bias, geo)
    layer.threads, layer.rows = 2, 2  # the remaining images split by rows into (group, 2 rows) units
    residual = rng.standard_normal((n, o, geo.oh, geo.ow)).astype(np.float32)
    want = batch_reference(x, wt, bias, 1, 1, residual, relu=True)
    bound = batch_bound(x, wt, 1, 1)
    got = np.full(want.shape, np.nan, dtype=np.float32)
    x_before = x.copy()
    layer.bind_batch(x, got, residual, relu=True, threads=threads)()
    np.testing.assert_array_equal(x, x_before)
    assert np.all(np.abs(got - want) <= bound)
    one_by_one = np.empty_like(got)
    for i in range(n):
        layer(x[i], one_by_one[i], residual[i], relu=True)
    np.testing.assert_array_equal(got, one_by_one)
    in_place = residual.copy()
    layer.bind_batch(x, in_place, in_place, relu=True, threads=threads)()
    np.testing.assert_array_equal(in_place, one_by_one)
    plain = np.empty_like(got)
    layer.bind_batch(x, plain, threads=threads)()  # no residual, no ReLU: the bias alone
    assert np.all(np.abs(plain - batch_reference(x, wt, bias, 1, 1)) <= bound)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batch_of_strided_layers_read_as_it_lies(threads):
    """A 1x1 /2 (its input read where it lies, no padded copy) and a 5x5 /1 with 12 channels (two
    input-channel chunks) over a batch of 4 on the cores: the definition's sums."""
    rng = np.random.default_rng(7)
    for c, h, w, o, k, s, p in [(16, 28, 28, 24, 1, 2, 0), (12, 8, 19, 17, 5, 1, 2)]:
        x = rng.standard_normal((4, c, h, w)).astype(np.float32)
        wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
        geo = Geometry.of(x.shape, (k, k), (s, s), (p, p))
        layer = blocked.Layer(wt, None, geo)
        got = np.empty((4, o, geo.oh, geo.ow), dtype=np.float32)
        layer.bind_batch(x, got, threads=threads)()
        assert np.all(np.abs(got - batch_reference(x, wt, None, s, p)) <= batch_bound(x, wt, s, p))


def test_a_batch_whose_output_lies_on_its_input():
    """Output images over the input's buffer, as a plan gives a conv the buffer of its dead input:
    image i's output over image i's input alone runs on the cores (each thread copies its image
    into its planes first, also a 1x1 /1 that could read it where it lies); half-size outputs (a
    1x1 /2 widening 4 -> 8 channels: image 2's output lies on image 1's input) on the cores too,
    an image's output waiting for the earlier input under it to be copied; double-size ones
    (backwards) image by image in the safe order. All give the definition's sums of the input as
    it was."""
    rng = np.random.default_rng(5)
    n = 4
    for c, h, o, k, s, p, backwards in [(6, 7, 6, 3, 1, 1, False), (40, 14, 40, 1, 1, 0, False),
                                        (4, 8, 8, 1, 2, 0, False), (4, 6, 8, 3, 1, 1, True)]:
        geo = Geometry.of((n, c, h, h), (k, k), (s, s), (p, p))
        per_in, per_out = c * h * h, o * geo.oh * geo.ow
        buffer = np.zeros(n * max(per_in, per_out), dtype=np.float32)
        x = buffer[:n * per_in].reshape(n, c, h, h)
        x[...] = rng.standard_normal(x.shape)
        out = buffer[:n * per_out].reshape(n, o, geo.oh, geo.ow)
        wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
        want, bound = batch_reference(x, wt, None, s, p), batch_bound(x, wt, s, p)
        waits = blocked._batch_waits(blocked._image_spans(out), blocked._image_spans(x), None)
        # on the cores: same size each image alone; half size waiting for earlier inputs (image i's
        # output lies inside input image i // 2); double size image by image
        assert waits == ([-1] * n if per_in == per_out else [-1, 0, 1, 1] if per_out < per_in else None)
        blocked.Layer(wt, None, geo).bind_batch(x, out, backwards=backwards, threads=2)()
        assert np.all(np.abs(out - want) <= bound)


def test_images_that_are_not_contiguous_run_one_by_one():
    """A batch whose images are views with gaps inside them (a crop of a larger batch's maps)
    goes image by image, numpy's copy into the planes: the definition's sums. (A channel slice
    keeps each image whole, at a longer stride: that one runs on the cores.)"""
    rng = np.random.default_rng(9)
    wide = rng.standard_normal((3, 5, 8, 8)).astype(np.float32)
    x = wide[:, :, 1:7, 1:7]
    assert blocked._image_spans(wide[:, 2:7]) is not None
    assert blocked._image_spans(x) is None
    wt = rng.standard_normal((9, 5, 3, 3)).astype(np.float32)
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    got = np.empty((3, 9, 6, 6), dtype=np.float32)
    blocked.Layer(wt, None, geo).bind_batch(x, got, threads=2)()
    assert np.all(np.abs(got - batch_reference(x, wt, None, 1, 1)) <= batch_bound(x, wt, 1, 1))
