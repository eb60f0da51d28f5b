"""RNODE's regularisers on the study's dynamics network, as a field of the hand engine.

Finlay et al. (2020, "How to train your neural ODE") add two integrals to the loss: the flow's kinetic energy
``int |f|^2 dt`` and the squared Frobenius norm of its Jacobian ``int |df/dy|_F^2 dt``, each integrated along the
solve as an extra state.  :class:`RegularisedMLP` is the network of :mod:`study.engine.evaluation`,
``f = W3 tanh(W2 tanh(W1 y + b1 + t w_t) + b2) + b3``, on the state ``(y, E, F)`` with ``E' = |f|^2`` and
``F' = sum_k |J p_k|^2`` over probes ``p_k``: the unit vectors (the exact norm, one forward-mode tangent per
state dimension) or one probe per point (Hutchinson's estimate, as RNODE's own code does in more than a few
dimensions).  Its raw parameters are :class:`study.engine.field.MLPField`'s, ``(W1, b1, w_t, W2, b2, W3, b3)``
(``w_t`` may be None), so a model swaps one field for the other without moving a weight.

The evaluation is textbook ``tanh`` (the tangents need its derivative ``1 - h^2``); its vector-Jacobian product,
through the tangents' second derivatives, is written by hand and checked with ``gradcheck``.  Its ``forward`` is
also plain torch, so autograd differentiates it under torchdiffeq.  :data:`VERSION` names its arithmetic in
configs (``+rnode-1``).
"""
from __future__ import annotations

import torch

from ..config import RNODE_VERSION as VERSION  # noqa: F401  (configs name it: study.config.train_engine)


def tangent(W1, W2, W3, d1, d2, p) -> tuple:
    """The forward-mode tangent of the two-layer tanh network along ``p``: ``(p, W1 p, D1 W1 p, W2 D1 W1 p,
    D2 W2 D1 W1 p, J p)`` with ``D = diag(1 - h^2)`` (what :func:`tangent_vjp` reads)."""
    a1 = torch.bmm(W1, p)
    v1 = d1 * a1
    a2 = torch.bmm(W2, v1)
    v2 = d2 * a2
    return p, a1, v1, a2, v2, torch.bmm(W3, v2)


def tangent_vjp(q, t: tuple, W1t, W2t, W3t, d1, d2, bd1, bd2, grads: list, at: tuple) -> None:
    """The VJP of one :func:`tangent` with cotangent ``q`` on its ``J p``: the weight gradients are added into
    ``grads`` at the indices ``at = (W1, W2, W3)`` and the cotangents of ``d1`` and ``d2`` into ``bd1``, ``bd2`` (in
    place; the caller carries them through ``d = 1 - h^2``)."""
    p, a1, v1, a2, v2, _ = t
    _add(grads, at[2], torch.bmm(q, v2.transpose(1, 2)))
    bv2 = torch.bmm(W3t, q)
    bd2 += bv2 * a2
    ba2 = bv2 * d2
    _add(grads, at[1], torch.bmm(ba2, v1.transpose(1, 2)))
    bv1 = torch.bmm(W2t, ba2)
    bd1 += bv1 * a1
    _add(grads, at[0], torch.bmm(bv1 * d1, p.transpose(1, 2)))


class RegularisedMLP:
    """``F(t, (y, E, F)) = (f(t, y), |f|^2, sum_k |J p_k|^2)`` for feature-major states ``(S, d + 2, B)``."""

    name = "mlp-rnode"

    def __init__(self, dim: int, probe: torch.Tensor | None = None, jacobian: bool = True):
        # probe: (S, d, B) for Hutchinson's estimate, None: the exact norm; jacobian False: no tangents, F' = 0
        self.dim, self.probe, self.jacobian = dim, probe, jacobian

    @property
    def rows(self) -> int:
        return self.dim + 2

    def fold(self, raw):
        W1, b1, wt, W2, b2, W3, b3 = raw
        col = lambda v: None if v is None else v.unsqueeze(-1)  # noqa: E731
        return (W1, col(b1), col(wt), W2, col(b2), W3, col(b3))

    def as_weights(self, entries):
        return tuple(entries)

    def _probes(self, z):
        if not self.jacobian:
            return ()
        if self.probe is not None:
            return (self.probe,)
        S, d, B = z.shape
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        return tuple(eye[k].view(1, d, 1).expand(S, d, B) for k in range(d))

    def forward(self, y, t, w):
        W1, c1, u1, W2, c2, W3, c3 = w
        z = y[:, : self.dim]
        h1 = torch.baddbmm(c1 if u1 is None else c1 + t * u1, W1, z).tanh_()
        h2 = torch.baddbmm(c2, W2, h1).tanh_()
        f = torch.baddbmm(c3, W3, h2)
        d1, d2 = 1.0 - h1 * h1, 1.0 - h2 * h2
        frob = torch.zeros_like(f[:, :1])
        tangents = []  # per probe: p, W1 p, D1 W1 p, W2 D1 W1 p, D2 W2 D1 W1 p, J p
        for p in self._probes(z):
            tan = tangent(W1, W2, W3, d1, d2, p)
            frob = frob + (tan[5] * tan[5]).sum(1, keepdim=True)
            tangents += tan
        return torch.cat([f, (f * f).sum(1, keepdim=True), frob], 1), (z, h1, h2, d1, d2, f, *tangents)

    def backward_weights(self, w):
        return (w[0], w[3], w[5]), w[2] is not None

    def _backward(self, g, t, saved, W1, W2, W3, has_wt: bool, grads: list) -> torch.Tensor:
        """Add the weight gradients into ``grads`` (shaped like the folded weights; entries None until set) and
        return ``g^T dF/dy``."""
        d = self.dim
        z, h1, h2, d1, d2, f = saved[:6]
        gz = g[:, :d] + 2.0 * g[:, d: d + 1] * f  # E' = |f|^2
        gf = 2.0 * g[:, d + 1: d + 2]  # F' = sum |J p|^2: the cotangent of each J p is 2 gF J p
        W1t, W2t, W3t = W1.transpose(1, 2), W2.transpose(1, 2), W3.transpose(1, 2)
        bd1, bd2 = torch.zeros_like(h1), torch.zeros_like(h2)
        for k in range(6, len(saved), 6):
            tan = saved[k: k + 6]
            tangent_vjp(gf * tan[5], tan, W1t, W2t, W3t, d1, d2, bd1, bd2, grads, (0, 3, 5))
        _add(grads, 5, torch.bmm(gz, h2.transpose(1, 2)))
        _add(grads, 6, gz.sum(-1, keepdim=True))
        bh2 = torch.baddbmm(-2.0 * h2 * bd2, W3t, gz)  # d(1 - h^2)/dh = -2 h
        bp2 = bh2 * d2
        _add(grads, 3, torch.bmm(bp2, h1.transpose(1, 2)))
        _add(grads, 4, bp2.sum(-1, keepdim=True))
        bh1 = torch.baddbmm(-2.0 * h1 * bd1, W2t, bp2)
        bp1 = bh1 * d1
        _add(grads, 0, torch.bmm(bp1, z.transpose(1, 2)))
        _add(grads, 1, bp1.sum(-1, keepdim=True))
        if has_wt:
            _add(grads, 2, (t * bp1).sum(-1, keepdim=True))
        return torch.cat([torch.bmm(W1t, bp1), torch.zeros_like(g[:, d:])], 1)

    def vjp(self, g, y, t, saved, tensors, meta):
        grads: list = [None] * 7
        gy = self._backward(g, t, saved, *tensors, meta, grads)
        return gy, tuple(grads)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        grads: list = [None] * 7
        gy = self._backward(g, t, saved, *tensors, meta, grads)
        for a, x in zip(acc, grads):
            if a is not None:
                a.add_(x)
        return gy

    def unfold(self, grads, sign: float = 1.0):
        sq = lambda v: None if v is None else v.squeeze(-1)  # noqa: E731
        out = (grads[0], sq(grads[1]), sq(grads[2]), grads[3], sq(grads[4]), grads[5], sq(grads[6]))
        return out if sign == 1.0 else tuple(None if x is None else sign * x for x in out)


def _add(grads: list, i: int, x) -> None:
    grads[i] = x if grads[i] is None else grads[i] + x
