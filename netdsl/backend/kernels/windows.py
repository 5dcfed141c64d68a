"""What the window layers (conv, pooling) and the per-channel ones (pooling, batch norm) share:
the input extended past its symmetric padding, and channel blocks sized for the cache."""
from __future__ import annotations

from ...ops import end_extension


def extended(node, x, fill):
    """x with the rows and columns the windows read past its symmetric padding (bottom and right:
    padend, and a ceil-mode pool's overhang), filled with `fill`: the code for symmetric padding
    then makes exactly these windows. Where they sit relative to the padding does not matter:
    both are 0 for conv, -inf for max pooling, and 0 for average pooling, whose divisor comes
    from the true geometry (pooling.avg_divisor)."""
    eh, ew = end_extension([x.shape[1:]], node.attrs)
    if not (eh or ew):
        return x
    xp = node.xp
    n, c, h, w = x.shape
    out = xp.full((n, c, h + eh, w + ew), fill, dtype=x.dtype)
    out[:, :, :h, :w] = x
    return out


def cropped(node, in_hw, dx):
    """The gradient of an extended input (extended), cut back to the input's own rows."""
    if dx is None:
        return None
    h, w = in_hw
    if dx.shape[2:] != (h, w):
        dx = node.xp.ascontiguousarray(dx[:, :, :h, :w])
    return dx


# Max pooling's and batch norm's passes run over blocks of channels about this many values big,
# so that a block's passes (nine taps' compare and route; sum, centre, square, scale, affine,
# activation) find it in cache (benchmarks/NOTES.md, changes 22 and 23).
POOL_BLOCK = 1 << 17


def channel_blocks(channels: int, per_channel: int) -> list[slice]:
    step = max(1, POOL_BLOCK // max(per_channel, 1))
    return [slice(c, min(channels, c + step)) for c in range(0, channels, step)]
