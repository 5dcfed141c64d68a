"""LRN and batch norm.

Batch norm's variants, the reference first: channel block by channel block over `xp`; --sync-bn's
global-batch statistics (train/sync_bn.py); the GPU's whole-layer kernels (gpu/layers.py);
native.c's loops. Every one applies the node's fused activation itself, forward and backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..cpu import native
from ..cpu.threads import over_batch
from ..device import on_gpu
from .activation_rules import ACTIVATIONS
from .variants import Variant, always, gpu_layers, kernel
from .windows import channel_blocks


# LRN ---------------------------------------------------------------------------------------------


@dataclass
class LrnSaved:
    x: Any
    scale: Any  # k + alpha/n * the window's sum of squares
    out: Any


def _channel_window_sum(xp, a, before: int, after: int):
    """sum over channels c-before .. c+after of a (N, C, ...) array, zero beyond the edges."""
    c = a.shape[1]
    cs = xp.cumsum(a, axis=1)
    zero = xp.zeros_like(a[:, :1])
    cs = xp.concatenate([zero, cs], axis=1)  # cs[k] = sum of a[:k]
    hi = xp.minimum(xp.arange(c) + after + 1, c)
    lo = xp.maximum(xp.arange(c) - before, 0)
    return cs[:, hi] - cs[:, lo]


def lrn_forward(node, inputs):
    """PyTorch's / Caffe's LRN: b = a / (k + alpha/n * sum_window a^2)^beta, window of n channels
    centred on c (n//2 before, (n-1)//2 after)."""
    xp, a = node.xp, node.attrs
    (x,) = inputs
    n = a["size"]
    scale = a["k"] + (a["alpha"] / n) * _channel_window_sum(xp, x * x, n // 2, (n - 1) // 2)
    out = x * scale ** (-a["beta"])
    return out, LrnSaved(x, scale, out)


def lrn_backward(node, saved: LrnSaved, dout, need_dx):
    """d b_c / d a_j over the windows that contain j: channels c with c - n//2 <= j <= c + (n-1)//2."""
    xp, a = node.xp, node.attrs
    x, scale, out = saved.x, saved.scale, saved.out
    n, beta = a["size"], a["beta"]
    inner = dout * out / scale
    summed = _channel_window_sum(xp, inner, (n - 1) // 2, n // 2)
    return [dout * scale ** (-beta) - (2 * a["alpha"] * beta / n) * x * summed]


def lrn_forward_gpu(node, inputs):
    """Each thread sums its channel window directly (gpu/layers.py)."""
    from ..gpu.layers import lrn_forward as lrn_gpu
    a = node.attrs
    x = node.xp.ascontiguousarray(inputs[0])
    scale, out = lrn_gpu(x, a["size"], a["alpha"], a["beta"], a["k"])
    return out, LrnSaved(x, scale, out)


def lrn_backward_gpu(node, saved: LrnSaved, dout, need_dx):
    from ..gpu.layers import lrn_backward as lrn_gpu_backward
    a = node.attrs
    return [lrn_gpu_backward(dout, saved.x, saved.scale, saved.out, a["size"], a["alpha"], a["beta"])]


LRN = kernel(Variant("reference", always, lrn_forward, lrn_backward),
             Variant("gpu_layer", gpu_layers, lrn_forward_gpu, lrn_backward_gpu))


# batch norm --------------------------------------------------------------------------------------


@dataclass
class BnSaved:
    xhat: Any
    inv_std: Any


@dataclass
class BnNativeSaved:
    x: Any  # x and the mean, not x-hat: the backward recomputes it, and the forward writes one array less
    mean: Any
    inv_std: Any


@dataclass
class BnSyncedSaved:
    xhat: Any  # (N, C, M)
    inv_std: Any
    total: int  # values per channel over every rank's batch


def _per_channel(a):
    """(N, C) or (N, C, ...) -> (N, C, M): reductions run along contiguous memory."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def update_running(node, mean, var, count: int) -> None:
    """Batch norm's running statistics, moved towards a batch's (momentum, PyTorch's rule)."""
    m = node.attrs["momentum"]
    rm, rv = node.buffers["running_mean"], node.buffers["running_var"]
    rm *= 1 - m
    rm += m * mean
    rv *= 1 - m
    rv += m * var * (count / max(count - 1, 1))  # running variance is unbiased (PyTorch)


def _sum_nm(a3):
    return a3.sum(axis=2).sum(axis=0)


def _bn_blocks(xp, x) -> list[slice]:
    """Channel blocks for batch norm's passes: on the CPU blocks that stay in cache; one block on
    the GPU, where the passes are kernels over the whole array."""
    per_channel = x.size // x.shape[1]
    return [slice(None)] if on_gpu(xp) else channel_blocks(x.shape[1], per_channel)


def _over_blocks(xp, blocks: list[slice], size: int, block: Callable) -> None:
    """block(cs) for every channel block, the blocks shared out over the cores."""
    over_batch(xp, len(blocks), size, lambda lo, hi: [block(cs) for cs in blocks[lo:hi]])


def _statistics(node, c: int, dtype):
    """Arrays for this batch's mean and variance in training, else the running ones."""
    if node.training:
        return node.xp.empty(c, dtype=dtype), node.xp.empty(c, dtype=dtype)
    return node.buffers["running_mean"], node.buffers["running_var"]


def bn_forward(node, inputs):
    """Batch statistics in two passes (the mean, then the squared deviations from it), then the
    affine step and the fused activation, channel block by channel block (each block's
    statistics are its own); x-hat kept for the backward pass."""
    xp, a = node.xp, node.attrs
    (x,) = inputs
    count = x.size // x.shape[1]
    x3 = _per_channel(x)
    centred, out = xp.empty_like(x), xp.empty_like(x)
    c3, o3 = _per_channel(centred), _per_channel(out)
    mean, var = _statistics(node, x.shape[1], x.dtype)
    inv_std = xp.empty(x.shape[1], dtype=x.dtype)
    gamma, beta = node.params["weight"], node.params["bias"]
    rule = ACTIVATIONS[node.epilogue] if node.epilogue else None
    # the CPU's rules work in place, on each block while it is in cache (they start no threads of
    # their own there: threads.over_batch runs whole on a worker); the GPU's make a new array
    in_blocks = rule is not None and not on_gpu(xp)

    def block(cs):
        xb, c, o = x3[:, cs], c3[:, cs], o3[:, cs]
        if node.training:
            mean[cs] = _sum_nm(xb) / count
        xp.subtract(xb, mean[cs][:, None], out=c)
        if node.training:
            var[cs] = _sum_nm(c * c) / count
        inv_std[cs] = 1 / xp.sqrt(var[cs] + a["eps"])
        c *= inv_std[cs][:, None]  # x-hat, in place
        xp.multiply(c, gamma[cs][:, None], out=o)
        o += beta[cs][:, None]
        if in_blocks:
            rule.apply(xp, o)
    _over_blocks(xp, _bn_blocks(xp, x), x.size, block)
    if node.training:
        update_running(node, mean, var, count)
    if rule is not None and not in_blocks:
        out = rule.apply(xp, out)
    return out, BnSaved(centred, inv_std)


def bn_backward(node, saved: BnSaved, dout, need_dx):
    """dx = (gamma/sigma) * (g - mean(g) - x-hat * mean(g * x-hat)), g the gradient reaching bn's
    output through its fused activation; channel block by channel block, the activation's
    gradient, the two sums and dx while the block is in cache."""
    xp = node.xp
    xhat, inv_std = saved.xhat, saved.inv_std
    grad = ACTIVATIONS[node.epilogue].grad if node.epilogue else None
    count = dout.size // dout.shape[1]
    g3, xhat3 = _per_channel(dout), _per_channel(xhat)
    y3 = _per_channel(node.epilogue_out) if grad else None
    sum_g, sum_gx = xp.empty_like(inv_std), xp.empty_like(inv_std)
    scale = node.params["weight"] * inv_std
    dx = xp.empty_like(dout) if need_dx else None
    d3 = _per_channel(dx) if need_dx else None

    def block(cs):
        g = g3[:, cs]
        if grad is not None:
            g = grad(xp, g, y3[:, cs])
        xb = xhat3[:, cs]
        sum_g[cs], sum_gx[cs] = _sum_nm(g), _sum_nm(g * xb)
        if not need_dx:
            return
        d, sc = d3[:, cs], scale[cs][:, None]
        if not node.training:
            xp.multiply(g, sc, out=d)
            return
        xp.multiply(xb, -(sum_gx[cs] / count)[:, None], out=d)
        d += g
        d -= (sum_g[cs] / count)[:, None]
        d *= sc
    _over_blocks(xp, _bn_blocks(xp, dout), dout.size, block)
    node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
    return [dx if need_dx else None]


def _native_applies(node, inputs) -> bool:
    """Where native.c's loops are built and apply the fused activation, if any, themselves."""
    return (node.epilogue is None or node.epilogue in native.BN_EPILOGUES) and native.available(node.xp, inputs[0].dtype)


def bn_forward_native(node, inputs):
    xp = node.xp
    (x,) = inputs
    count = x.size // x.shape[1]
    mean, var = _statistics(node, x.shape[1], x.dtype)
    x = xp.ascontiguousarray(x)
    out, inv_std = native.bn_forward(xp, x, node.params["weight"], node.params["bias"], mean, var,
                                     node.training, node.attrs["eps"], node.epilogue)
    if node.training:
        update_running(node, mean, var, count)
    else:
        mean = mean.copy()  # the running mean x-hat was computed with, whatever updates it later
    return out, BnNativeSaved(x, mean, inv_std)


def bn_backward_native(node, saved: BnNativeSaved, dout, need_dx):
    dx, sum_g, sum_gx = native.bn_backward(node.xp, dout, node.epilogue_out if node.epilogue else None,
                                           saved.x, saved.mean, node.params["weight"], saved.inv_std,
                                           node.training, need_dx, node.epilogue)
    node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
    return [dx]


def bn_forward_gpu(node, inputs):
    from ..gpu import layers as gpu_layers_
    (x,) = inputs
    x3 = gpu_layers_.channel_view(x)
    a = node.attrs
    if node.training:
        mean, inv_std = gpu_layers_.bn_statistics(x3, node.buffers["running_mean"], node.buffers["running_var"],
                                                  a["momentum"], a["eps"])
    else:
        mean, inv_std = node.buffers["running_mean"], 1 / node.xp.sqrt(node.buffers["running_var"] + a["eps"])
    xhat, out = gpu_layers_.bn_apply(x3, mean, inv_std, node.params["weight"], node.params["bias"], node.epilogue)
    return out.reshape(x.shape), BnSaved(xhat, inv_std)


def bn_backward_gpu(node, saved: BnSaved, dout, need_dx):
    from ..gpu import layers as gpu_layers_
    y = gpu_layers_.channel_view(node.epilogue_out) if node.epilogue else None
    dx, dgamma, dbeta = gpu_layers_.bn_backward(gpu_layers_.channel_view(dout), y, saved.xhat,
                                                node.params["weight"], saved.inv_std, node.training,
                                                node.epilogue)
    node.grads["weight"], node.grads["bias"] = dgamma, dbeta
    return [dx.reshape(dout.shape) if need_dx else None]


def _synced(node, inputs) -> bool:
    return node.model.bn_sync is not None and node.training


def bn_forward_synced(node, inputs):
    """--sync-bn: the statistics of the global batch. Each rank's mean and sum of squared
    deviations (two passes, as above) are combined over the ranks by `sync` (Chan's parallel
    formula, the same order on every rank); the running statistics follow the global batch."""
    xp, a = node.xp, node.attrs
    (x,) = inputs
    count = x.size // x.shape[1]
    x3 = _per_channel(x)
    local_mean = _sum_nm(x3) / count
    centred = x3 - local_mean[:, None]
    mean, var, total = node.model.bn_sync.combine(xp, local_mean, _sum_nm(centred * centred), count)
    inv_std = 1 / xp.sqrt(var + a["eps"])
    xhat = (x3 - mean[:, None]) * inv_std[:, None]
    out = (xhat * node.params["weight"][:, None] + node.params["bias"][:, None]).reshape(x.shape)
    update_running(node, mean, var, total)
    if node.epilogue:
        out = ACTIVATIONS[node.epilogue].apply(xp, out)
    return out, BnSyncedSaved(xhat, inv_std, total)


def bn_backward_synced(node, saved: BnSyncedSaved, dout, need_dx):
    """dx over the global batch: the sums of g and g * x-hat come from every rank (PyTorch's
    SyncBatchNorm); gamma's and beta's gradients stay this rank's own, averaged with the rest."""
    xp = node.xp
    xhat, inv_std, total = saved.xhat, saved.inv_std, saved.total
    g = _per_channel(dout)
    if node.epilogue:
        g = ACTIVATIONS[node.epilogue].grad(xp, g, _per_channel(node.epilogue_out))
    sum_g, sum_gx = _sum_nm(g), _sum_nm(g * xhat)
    node.grads["weight"], node.grads["bias"] = sum_gx, sum_g
    # the global batch's sums, in this rank's units (its loss is the mean over its own images)
    every_g, every_gx = node.model.bn_sync.sums(xp, sum_g, sum_gx)
    if not need_dx:
        return [None]
    dx = (g - (every_g / total)[:, None] - xhat * (every_gx / total)[:, None]) * \
        (node.params["weight"] * inv_std)[:, None]
    return [dx.reshape(dout.shape)]


BN = kernel(Variant("reference", always, bn_forward, bn_backward, epilogue=True),
            Variant("synced", _synced, bn_forward_synced, bn_backward_synced, epilogue=True),
            Variant("gpu_layer", gpu_layers, bn_forward_gpu, bn_backward_gpu, epilogue=True),
            Variant("native", _native_applies, bn_forward_native, bn_backward_native, epilogue=True))
