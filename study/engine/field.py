"""What the hand engine needs of a vector field: its evaluation without a graph and its VJP by hand.

The engine's solves (:mod:`study.engine.hand_ode`, :mod:`study.engine.step_node`) differentiate a
field ``f(t, y; theta)`` through its vector-Jacobian products, never through autograd's graph of
its operations.  A field is an object with these methods (states feature-major, ``(S, d, B)``,
``S`` independent members with stacked weights):

* ``fold(raw) -> w``: the raw parameters (a tuple, entries may be None) in the form the evaluation
  uses, differentiably (done once per solve); ``as_weights(sequence) -> w`` builds that form from
  its entries in order (an autograd node gets them one by one);
* ``forward(y, t, w) -> (f, saved)``: the value and the tensors its VJP reads (no graph);
* ``backward_weights(w) -> (tensors, meta)``: what of ``w`` the VJP reads (a step node saves these);
* ``vjp(g, y, t, saved, tensors, meta) -> (g^T df/dy, g^T df/dw)``: the weight gradients as a tuple
  shaped like ``w`` (None where ``w`` has None);
* ``vjp_into(acc, g, y, t, saved, tensors, meta) -> g^T df/dy``: the same, the weight gradients
  added into ``acc`` in place;
* ``unfold(grads, sign) -> raw gradients``: the chain rule of ``fold``, times ``sign``.

``t`` is a float, or a per-member ``(S, 1, 1)`` column (:func:`member_time`).  :data:`MLP` is the
study's dynamics network (:mod:`study.engine.evaluation`); a task brings its own field by writing
these methods for it (and a gradcheck test), and every solve and gradient method of the engine
then runs on it.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import evaluation as ev
from .evaluation import member_time

__all__ = ["MLP", "MLPField", "evaluate", "evaluate_vjp", "member_time", "zeros_like"]


class MLPField:
    """The study's dynamics network ``W3 tanh(W2 tanh(W1 y + b1 + t w_t) + b2) + b3`` (evaluation.py's
    arithmetic: sigmoids on folded weights).  Raw parameters ``(W1, b1, w_t, W2, b2, W3, b3)``."""

    name = "mlp"

    def fold(self, raw):
        return ev.fold_weights(*raw)

    def as_weights(self, entries):
        return ev.Folded(*entries)

    def forward(self, y, t, w):
        f, s1, s2 = ev.forward_parts(y, t, w)
        return f, (s1, s2)

    def backward_weights(self, w):
        return (w.a1, w.a2, w.a3), w.wt is not None

    def vjp(self, g, y, t, saved, tensors, meta):
        return ev.vjp(g, y, t, *saved, *tensors, meta)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        a1, a2, a3 = tensors
        return ev.vjp_into(acc, g, y, t, *saved, ev.Folded(a1, None, None, a2, None, a3, None))

    def unfold(self, grads, sign: float = 1.0):
        sq = lambda x: None if x is None else x.squeeze(-1)  # noqa: E731
        two, four = 2.0 * sign, 4.0 * sign
        g = grads
        return (two * g.a1, two * sq(g.b1), None if g.wt is None else two * sq(g.wt), four * g.a2 - two * g.c2,
                two * sq(g.c2), two * g.a3 - sign * g.c3, sign * sq(g.c3))



MLP = MLPField()


def zeros_like(field, w):
    """An accumulator for gradients with respect to ``w`` (shaped like it, None where it has None)."""
    return field.as_weights([None if x is None else torch.zeros_like(x) for x in w])


class _Evaluate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, field, y, t, *w):
        w = field.as_weights(w)
        f, saved = field.forward(y, t, w)
        tensors, meta = field.backward_weights(w)
        ctx.field, ctx.meta, ctx.n_saved, ctx.n_tensors = field, meta, len(saved), len(tensors)
        ctx.save_for_backward(y, *saved, *tensors, *((t,) if isinstance(t, torch.Tensor) else ()))
        ctx.t = None if isinstance(t, torch.Tensor) else t
        return f

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        y, *rest = ctx.saved_tensors
        saved, tensors = rest[: ctx.n_saved], rest[ctx.n_saved: ctx.n_saved + ctx.n_tensors]
        t = rest[ctx.n_saved + ctx.n_tensors] if ctx.t is None else ctx.t
        gy, gw = ctx.field.vjp(g.contiguous(), y, t, tuple(saved), tuple(tensors), ctx.meta)
        return (None, gy, None, *gw)


def evaluate(field, y: torch.Tensor, t, w) -> torch.Tensor:
    """``f(t, y)`` for feature-major ``y``; differentiable in ``y`` and the folded weights (by the field's VJP)."""
    if torch.is_grad_enabled() and (y.requires_grad or any(x is not None and x.requires_grad for x in w)):
        return _Evaluate.apply(field, y, t, *w)
    return field.forward(y, t, w)[0]


def evaluate_vjp(field, y: torch.Tensor, t, w, g: torch.Tensor):
    """``(f, g^T df/dy, g^T df/dw)`` in one pass, without an autograd graph."""
    with torch.no_grad():
        f, saved = field.forward(y, t, w)
        tensors, meta = field.backward_weights(w)
        gy, gw = field.vjp(g, y, t, saved, tensors, meta)
    return f, gy, gw
