"""conv and fc: the GEMM layers. Convolution's algorithms live in backend/conv.py (which records
the path it took); here is what the table adds around them: padend, the bias, and the fused
activation. Weights are (out, in/groups, kh, kw) as in PyTorch, layout NCHW."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...ops import window_geometry
from .. import im2col
from ..conv import Conv
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


CONV = kernel(Variant("reference", always, conv_forward, conv_backward, epilogue=True),
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
