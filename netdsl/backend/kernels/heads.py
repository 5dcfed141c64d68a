"""The classifier heads: softmax (cross-entropy) and the multiclass SVM (hinge). At a network's
output each is differentiated through its loss, not its own backward."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .joins import identity_backward, identity_forward
from .variants import Variant, always, kernel


@dataclass
class Probabilities:
    out: Any


def softmax_forward(node, inputs):
    xp = node.xp
    x = inputs[0]
    e = xp.exp(x - x.max(axis=1, keepdims=True))
    out = e / e.sum(axis=1, keepdims=True)
    return out, Probabilities(out)


def softmax_backward(node, saved: Probabilities, dout, need_dx):
    """Only where a softmax is not an output (its loss gives the gradient there): the Jacobian
    y * (dout - sum(dout * y))."""
    y = saved.out
    return [y * (dout - (dout * y).sum(axis=1, keepdims=True))]


def softmax_loss(node, x, labels):
    """Cross-entropy of softmax(x); gradient (p - onehot)/N."""
    xp = node.xp
    shifted = x - x.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    n = x.shape[0]
    rows = xp.arange(n)
    loss = -log_p[rows, labels].mean()
    dx = xp.exp(log_p)
    dx[rows, labels] -= 1
    return loss, dx / n


def svm_loss(node, x, labels):
    """Multiclass hinge: sum over j != y of max(0, s_j - s_y + margin), averaged over the batch."""
    xp = node.xp
    n = x.shape[0]
    rows = xp.arange(n)
    correct = x[rows, labels][:, None]
    margins = xp.maximum(0, x - correct + node.attrs["margin"])
    margins[rows, labels] = 0
    loss = margins.sum() / n
    dx = (margins > 0).astype(x.dtype)
    dx[rows, labels] = -dx.sum(axis=1)
    return loss, dx / n


SOFTMAX = kernel(Variant("reference", always, softmax_forward, softmax_backward), loss=softmax_loss)
# the scores themselves: the hinge loss is training's
SVM = kernel(Variant("reference", always, identity_forward, identity_backward), loss=svm_loss)
