"""Whether a network can be trained on a data set, checked before the first step, and what
fitting one to the other does (said once, at the start of a run).

  - every output is trained against the class labels: each must end in class scores, as many
    as the trunk's (a side output ending in a feature map is refused at its line);
  - a trunk without a head (softmax, svm) is trained with softmax cross-entropy: said;
  - images resized or channels matched to the network's input: said;
  - more outputs than the data set has classes: a warning naming the outputs never a label;
  - a checkpoint from a network of another structure whose tensors happen to fit: refused,
    naming the first layer that differs, unless the user asks for it.
"""
from __future__ import annotations

from ..compiler import Network, compile_source
from ..errors import NetError
from ..ops import OPS, shape_text


def check_outputs(net: Network) -> int:
    """The class count every output must give; a NetError at the line of an output that cannot
    be trained against labels."""
    trunk = net.layer(net.outputs[0][1])
    if len(trunk.shape) != 1:
        raise NetError(f"{net.name} ends in a {shape_text(trunk.shape)} feature map ('{trunk.name}'), not class "
                       f"scores", span=trunk.span, hint="end the network with fc N and softmax (or svm)")
    for name, node in net.outputs[1:]:
        side = net.layer(node)
        if side.shape != trunk.shape:
            what = "a feature map" if len(side.shape) != 1 else "class scores"
            raise NetError(f"side output '{name}' ends in {what} of {shape_text(side.shape)} ('{side.name}'): "
                           f"training takes every output against the labels, which need "
                           f"{trunk.shape[0]} class scores as the trunk gives",
                           span=side.span, hint=f"end the side output with fc {trunk.shape[0]} and softmax")
    return trunk.shape[0]


def notes(net: Network, data, fitted: tuple[str, ...] = ()) -> list[str]:
    """What a person should hear once before training: the head, the resize, the class counts."""
    out = list(fitted)
    trunk = net.layer(net.outputs[0][1])
    if not OPS[trunk.op].is_head:
        out.append(f"{net.name} ends in '{trunk.name}' ({trunk.op}), not in a head: its {trunk.shape[0]} outputs "
                   f"are trained as class scores under softmax cross-entropy, as `softmax` at the end would say")
    classes = trunk.shape[0]
    if classes > data.classes:
        out.append(f"warning: {net.name} has {classes} outputs, {data.name} has {data.classes} classes: "
                   f"output{'s' if classes - data.classes > 1 else ''} {data.classes}"
                   f"{f'-{classes - 1}' if classes - data.classes > 1 else ''} never "
                   f"{'match' if classes - data.classes > 1 else 'matches'} a label "
                   f"(fc {data.classes} fits the data)")
    return out


def structure(net: Network) -> list[tuple[str, str, tuple[int, ...]]]:
    """A network's layers as netdsl diff matches them: name, the layer as written, output shape."""
    return [(l.name, l.written, l.shape) for l in net.layers]


def first_difference(saved_source: str, net: Network, source: str) -> str | None:
    """None when the checkpoint's network has this one's layers (names, ops and settings, shapes;
    its name, comments and layout may differ); else the first layer that differs, in words."""
    try:
        theirs = compile_source(saved_source, f"{source} (its network)")
    except NetError as err:
        return f"its network no longer compiles ({err.message})"
    a, b = structure(theirs), structure(net)
    for (name_a, written_a, shape_a), (name_b, written_b, shape_b) in zip(a, b):
        if (name_a, written_a) != (name_b, written_b):
            return (f"layer '{name_a}' is '{written_a}' in the checkpoint's network, and this one's layer "
                    f"'{name_b}' is '{written_b}'")
        if shape_a != shape_b:
            return f"layer '{name_a}' gives {shape_text(shape_a)} there, {shape_text(shape_b)} here"
    if len(a) != len(b):
        longer, extra = ("the checkpoint's network", a[len(b)]) if len(a) > len(b) else ("this one", b[len(a)])
        return f"{longer} goes on with layer '{extra[0]}' ('{extra[1]}') where the other ends"
    return None
