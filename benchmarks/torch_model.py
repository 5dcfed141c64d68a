"""The same network in PyTorch, built from netdsl's IR, for side-by-side benchmarks.

A benchmark-only helper (PyTorch is not a netdsl dependency). One builder per op name, as the
back end keeps its kernels; weights are copied from a netdsl Model so both compute the same.
"""
from __future__ import annotations

import torch
from torch import nn

from netdsl.ir import inputs as ir_inputs
from netdsl.ir import schedule
from netdsl.ops import window_geometry


def _conv(a, in_shapes):
    k, s, p = window_geometry(in_shapes, a)
    return nn.Conv2d(in_shapes[0][0], a["out"], k, s, p, groups=a["groups"], bias=a["bias"])


def _pool(a, in_shapes):
    k, s, p = window_geometry(in_shapes, a)
    if a["mode"] == "max":
        return nn.MaxPool2d(k, s, p)
    return nn.AvgPool2d(k, s, p, count_include_pad=True)


def _fc(a, in_shapes):
    n = 1
    for d in in_shapes[0]:
        n *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n, a["out"], bias=a["bias"]))


def _bn(a, in_shapes):
    cls = nn.BatchNorm2d if len(in_shapes[0]) == 3 else nn.BatchNorm1d
    return cls(in_shapes[0][0], eps=a["eps"], momentum=a["momentum"])


BUILDERS = {
    "input": lambda a, s: nn.Identity(),
    "conv": _conv,
    "pool": _pool,
    "fc": _fc,
    "relu": lambda a, s: nn.ReLU(inplace=True),
    "tanh": lambda a, s: nn.Tanh(),
    "sigmoid": lambda a, s: nn.Sigmoid(),
    "lrn": lambda a, s: nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"]),
    "bn": _bn,
    "dropout": lambda a, s: nn.Dropout(a["p"]),
    "flatten": lambda a, s: nn.Flatten(),
    "softmax": lambda a, s: nn.Identity(),  # the loss (cross-entropy) applies it
    "svm": lambda a, s: nn.Identity(),
}


class TorchNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        g = net.graph
        self.order = schedule(g)
        self.args = {n: ir_inputs(g, n) for n in self.order}
        self.kind = {n: g.nodes[n]["op"] for n in self.order}
        self.layers = nn.ModuleDict()
        for n in self.order:
            op = self.kind[n]
            if op in ("concat", "add"):
                continue
            in_shapes = [g.nodes[s]["shape"] for s in self.args[n]] or [g.nodes[n]["shape"]]
            self.layers[n.replace("/", "__")] = BUILDERS[op](g.nodes[n]["attrs"], in_shapes)
        self.outputs = [node for _, node in net.outputs]

    def forward(self, x):
        values = {}
        for n in self.order:
            op = self.kind[n]
            args = [values[s] for s in self.args[n]] or [x]
            if op == "concat":
                values[n] = torch.cat(args, dim=1)
            elif op == "add":
                values[n] = sum(args[1:], args[0])
            else:
                values[n] = self.layers[n.replace("/", "__")](args[0])
        return [values[o] for o in self.outputs]

    def load_from(self, model) -> None:
        """Copy a netdsl Model's parameters and buffers."""
        with torch.no_grad():
            for name, value in model.state_dict().items():
                node, _, pname = name.rpartition(".")
                module = self.layers[node.replace("/", "__")]
                if isinstance(module, nn.Sequential):
                    module = module[1]
                getattr(module, pname).copy_(torch.from_numpy(model.device.asnumpy(value).copy()))
