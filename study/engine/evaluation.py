"""The engine's building block: one evaluation of the dynamics network, with its backward by hand.

The network is ``f(t, y) = W3 tanh(W2 tanh(W1 y + b1 + t w_t) + b2) + b3`` evaluated
as in :class:`study.engine.models.Dynamics`: ``tanh(z) = 2 sigmoid(2 z) - 1`` with
the affine parts folded into the weights once per solve (:func:`fold_weights`),
and the state feature-major, ``(S, d, B)`` (the width-6 products then have the 6
as their row count, several times faster here).

The engine reaches it through :data:`study.engine.field.MLP` (its differentiable
evaluation, whose backward is the hand-written vector-Jacobian product :func:`vjp`,
checked with ``gradcheck``, and the value and VJP in one call, as the continuous
adjoint's backward solve needs).  Time is an input, not differentiated.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


class Folded(NamedTuple):
    """The dynamics' weights as the evaluation uses them; columns are ``(S, rows, 1)``, ``wt`` may be None.

    A per-block ResNet stacks a step axis after the member axis (``(S, N, rows, cols)``);
    :meth:`at` selects one step's weights (for shared weights it is the identity).
    """

    a1: torch.Tensor
    b1: torch.Tensor
    wt: torch.Tensor | None
    a2: torch.Tensor
    c2: torch.Tensor
    a3: torch.Tensor
    c3: torch.Tensor

    def at(self, n: int) -> "Folded":
        if self.a1.dim() == 3:  # shared weights
            return self
        return Folded(*(None if w is None else w[:, n] for w in self))


def fold_weights(W1, b1, wt, W2, b2, W3, b3) -> Folded:
    """``(a1, a2, a3) = (2 W1, 4 W2, 2 W3)``, ``b1 -> 2 b1``, ``w_t -> 2 w_t``, ``c2 = 2 (b2 - W2 1)``,
    ``c3 = b3 - W3 1`` (with ``h = 2 s - 1``); differentiable, done once per solve."""
    col = lambda x: None if x is None else x.unsqueeze(-1)  # noqa: E731
    return Folded(2.0 * W1, col(2.0 * b1), col(None if wt is None else 2.0 * wt), 4.0 * W2,
                  col(2.0 * (b2 - W2.sum(-1))), 2.0 * W3, col(b3 - W3.sum(-1)))


def forward_parts(y, t, w: Folded):
    """``(f, s1, s2)`` for feature-major ``y`` (S, d, B), ``t`` a float or an ``(S, 1, 1)`` tensor: the value
    and what :func:`vjp` reads (no graph of its own)."""
    c1 = w.b1 if w.wt is None else w.b1 + t * w.wt
    s1 = torch.baddbmm(c1, w.a1, y).sigmoid_()  # in place on the product: one fresh tensor, not two
    s2 = torch.baddbmm(w.c2, w.a2, s1).sigmoid_()
    return torch.baddbmm(w.c3, w.a3, s2), s1, s2


def _backward_layers(g, s1, s2, a1, a2, a3):
    """The gradients with respect to the two sigmoids' arguments and to ``y``: ``(g1, g2, g^T df/dy)``."""
    g2 = torch.bmm(a3.transpose(1, 2), g)
    _sigmoid_backward(g2, s2, grad_input=g2)  # into the product's own storage
    g1 = torch.bmm(a2.transpose(1, 2), g2)
    _sigmoid_backward(g1, s1, grad_input=g1)
    return g1, g2, torch.bmm(a1.transpose(1, 2), g1)


def vjp(g, y, t, s1, s2, a1, a2, a3, has_wt: bool):
    """``g^T df/dy`` and ``g^T df/dw`` for each folded weight (``None`` for an absent ``wt``); only the three
    matrices enter (the biases' gradients are sums)."""
    g1, g2, gy = _backward_layers(g, s1, s2, a1, a2, a3)
    gb1 = g1.sum(-1, keepdim=True)
    gwt = (t * gb1 if isinstance(t, torch.Tensor) else gb1 * t) if has_wt else None
    grads = Folded(torch.bmm(g1, y.transpose(1, 2)), gb1, gwt, torch.bmm(g2, s1.transpose(1, 2)),
                   g2.sum(-1, keepdim=True), torch.bmm(g, s2.transpose(1, 2)), g.sum(-1, keepdim=True))
    return gy, grads


def vjp_into(acc: Folded, g, y, t, s1, s2, w: Folded) -> torch.Tensor:
    """:func:`vjp` with the weight gradients added into ``acc`` in place (``g^T df/dy`` is returned): a step's
    or a solve's evaluations accumulate into one set of gradients without a tensor per evaluation."""
    g1, g2, gy = _backward_layers(g, s1, s2, w.a1, w.a2, w.a3)
    acc.a1.baddbmm_(g1, y.transpose(1, 2))
    gb1 = g1.sum(-1, keepdim=True)
    acc.b1.add_(gb1)
    if acc.wt is not None:
        if isinstance(t, torch.Tensor):
            acc.wt.addcmul_(gb1, t)
        else:
            acc.wt.add_(gb1, alpha=t)
    acc.a2.baddbmm_(g2, s1.transpose(1, 2))
    acc.c2.add_(g2.sum(-1, keepdim=True))
    acc.a3.baddbmm_(g, s2.transpose(1, 2))
    acc.c3.add_(g.sum(-1, keepdim=True))
    return gy


def member_time(t, like: torch.Tensor):
    """A time as the evaluation takes it: a float, or a per-member float64 ``(S,)`` tensor (per-member solves)
    as ``(S, 1, 1)`` in ``like``'s dtype."""
    return t.to(like.dtype).view(-1, 1, 1) if isinstance(t, torch.Tensor) else t
