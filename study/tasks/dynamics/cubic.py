"""The dynamics task's model field with its VJP by hand: ``f(y) = W2 tanh(W1 y**3 + b1) + b2``, and its RNODE
form.  The fast path of :mod:`study.tasks.dynamics`, registered through its system's ``fields``; the conformance
tests check both against autograd (:func:`autograd_fields`)."""
from __future__ import annotations

import torch

from ...engine.autograd_field import AutogradField, regularised


class CubicField:
    """``f(y) = W2 tanh(W1 y**3 + b1) + b2`` for the hand engine (:mod:`study.engine.field`): raw parameters
    ``(W1 (S, H, 2), b1 (S, H), W2 (S, 2, H), b2 (S, 2))``; no time input; states ``(S, 2, B)``."""

    name = "cubic-mlp"

    def fold(self, raw):
        W1, b1, W2, b2 = raw
        return (W1, b1.unsqueeze(-1), W2, b2.unsqueeze(-1))

    def as_weights(self, entries):
        return tuple(entries)

    def forward(self, y, t, w):
        W1, c1, W2, c2 = w
        u = y * y * y
        h = torch.baddbmm(c1, W1, u).tanh_()
        return torch.baddbmm(c2, W2, h), (u, h)

    def differentiable(self, y, t, w):
        """The value with autograd's graph (torchdiffeq's right-hand side)."""
        W1, c1, W2, c2 = w
        h = torch.baddbmm(c1, W1, y * y * y).tanh()
        return torch.baddbmm(c2, W2, h)

    def backward_weights(self, w):
        return (w[0], w[2]), None

    @staticmethod
    def _back(g, y, saved, W1, W2):
        u, h = saved
        gz = torch.bmm(W2.transpose(1, 2), g).mul_(1.0 - h * h)
        gy = torch.bmm(W1.transpose(1, 2), gz).mul_(3.0 * y * y)
        return gz, gy

    def vjp(self, g, y, t, saved, tensors, meta):
        gz, gy = self._back(g, y, saved, *tensors)
        u, h = saved
        return gy, (torch.bmm(gz, u.transpose(1, 2)), gz.sum(-1, keepdim=True), torch.bmm(g, h.transpose(1, 2)),
                    g.sum(-1, keepdim=True))

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        gz, gy = self._back(g, y, saved, *tensors)
        u, h = saved
        acc[0].baddbmm_(gz, u.transpose(1, 2))
        acc[1].add_(gz.sum(-1, keepdim=True))
        acc[2].baddbmm_(g, h.transpose(1, 2))
        acc[3].add_(g.sum(-1, keepdim=True))
        return gy

    def unfold(self, grads, sign: float = 1.0):
        g0, g1, g2, g3 = grads
        if sign == 1.0:
            return (g0, g1.squeeze(-1), g2, g3.squeeze(-1))
        return (sign * g0, sign * g1.squeeze(-1), sign * g2, sign * g3.squeeze(-1))


CUBIC = CubicField()


class RegularisedCubic(CubicField):
    """The cubic field with RNODE's integrands as two more rows of the state, ``(y, E, F)``: ``E' = |f|^2`` and
    ``F' = |df/dy|_F^2 = sum_k |J e_k|^2`` (``J = W2 D W1 diag(3 y^2)``, its columns by forward-mode); the VJP
    through both, by hand (second derivatives of the tanh layer and of ``y**3``)."""

    name = "cubic-mlp-rnode"
    rows = 4

    def forward(self, y, t, w):
        W1, c1, W2, c2 = w
        z = y[:, :2]
        u = z * z * z
        h = torch.baddbmm(c1, W1, u).tanh_()
        f = torch.baddbmm(c2, W2, h)
        d = 1.0 - h * h
        cols = []  # per input k: s_k = 3 y_k^2, a_k = W1[:, k] s_k, v_k = D a_k, J e_k = W2 v_k
        for k in range(2):
            s = 3.0 * z[:, k: k + 1] ** 2
            a = W1[:, :, k: k + 1] * s
            v = d * a
            cols += (s, a, v, torch.bmm(W2, v))
        frob = sum((jk * jk).sum(1, keepdim=True) for jk in cols[3::4])
        return torch.cat([f, (f * f).sum(1, keepdim=True), frob], 1), (z, u, h, d, f, *cols)

    def differentiable(self, y, t, w):
        return self.forward(y, t, w)[0]

    def _back_reg(self, g, saved, W1, W2, grads: list):
        z, u, h, d, f = saved[:5]
        gf = g[:, :2] + 2.0 * g[:, 2:3] * f
        W2t = W2.transpose(1, 2)
        bd, gy = torch.zeros_like(h), torch.zeros_like(z)
        gW1, gW2 = torch.zeros_like(W1), torch.bmm(gf, h.transpose(1, 2))
        for k in range(2):
            s, a, v, jk = saved[5 + 4 * k: 9 + 4 * k]
            q = 2.0 * g[:, 3:4] * jk
            gW2.baddbmm_(q, v.transpose(1, 2))
            bv = torch.bmm(W2t, q)
            bd += bv * a
            ba = bv * d
            gW1[:, :, k] += (ba * s).sum(-1)
            gy[:, k] += (ba * W1[:, :, k: k + 1]).sum(1) * 6.0 * z[:, k]
        gp = torch.bmm(W2t, gf).sub_(2.0 * h * bd).mul_(d)
        gW1.baddbmm_(gp, u.transpose(1, 2))
        gy += torch.bmm(W1.transpose(1, 2), gp) * (3.0 * z * z)
        grads[:] = [gW1, gp.sum(-1, keepdim=True), gW2, gf.sum(-1, keepdim=True)]
        return torch.cat([gy, torch.zeros_like(g[:, 2:])], 1)

    def vjp(self, g, y, t, saved, tensors, meta):
        grads: list = []
        gy = self._back_reg(g, saved, *tensors, grads)
        return gy, tuple(grads)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        grads: list = []
        gy = self._back_reg(g, saved, *tensors, grads)
        for a, x in zip(acc, grads):
            a.add_(x)
        return gy


CUBIC_RNODE = RegularisedCubic()


def cubic_mlp(y, t, w):
    """The same field as one differentiable function of the engine's layout (autograd's reference)."""
    W1, b1, W2, b2 = w
    h = torch.baddbmm(b1.unsqueeze(-1), W1, y * y * y).tanh()
    return torch.baddbmm(b2.unsqueeze(-1), W2, h)


def hand_fields() -> tuple:
    """The field and its RNODE form, VJPs by hand."""
    return CUBIC, CUBIC_RNODE


def autograd_fields() -> tuple:
    """The same two by autograd: what the hand-written ones are checked against."""
    return AutogradField("cubic-mlp", cubic_mlp), regularised("cubic-mlp-rnode", cubic_mlp, 2)
