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


class _ZeroPad(nn.Module):
    """Option A's identity: one row and column in `stride` kept, zero channels added at the end."""
    def __init__(self, out: int, stride):
        super().__init__()
        self.out, self.stride = out, tuple(stride)

    def forward(self, x):
        x = x[:, :, ::self.stride[0], ::self.stride[1]]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.out - x.shape[1]))


class _Split(nn.Module):
    """Part `take` (from 1) of `parts` equal channel parts."""
    def __init__(self, parts: int, take: int):
        super().__init__()
        self.parts, self.take = parts, take

    def forward(self, x):
        n = x.shape[1] // self.parts
        return x[:, (self.take - 1) * n:self.take * n]


class _Shuffle(nn.Module):
    """ShuffleNet's channel shuffle: G groups of C/G channels, transposed."""
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


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
    # the zoo's ops (issue 26)
    "relu6": lambda a, s: nn.ReLU6(),
    "hsigmoid": lambda a, s: nn.Hardsigmoid(),
    "hswish": lambda a, s: nn.Hardswish(),
    "silu": lambda a, s: nn.SiLU(),
    "zeropad": lambda a, s: _ZeroPad(a["out"], a["stride"]),
    "split": lambda a, s: _Split(a["parts"], a["take"]),
    "shuffle": lambda a, s: _Shuffle(a["groups"]),
}


def _gate(x, g):
    """Squeeze-and-excitation: each channel of x times its own factor (g is N x C or N x C x 1 x 1)."""
    return x * g.reshape(g.shape[0], g.shape[1], 1, 1)


# the joins: several inputs, no parameters
JOINS = {
    "concat": lambda args: torch.cat(args, dim=1),
    "add": lambda args: sum(args[1:], args[0]),
    "gate": lambda args: _gate(*args),
}


class TorchNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        g = net.graph
        self.order = schedule(g)
        self.args = {n: ir_inputs(g, n) for n in self.order}
        self.kind = {n: g.nodes[n]["op"] for n in self.order}
        self.layers = nn.ModuleDict()
        # an activation fused into its producer (passes/fuse.py) runs after it here
        self.epilogue = {n: BUILDERS[g.nodes[n]["epilogue"]]({}, []) for n in self.order if g.nodes[n].get("epilogue")}
        for n in self.order:
            op = self.kind[n]
            if op in JOINS:
                continue
            in_shapes = [g.nodes[s]["shape"] for s in self.args[n]] or [g.nodes[n]["shape"]]
            self.layers[n.replace("/", "__")] = BUILDERS[op](g.nodes[n]["attrs"], in_shapes)
        self.outputs = [node for _, node in net.outputs]

    def forward(self, x):
        values = {}
        for n in self.order:
            op = self.kind[n]
            args = [values[s] for s in self.args[n]] or [x]
            if op in JOINS:
                values[n] = JOINS[op](args)
            else:
                values[n] = self.layers[n.replace("/", "__")](args[0])
            if n in self.epilogue:
                values[n] = self.epilogue[n](values[n])
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
