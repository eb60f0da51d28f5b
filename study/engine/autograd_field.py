"""A field given as one differentiable function, on the hand engine, its VJP by autograd (``torch.func``).

The hand engine (:mod:`study.engine.field`) differentiates a field through its vector-Jacobian products.  A field
with no hand-written VJP is one function ``fn(y, t, w)`` of the engine's layout (states ``(S, d, B)``, ``S``
members with stacked weights ``w``, ``t`` a float or a per-member ``(S, 1, 1)`` column): :class:`AutogradField`
evaluates it without a graph and takes its VJP with ``torch.func.vjp``, so every solve and gradient method of the
engine runs on it.  :func:`regularised` adds RNODE's integrands (Finlay et al. 2020) as two more rows of the state,
``E' = |f|^2`` and ``F' = |df/dy|_F^2``, the Jacobian's columns by forward mode (``torch.func.jvp``), differentiated
again by ``torch.func.vjp``.  A hand-written field (a task's fast path) is checked against this one by the
conformance tests.
"""
from __future__ import annotations

import torch


class AutogradField:
    """``fn(y, t, w)`` (a tuple of tensors ``w``) as a field of the hand engine; ``rows``: the state's rows where
    they are more than the field's own (the regularised field)."""

    def __init__(self, name: str, fn, rows: int | None = None):
        self.name, self.fn = name, fn
        if rows is not None:
            self.rows = rows

    def fold(self, raw):
        return tuple(raw)

    def as_weights(self, entries):
        return tuple(entries)

    def differentiable(self, y, t, w):
        """The value with autograd's graph (torchdiffeq's right-hand side)."""
        return self.fn(y, t, w)

    def forward(self, y, t, w):
        with torch.no_grad():
            return self.fn(y, t, w).contiguous(), ()

    def backward_weights(self, w):
        return tuple(w), None

    def vjp(self, g, y, t, saved, tensors, meta):
        with torch.enable_grad():
            _, pull = torch.func.vjp(lambda y_, *w_: self.fn(y_, t, w_), y.detach(), *[x.detach() for x in tensors])
            gy, *gw = pull(g)
        return gy, tuple(gw)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        gy, gw = self.vjp(g, y, t, saved, tensors, meta)
        for a, x in zip(acc, gw):
            a.add_(x)
        return gy

    def unfold(self, grads, sign: float = 1.0):
        return tuple(None if x is None else (x if sign == 1.0 else sign * x) for x in grads)


def regularised(name: str, fn, d: int) -> AutogradField:
    """The field ``fn`` of a ``d``-row state with RNODE's integrands: states ``(S, d + 2, B)`` hold ``(y, E, F)``
    and the field returns ``(f, |f|^2, |df/dy|_F^2)`` (the last two per sample)."""

    def augmented(y, t, w):
        z = y[:, :d]
        f = fn(z, t, w)
        frob = torch.zeros_like(f[:, :1])
        for k in range(d):  # the Jacobian's column k by forward mode
            e = torch.zeros_like(z)
            e[:, k] = 1.0
            _, col = torch.func.jvp(lambda z_: fn(z_, t, w), (z,), (e,))
            frob = frob + (col * col).sum(1, keepdim=True)
        return torch.cat([f, (f * f).sum(1, keepdim=True), frob], 1)

    return AutogradField(name, augmented, rows=d + 2)
