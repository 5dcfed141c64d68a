"""Channel rearrangements: option A's zero-padded identity (zeropad), ShuffleNet v2's channel split
and channel shuffle. No arithmetic, only where each value goes, so each backward is the inverse
placement of its forward."""
from __future__ import annotations

from .joins import Shape
from .variants import Variant, always, kernel


# option A's identity: subsampled, zero channels added -----------------------------------------------


def zeropad_forward(node, inputs):
    (x,) = inputs
    sh, sw = node.attrs["stride"]
    picked = x[:, :, ::sh, ::sw]
    out = node.xp.zeros((x.shape[0], node.attrs["out"], *picked.shape[2:]), dtype=x.dtype)
    out[:, : x.shape[1]] = picked
    return out, Shape(x.shape)


def zeropad_backward(node, saved: Shape, dout, need_dx):
    sh, sw = node.attrs["stride"]
    shape = saved.shape
    dx = node.xp.zeros(shape, dtype=dout.dtype)
    dx[:, :, ::sh, ::sw] = dout[:, : shape[1]]
    return [dx]


# ShuffleNet v2's split and shuffle -----------------------------------------------------------------


def _part(node, channels: int) -> slice:
    size = channels // node.attrs["parts"]
    k = node.attrs["take"] - 1
    return slice(k * size, (k + 1) * size)


def split_forward(node, inputs):
    (x,) = inputs
    return node.xp.ascontiguousarray(x[:, _part(node, x.shape[1])]), Shape(x.shape)


def split_backward(node, saved: Shape, dout, need_dx):
    shape = saved.shape
    dx = node.xp.zeros(shape, dtype=dout.dtype)
    dx[:, _part(node, shape[1])] = dout
    return [dx]


def _shuffled(xp, x, groups: int):
    """Channel j*(C/g) + i goes to i*g + j: the (g, C/g) channel grid transposed."""
    n, c, h, w = x.shape
    return xp.ascontiguousarray(x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)).reshape(n, c, h, w)


def shuffle_forward(node, inputs):
    (x,) = inputs
    return _shuffled(node.xp, x, node.attrs["groups"]), None


def shuffle_backward(node, saved, dout, need_dx):
    # the inverse permutation: the transposed grid transposed back
    return [_shuffled(node.xp, dout, dout.shape[1] // node.attrs["groups"])]


ZEROPAD = kernel(Variant("reference", always, zeropad_forward, zeropad_backward))
SPLIT = kernel(Variant("reference", always, split_forward, split_backward))
SHUFFLE = kernel(Variant("reference", always, shuffle_forward, shuffle_backward))
