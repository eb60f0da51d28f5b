"""One Runge-Kutta step of the dynamics network as one graph node, with its backward by hand.

The hand engine's direct and checkpointed solves (:mod:`study.engine.hand_ode`)
differentiate through their steps one step at a time:

* :func:`forward` runs one step of any tableau through the engine's one stage loop
  (:func:`study.engine.stepper.stages`) without a graph, writing each evaluation's
  input, time and sigmoid outputs on a tape;
* :func:`backward` runs the stages in reverse with the evaluation's hand-written VJP
  (:func:`study.engine.evaluation.vjp_into`), adding every evaluation's weight gradients
  into one accumulator, and returns the gradients with respect to the step's state and
  its given first stage derivative (first same as last);
* :class:`_Step` joins the two as one autograd node per attempted step (direct
  backpropagation: one node where evaluations and stage combinations made about 13),
  and the checkpointed adjoint calls them directly on each recomputed step, with no
  autograd graph at all.

The stage derivatives are outputs of the node, so the error estimate, the first-same-as-last
derivative of the next step and Shampine's dense output read them like any tensor; a stage that
nothing reads (dopri5's last, first same as last, when no later step or dense output uses it) gets
no gradient and its evaluation's VJP is skipped.  Per-member steps
(``t`` and ``dt`` ``(S,)`` tensors, :func:`study.engine.stepper.axpy_m`) work the same way.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import stepper
from .field import MLP, member_time, zeros_like as _zeros_like
from .solvers import Tableau


def recording(w, counter, tape: list, field=MLP) -> stepper.RHS:
    """A right-hand side without a graph that counts each evaluation and appends ``(y, t, saved)`` to ``tape``
    (``saved``: what the field's VJP reads, :mod:`study.engine.field`)."""

    def F(t, state):
        counter.counts[counter.phase] += 1
        y = state[0]
        tt = member_time(t, y)
        f, saved = field.forward(y, tt, w)
        tape.append((y, tt, saved))
        return (f,)

    return F


def forward(F: stepper.RHS, tab: Tableau, t, y: torch.Tensor, dt, k0: torch.Tensor | None = None,
            into: stepper.Combine = stepper.axpy) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(y1, stage derivatives)`` of one step (``F``: a :func:`recording` right-hand side; no graph)."""
    with torch.no_grad():
        y1, ks = stepper.rk_step(F, tab, into)(t, (y,), None if k0 is None else (k0,), dt)
    return y1[0], [k[0] for k in ks]


def zeros_like(w, field=MLP):
    """An accumulator for gradients with respect to ``w``."""
    return _zeros_like(field, w)


def _add_times_(acc: torch.Tensor, x: torch.Tensor, c) -> torch.Tensor:
    """``acc += x * c`` in place, for a float or a per-member column ``c``."""
    return acc.add_(x, alpha=c) if not isinstance(c, torch.Tensor) else acc.addcmul_(x, c)


def backward(tape: list, tab: Tableau, dt, w, acc, ybar: torch.Tensor | None,
             kbars: list | None = None, field=MLP) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of one step recorded on ``tape``, in reverse: given ``ybar`` (with respect to ``y1``, or
    None) and ``kbars`` (with respect to each stage derivative, entries None), add the weight gradients into
    ``acc`` and return ``(gradient w.r.t. y, w.r.t. the given first derivative k0)``, either None where no
    gradient reaches it.  ``dt``: a float, or the
    per-member column ``(S, 1, 1)`` in the state's dtype.  ``w``: the field's backward weights
    ``(tensors, meta)`` (:mod:`study.engine.field`)."""
    tensors, meta = w
    s = tab.stages
    first = s - len(tape)  # 1 when k0 was given: its evaluation belongs to the step before
    ubar: list = [None] * s
    k0bar = None
    for i in reversed(range(s)):
        kbar = None
        if ybar is not None and tab.b[i] != 0.0:
            kbar = ybar * (dt * tab.b[i])
        if kbars is not None and kbars[i] is not None:
            kbar = kbars[i].clone() if kbar is None else kbar.add_(kbars[i])
        for j in range(i + 1, s):
            if ubar[j] is not None and tab.a[j][i] != 0.0:
                c = dt * tab.a[j][i]
                kbar = ubar[j] * c if kbar is None else _add_times_(kbar, ubar[j], c)
        if kbar is None:  # nothing depends on this stage: no VJP
            continue
        if i < first:
            k0bar = kbar
            continue
        y_i, t_i, saved = tape[i - first]
        ubar[i] = field.vjp_into(acc, kbar, y_i, t_i, saved, tensors, meta)
    terms = [u for u in ubar if u is not None]
    if ybar is not None:
        terms.insert(0, ybar)
    if not terms:
        return None, k0bar
    y0bar = terms[0].clone()
    for u in terms[1:]:
        y0bar.add_(u)
    return y0bar, k0bar


def dt_column(dt, like: torch.Tensor):
    """A step size as :func:`backward` takes it: a float, or per member the ``(S, 1, 1)`` column of ``like``'s dtype."""
    return dt.to(like.dtype).view(-1, 1, 1) if isinstance(dt, torch.Tensor) else dt


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, y, k0, *w):
        tab, t, dt, into, counter, field = plan
        folded = field.as_weights(w)
        tape: list = []
        y1, ks = forward(recording(folded, counter, tape, field), tab, t, y, dt, k0, into)
        first = 0 if k0 is None else 1
        times = [tt for _, tt, _ in tape]
        tensors, meta = field.backward_weights(folded)
        ctx.set_materialize_grads(False)
        ctx.tab, ctx.first, ctx.field, ctx.meta = tab, first, field, meta
        ctx.n_tensors, ctx.n_saved = len(tensors), len(tape[0][2]) if tape else 0
        ctx.dt = dt_column(dt, y)
        ctx.float_times = None if times and isinstance(times[0], torch.Tensor) else times
        ctx.weight_shapes = [None if x is None else x.shape for x in w]
        tensor_times = times if ctx.float_times is None else []
        ctx.save_for_backward(*tensors, *(x for y_i, _, saved in tape for x in (y_i, *saved)), *tensor_times)
        return (y1, *ks[first:])

    @staticmethod
    @once_differentiable
    def backward(ctx, ybar, *kbars):
        everything = ctx.saved_tensors
        tensors, rest = everything[: ctx.n_tensors], everything[ctx.n_tensors:]
        n, per = len(ctx.tab.b) - ctx.first, 1 + ctx.n_saved
        acts, times = rest[: per * n], rest[per * n:] if ctx.float_times is None else ctx.float_times
        tape = [(acts[per * e], times[e], tuple(acts[per * e + 1: per * (e + 1)])) for e in range(n)]
        like = tensors[0]
        acc = ctx.field.as_weights([None if shape is None else like.new_zeros(shape) for shape in ctx.weight_shapes])
        y0bar, k0bar = backward(tape, ctx.tab, ctx.dt, (tensors, ctx.meta), acc, ybar,
                                [None] * ctx.first + list(kbars), ctx.field)
        if y0bar is None:
            y0bar = torch.zeros_like(acts[0])
        return (None, y0bar, k0bar, *acc)


def node_step(w, counter, tab: Tableau, into: stepper.Combine = stepper.axpy, field=MLP) -> stepper.Step:
    """A :data:`study.engine.stepper.Step` whose every attempted step is one :class:`_Step` node (states of one
    tensor, as the hand engine's direct solve has), on ``field``'s folded weights ``w``."""

    def step(t, y, k0, dt):
        out = _Step.apply((tab, t, dt, into, counter, field), y[0], None if k0 is None else k0[0], *w)
        ks = ([k0] if k0 is not None else []) + [(k,) for k in out[1:]]
        return (out[0],), ks

    return step
