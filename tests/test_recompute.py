"""Keep or recompute (issue 28, memory): a training step that drops a conv's expanded input
(im2col columns, Winograd's transforms, the direct kernels' padded planes) and makes it again in backward gives the same gradients,
bit for bit, as one that keeps it (whose gradients tests/test_gradients.py checks against finite
differences) -- on every algorithm that can drop it, float64 and float32."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.backend import conv
from netdsl.backend.cpu import native
from netdsl.backend.executor import Workspace
from netdsl.backend.im2col import Geometry

# (algorithm, kernel, stride, pad, groups, dtypes): F(4x4) and F(2x2, 5x5) run with native.c only
CASES = [("winograd_f2", 3, 1, 1, 1, ("float64", "float32")), ("winograd_f4", 3, 1, 1, 1, ("float32",)),
         ("winograd_f2_5x5", 5, 1, 2, 1, ("float32",)), ("batch_major", 3, 2, 1, 1, ("float64", "float32")),
         ("per_image", 3, 1, 1, 1, ("float64", "float32")), ("per_image", 3, 1, 1, 2, ("float64", "float32")),
         ("direct", 3, 1, 1, 1, ("float32",)), ("direct", 5, 1, 0, 1, ("float32",))]


def _step(algorithm, kernel, stride, pad, groups, dtype, keep_bytes, monkeypatch):
    monkeypatch.setattr(conv, "KEEP_BYTES", keep_bytes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 13, 13)).astype(dtype)  # odd map: partial tiles
    w = rng.standard_normal((64, 8 // groups, kernel, kernel)).astype(dtype)
    b = rng.standard_normal(64).astype(dtype)
    geo = Geometry.of(x.shape, (kernel, kernel), (stride, stride), (pad, pad))
    c = conv.Conv(np, Workspace(), 1 << 30, "layer", training=True)
    out, saved = c.run(algorithm, x, w, b, geo, groups)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = c.backward(saved, dout, w, True)
    return saved, out, dx, dw, db


@pytest.mark.parametrize("algorithm,kernel,stride,pad,groups,dtypes", CASES)
def test_recomputed_gradients_equal_kept_ones(algorithm, kernel, stride, pad, groups, dtypes, monkeypatch):
    for dtype in dtypes:
        if algorithm in ("winograd_f4", "winograd_f2_5x5", "direct"):  # compiled C only
            assert native.available(np, np.dtype(dtype)), "no working C compiler (or NETDSL_NATIVE=0): untested"
        kept, *kept_results = _step(algorithm, kernel, stride, pad, groups, dtype, 1 << 40, monkeypatch)
        dropped, *again = _step(algorithm, kernel, stride, pad, groups, dtype, 0, monkeypatch)
        expanded = "v" if algorithm.startswith("winograd") else "flat" if algorithm == "direct" else "cols"
        assert kept[expanded] is not None and len(kept[expanded]) > 0
        assert dropped[expanded] is None or len(dropped[expanded]) == 0  # per_image: no chunk kept
        for name, a, e in zip(("out", "dx", "dw", "db"), again, kept_results):
            np.testing.assert_array_equal(a, e, err_msg=f"{algorithm} {dtype} {name}")


def test_thin_layers_keep_and_only_training_drops():
    c = conv.Conv(np, None, 1 << 30, "x", training=True)
    assert c.keeps(1 << 30, 6)  # LeNet's c1: the pass would cost 4/18 of its GEMMs' time
    assert not c.keeps(1 << 30, 64)  # 4/192: 2%
    assert c.keeps(conv.KEEP_BYTES - 1, 512)
    assert conv.Conv(np, None, 1 << 30, "x", training=False).keeps(1 << 30, 64)
