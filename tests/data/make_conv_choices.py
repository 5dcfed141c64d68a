"""Write conv_choices_before_tuner.json: the algorithm each conv layer of the 12 nets took, at
batches 1, 8 and 16 on the CPU with the compiled kernels, under the threshold chain as it was
before the tuner (commit 864c476). tests/test_tuner.py checks that NETDSL_TUNE=off (with
--precision fast, which lets every algorithm run) still makes exactly these choices.

Run against that commit's netdsl, e.g.
    git archive 864c476 netdsl | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base python tests/data/make_conv_choices.py
The convolutions themselves are not computed: each path's forward is replaced by one that
returns zeros of the output's shape and records its name (the choice is made before it runs).
"""
import json
import sys
from pathlib import Path

import numpy as np

import netdsl
from netdsl.backend import conv, winograd
from netdsl.backend.cpu import direct, native

assert native.library() is not None, "the choices are those of the compiled kernels"
HERE = Path(__file__).parent
NETS = sorted((HERE.parent.parent / "nets").glob("*.net"))
BATCHES = (1, 8, 16)


def stub(path):
    def forward(self_or_xp, x, w, b, geo, *rest):
        xp = np
        tile = rest[0] if path == "winograd" and rest else None
        return xp.zeros((x.shape[0], w.shape[0], geo.oh, geo.ow), dtype=x.dtype), {"path": path, "tile": tile,
                                                                                   "r": w.shape[2]}
    return forward


winograd.forward = lambda xp, x, w, b, tile=2: stub("winograd")(xp, x, w, b, _geo[0], tile)
direct.forward = lambda xp, x, w, b, geo: stub("direct")(xp, x, w, b, geo)
conv.Conv._batch_major_forward = lambda self, x, w, b, geo: stub("batch_major")(self, x, w, b, geo)
conv.Conv._per_image_forward = lambda self, x, w, b, geo, groups: stub("per_image")(self, x, w, b, geo)
_geo = [None]
_forward = conv.Conv.forward


def forward(self, x, w, b, geo, groups):
    _geo[0] = geo
    return _forward(self, x, w, b, geo, groups)


conv.Conv.forward = forward


def label(saved):
    if saved["path"] == "s2d":
        return "s2d+" + label(saved["inner"])
    if saved["path"] == "winograd":
        return f"winograd_f{saved['tile']}" + ("_5x5" if saved["r"] == 5 else "")
    return saved["path"]


table = {}
for path in NETS:
    net = netdsl.load(str(path))
    model = netdsl.Model(net, device="cpu")
    for n in BATCHES:
        model.forward(np.zeros((n, *net.input_shape), dtype=np.float32), training=True)
        for node in model.nodes:
            if node.op == "conv":
                table[f"{path.stem} {n} {node.name}"] = label(node.saved.conv)
    print(path.stem, file=sys.stderr)
(HERE / "conv_choices_before_tuner.json").write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
