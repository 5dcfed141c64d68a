"""conv and fc: the GEMM layers. Convolution's algorithms live in backend/conv.py (which records
the path it took); here is what the table adds around them: padend, the bias, and the fused
activation. Weights are (out, in/groups, kh, kw) as in PyTorch, layout NCHW."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...ops import end_extension, window_geometry
from .. import im2col
from ..conv import Conv
from ..cpu import native
from ..cpu.threads import over_batch
from ..device import on_gpu
from .activation_rules import ACTIVATIONS
from .variants import Variant, always, chain_out, gpu, kernel, through_epilogue
from .windows import cropped, extended


# conv --------------------------------------------------------------------------------------------


@dataclass
class ConvSaved:
    in_hw: tuple[int, int]  # the input's own size (padend extends it)
    conv: dict  # what conv.py's path saved, its "path" among it


def _conv(node) -> Conv:
    m = node.model
    return Conv(node.xp, m.workspace, m.col_budget, node.name, node.keep_cols, m.winograd, m.precision,
                node.training, any(j != 0 for j in node.inputs))


def _conv_run(node, x, bias):
    """conv.py's forward on x (extended by padend), the bias added there unless None."""
    kernel_, stride, pad = window_geometry([x.shape[1:]], node.attrs)
    in_hw = x.shape[2:]
    x = extended(node, x, 0)  # padend: zeros after the input
    geo = im2col.Geometry.of(x.shape, kernel_, stride, pad)
    out, saved = _conv(node).forward(x, node.params["weight"], bias, geo, node.attrs["groups"])
    return out, ConvSaved(in_hw, saved)


def conv_forward(node, inputs):
    """The bias added by conv.py's path, then the fused activation in place."""
    out, saved = _conv_run(node, inputs[0], node.params.get("bias"))
    if node.epilogue:
        out = ACTIVATIONS[node.epilogue].apply(node.xp, out)
    return out, saved


def conv_forward_gpu(node, inputs):
    """The bias and the fused activation in one generated kernel over the GEMM's output; that
    output otherwise goes out as it is, possibly a strided view (conv.py): every reader takes those."""
    out, saved = _conv_run(node, inputs[0], None)
    bias = node.params.get("bias")
    if bias is None and not node.epilogue:
        return out, saved
    if bias is None:
        return chain_out(node, "y", {"y": out}), saved
    return chain_out(node, "y + b", {"y": out, "b": bias.reshape(1, -1, 1, 1)}), saved


def conv_backward(node, saved: ConvSaved, dout, need_dx):
    """conv.py's backward, handed the fused activation's gradient rule: the paths that copy dout
    anyway apply it in that copy, the others first."""
    epilogue = None
    if node.epilogue:
        grad = ACTIVATIONS[node.epilogue].grad
        epilogue = (node.epilogue, lambda dy, out: grad(node.xp, dy, out), node.epilogue_out)
    dx, dw, db = _conv(node).backward(saved.conv, dout, node.params["weight"], need_dx, epilogue)
    node.grads["weight"] = dw
    if "bias" in node.params:
        node.grads["bias"] = db
    return [cropped(node, saved.in_hw, dx)]


# depthwise convolution ------------------------------------------------------------------------------
# One kxk filter per channel: im2col would build C*k*k columns per position to multiply each by one
# weight through C tiny GEMMs. On the CPU native.c's loops take a channel at a time, its padded
# planes laid out once in cache, for all three products (forward, input and weight gradients);
# elsewhere (the GPU, or no C compiler) each of the k*k taps is one multiply-add over the whole
# (strided) map: k*k passes over memory, each vectorised across batch, channels and positions.


CACHE_BLOCK = 1 << 15  # input values a block of the forward pass works on (128 KiB of float32)


@dataclass
class DepthwiseSaved:
    xpad: Any  # the padded input
    geo: tuple  # kh, kw, sh, sw, ph, pw and the input's h, w


DEPTHWISE = "depthwise"  # the algorithm's name where runs and summaries list each conv's


def depthwise_shape(groups: int, channels: int, filters: int) -> bool:
    """One filter per channel, each seeing its own channel: groups = channels = filters."""
    return groups == channels == filters > 1


def is_depthwise(node, inputs=None) -> bool:
    w = node.params["weight"]
    return depthwise_shape(node.attrs["groups"], w.shape[1] * node.attrs["groups"], w.shape[0])


def _tap(xpad, i: int, j: int, oh: int, ow: int, sh: int, sw: int):
    return xpad[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]


def depthwise_forward(node, inputs):
    xp = node.xp
    (x,) = inputs
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([x.shape[1:]], node.attrs)
    eh, ew = end_extension([x.shape[1:]], node.attrs)
    n, c, h, w = x.shape
    xpad = xp.zeros((n, c, h + 2 * ph + eh, w + 2 * pw + ew), dtype=x.dtype)
    xpad[:, :, ph: ph + h, pw: pw + w] = x
    oh, ow = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    weight = node.params["weight"].reshape(c, kh, kw)
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)

    # on the CPU one image and a block of channels at a time, so that its k*k passes run in cache
    step = c if on_gpu(xp) else max(1, CACHE_BLOCK // max(1, xpad.shape[2] * xpad.shape[3]))

    def work(lo, hi):
        for cs in [slice(a, min(c, a + step)) for a in range(0, c, step)]:
            for im in ([slice(lo, hi)] if on_gpu(xp) else [slice(k, k + 1) for k in range(lo, hi)]):
                o, xs = out[im, cs], xpad[im, cs]
                tmp = xp.empty(o.shape, dtype=x.dtype)
                for i in range(kh):
                    for j in range(kw):
                        wij = weight[cs, i, j].reshape(1, -1, 1, 1)
                        if i == 0 and j == 0:
                            xp.multiply(_tap(xs, i, j, oh, ow, sh, sw), wij, out=o)
                        else:
                            xp.multiply(_tap(xs, i, j, oh, ow, sh, sw), wij, out=tmp)
                            o += tmp
    over_batch(xp, n, out.size * kh * kw, work)
    saved = DepthwiseSaved(xpad, (kh, kw, sh, sw, ph, pw, h, w))
    bias = node.params.get("bias")
    if on_gpu(xp):  # bias and a fused activation in one generated kernel, as the general conv does
        if bias is None and not node.epilogue:
            return out, saved
        operands = {"y": out} if bias is None else {"y": out, "b": bias.reshape(1, -1, 1, 1)}
        return chain_out(node, "y" if bias is None else "y + b", operands), saved
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    if node.epilogue:
        out = ACTIVATIONS[node.epilogue].apply(xp, out)
    return out, saved


def depthwise_backward(node, saved: DepthwiseSaved, dout, need_dx):
    xp = node.xp
    dout = through_epilogue(node, dout)  # this variant applies its fused activation itself
    xpad = saved.xpad
    kh, kw, sh, sw, ph, pw, h, w = saved.geo
    n, c, oh, ow = dout.shape
    weight = node.params["weight"].reshape(c, kh, kw)
    dw = xp.zeros((c, kh, kw), dtype=dout.dtype)
    dxpad = xp.zeros_like(xpad) if need_dx else None
    for i in range(kh):
        for j in range(kw):
            # the weight's gradient: sum over batch and positions of dout times the tap's input
            dw[:, i, j] = xp.einsum("nchw,nchw->c", dout, _tap(xpad, i, j, oh, ow, sh, sw))
            if need_dx:
                _tap(dxpad, i, j, oh, ow, sh, sw)[...] += dout * weight[:, i, j].reshape(1, c, 1, 1)
    node.grads["weight"] = dw.reshape(node.params["weight"].shape)
    if "bias" in node.params:
        node.grads["bias"] = dout.sum(axis=(0, 2, 3))
    dx = xp.ascontiguousarray(dxpad[:, :, ph: ph + h, pw: pw + w]) if need_dx else None
    return [dx]


@dataclass
class DepthwiseNativeSaved:
    x: Any  # the input itself (contiguous): native.c pads each plane as it reads it
    geo: Any  # native.Geometry: the input's own h, w; oh, ow those of the input extended by padend


def depthwise_native_applies(node, inputs) -> bool:
    return is_depthwise(node) and native.available(node.xp, inputs[0].dtype)


def depthwise_forward_native(node, inputs):
    xp = node.xp
    x = xp.ascontiguousarray(inputs[0])
    (kh, kw), (sh, sw), (ph, pw) = window_geometry([x.shape[1:]], node.attrs)
    eh, ew = end_extension([x.shape[1:]], node.attrs)
    h, w = x.shape[2:]
    oh, ow = (h + 2 * ph + eh - kh) // sh + 1, (w + 2 * pw + ew - kw) // sw + 1
    geo = native.Geometry(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    out = native.depthwise_forward(xp, x, node.params["weight"], node.params.get("bias"), geo)
    if node.epilogue:
        out = ACTIVATIONS[node.epilogue].apply(xp, out)
    return out, DepthwiseNativeSaved(x, geo)


def depthwise_backward_native(node, saved: DepthwiseNativeSaved, dout, need_dx):
    dout = through_epilogue(node, dout)  # this variant applies its fused activation itself
    dx, dw, db = native.depthwise_backward(node.xp, saved.x, dout, node.params["weight"], saved.geo,
                                           need_dx, "bias" in node.params)
    node.grads["weight"] = dw
    if "bias" in node.params:
        node.grads["bias"] = db
    return [dx]


CONV = kernel(Variant("reference", always, conv_forward, conv_backward, epilogue=True),
              Variant("depthwise_native", depthwise_native_applies, depthwise_forward_native,
                      depthwise_backward_native, epilogue=True, own_algorithm=True),
              Variant("depthwise", is_depthwise, depthwise_forward, depthwise_backward, epilogue=True,
                      own_algorithm=True),
              Variant("gpu_chain", gpu, conv_forward_gpu, conv_backward, epilogue=True))


# fc ----------------------------------------------------------------------------------------------


@dataclass
class FcSaved:
    x2: Any  # the input as (N, features)
    shape: tuple  # the input's own shape


def _fc_gemm(node, inputs):
    (x,) = inputs
    x2 = x.reshape(x.shape[0], -1)
    return x2 @ node.params["weight"].T, FcSaved(x2, x.shape)


def fc_forward(node, inputs):
    out, saved = _fc_gemm(node, inputs)
    if "bias" in node.params:
        node.xp.add(out, node.params["bias"], out=out)
    return out, saved


def fc_forward_gpu(node, inputs):
    """The bias and the fused activation in one generated kernel."""
    out, saved = _fc_gemm(node, inputs)
    return chain_out(node, "y + b", {"y": out, "b": node.params["bias"]}), saved


def fc_backward(node, saved: FcSaved, dout, need_dx):
    node.grads["weight"] = dout.T @ saved.x2
    if "bias" in node.params:
        node.grads["bias"] = dout.sum(axis=0)
    return [(dout @ node.params["weight"]).reshape(saved.shape) if need_dx else None]


def fc_backward_gpu(node, saved: FcSaved, dout, need_dx):
    return fc_backward(node, saved, through_epilogue(node, dout), need_dx)


FC = kernel(Variant("reference", always, fc_forward, fc_backward),
            Variant("gpu_chain", lambda node, inputs: gpu(node) and "bias" in node.params,
                    fc_forward_gpu, fc_backward_gpu, epilogue=True))
