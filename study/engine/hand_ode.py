"""The hand engine's solves on the evaluation building block: adaptive dopri5, the continuous adjoint and
the checkpointed adjoint.

All three take the dynamics' raw parameters and a feature-major state ``(S, d, B)``,
evaluate a field (:mod:`study.engine.field`; the study's MLP by default) and step with
:mod:`study.engine.stepper`:

* :func:`direct` - fixed or adaptive steps, differentiated by backpropagation through
  the accepted steps, each attempted step one autograd node with its backward by hand
  (:mod:`study.engine.step_node`);
* :func:`checkpointed` - the same forward solve without a graph, keeping only the state
  before each accepted step; the backward recomputes one step at a time and runs that
  step's hand backward (no autograd graph), so the gradient is exactly that of the
  discretisation that was run (as direct backpropagation gives it) with one state per
  step kept;
* :func:`adjoint` - the continuous adjoint: the forward solve keeps only ``y(t1)``; the
  backward integrates ``(y, a, g)`` from ``t1`` back to ``t0`` with
  ``y' = f``, ``a' = -a^T df/dy``, ``g' = -a^T df/dtheta`` by the same solver (the
  VJPs by :func:`study.engine.field.evaluate_vjp`), like torchdiffeq's
  ``odeint_adjoint`` with its default norm (or the seminorm, which leaves ``g`` out).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from . import stepper
from . import step_node
from .field import MLP, evaluate, evaluate_vjp, member_time
from .instrument import note_derived
from .solvers import EMBEDDED, TABLEAUS


@dataclass(frozen=True)
class Solve:
    """How to solve on [t0, t1]: a fixed-step tableau and its steps, or an embedded pair and its control."""

    method: str
    steps: int = 20
    control: stepper.Control | None = None
    seminorm: bool = False
    t0: float = 0.0
    t1: float = 1.0

    @property
    def adaptive(self) -> bool:
        return self.method in EMBEDDED


def _rhs(w, counter, field=MLP) -> stepper.RHS:
    def F(t, state):
        counter.counts[counter.phase] += 1
        return (evaluate(field, state[0], member_time(t, state[0]), w),)

    return F


def per_member(spec: Solve, y0: torch.Tensor) -> bool:
    """Adaptive solves of several members get one step-size controller per member."""
    return spec.adaptive and y0.shape[0] > 1


def _members(F, state: tuple, t0: float, t1: float, spec: Solve, counter, norm_parts=None, count_steps=True,
             step=None) -> tuple:
    trace = stepper.MemberTrace(state[0].shape[0])
    try:
        return stepper.adaptive_members(F, EMBEDDED[spec.method], state, t0, t1, spec.control, norm_parts, trace,
                                        step)
    finally:
        counter.add_members(trace.evaluations, trace.accepted if count_steps else None, trace.rejected)
        for m, why in trace.failures.items():
            counter.failures.setdefault(m, why)


def _accepting(counter):
    def on_accept():
        if counter.phase != "backward":
            counter.accepted += 1

    return on_accept


def _forward(F, y0: torch.Tensor, spec: Solve, counter, trace: stepper.Trace | None = None, on_step=None,
             step=None) -> torch.Tensor:
    """The solve's end state; ``step(tableau, into)`` -> a :data:`study.engine.stepper.Step`, or None for the
    steppers' own (:func:`study.engine.stepper.rk_step` on ``F``)."""
    if per_member(spec, y0):
        if trace is not None or on_step is not None:
            raise ValueError("a checkpointed adaptive solve keeps one step sequence: train its seeds one at a time")
        pair = EMBEDDED[spec.method]
        return _members(F, (y0,), spec.t0, spec.t1, spec, counter,
                        step=None if step is None else step(pair.tableau, stepper.axpy_m))[0]
    if spec.adaptive:
        pair = EMBEDDED[spec.method]
        trace = stepper.Trace() if trace is None else trace
        try:
            (y1,) = stepper.adaptive(F, pair, (y0,), spec.t0, spec.t1, spec.control, trace=trace,
                                     on_accept=_accepting(counter),
                                     step=None if step is None else step(pair.tableau, stepper.axpy))
        finally:
            if counter.phase != "backward":
                counter.rejected += trace.rejected
        return y1
    tab = TABLEAUS[spec.method]
    (y1,) = stepper.fixed(F, tab, (y0,), spec.t0, spec.t1, spec.steps, on_step,
                          step=None if step is None else step(tab, stepper.axpy))
    return y1


def _needs_grad(y0: torch.Tensor, w) -> bool:
    return torch.is_grad_enabled() and (y0.requires_grad or any(x is not None and x.requires_grad for x in w))


def direct(y0: torch.Tensor, raw: tuple, spec: Solve, counter, field=MLP) -> torch.Tensor:
    """Backpropagation through the accepted steps, each attempted step one graph node
    (:mod:`study.engine.step_node`); without gradients, the plain steps.  ``raw``: ``field``'s parameters."""
    w = field.fold(raw)
    note_derived(w)
    step = (lambda tab, into: step_node.node_step(w, counter, tab, into, field)) if _needs_grad(y0, w) else None
    return _forward(_rhs(w, counter, field), y0, spec, counter, step=step)


def _save(ctx, spec: Solve, counter, first: torch.Tensor, raw: tuple, field) -> None:
    """Keep ``first`` (the activation) and the parameters (some may be absent) for the backward."""
    ctx.spec, ctx.counter, ctx.field = spec, counter, field
    ctx.absent = [i for i, r in enumerate(raw) if r is None]
    ctx.save_for_backward(first, *[r for r in raw if r is not None])


def _saved(ctx) -> tuple[torch.Tensor, list]:
    first, *params = ctx.saved_tensors
    for i in ctx.absent:
        params.insert(i, None)
    return first, params


class _Checkpointed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, spec: Solve, counter, field, *raw):
        w = field.fold(raw)
        kept: list = []
        trace = stepper.Trace()
        y1 = _forward(_rhs(w, counter, field), y0, spec, counter, trace, on_step=lambda n, t, y: kept.append(y[0]))
        if spec.adaptive:
            kept = [s[2][0] for s in trace.steps]
            ctx.plan = [(t, dt) for t, dt, _ in trace.steps]
            ctx.x = trace.x
        else:
            dt = (spec.t1 - spec.t0) / spec.steps
            ctx.plan = [(spec.t0 + n * dt, dt) for n in range(spec.steps)]
        _save(ctx, spec, counter, torch.stack(kept), raw, field)  # one state per step
        return y1

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        kept, raw = _saved(ctx)
        spec, counter, field = ctx.spec, ctx.counter, ctx.field
        w = field.fold(raw)
        acc = step_node.zeros_like(w, field)
        bw = field.backward_weights(w)
        last = len(ctx.plan) - 1
        tab = EMBEDDED[spec.method].tableau if spec.adaptive else TABLEAUS[spec.method]
        for n in reversed(range(len(ctx.plan))):  # recompute each step, then its backward: no autograd graph
            t, dt = ctx.plan[n]
            tape: list = []
            F = step_node.recording(w, counter, tape, field)
            y1, ks = step_node.forward(F, tab, t, kept[n], dt)
            ybar, kbars, direct_bar = g, None, None
            if spec.adaptive and n == last:  # the end state is the dense output inside the last step
                direct_bar, ybar, kbars = _dense_grads(EMBEDDED[spec.method], kept[n], y1, ks, dt, ctx.x, g)
            g, _ = step_node.backward(tape, tab, dt, bw, acc, ybar, kbars, field)
            if direct_bar is not None:
                g = direct_bar if g is None else g.add_(direct_bar)
        return (g, None, None, None, *field.unfold(acc))


def _dense_grads(pair, y0: torch.Tensor, y1: torch.Tensor, ks: list, dt: float, x: float, g: torch.Tensor):
    """The gradients of Shampine's dense output (a linear combination) with respect to the step's start, end and
    stage derivatives: ``(w.r.t. y0, w.r.t. y1, [w.r.t. each k])``."""
    leaves = [v.detach().requires_grad_() for v in (y0, y1, *ks)]
    with torch.enable_grad():
        (out,) = stepper.dense(pair, (leaves[0],), (leaves[1],), [(k,) for k in leaves[2:]], dt, x)
        grads = torch.autograd.grad(out, leaves, g, allow_unused=True)
    return grads[0], grads[1], list(grads[2:])


def checkpointed(y0: torch.Tensor, raw: tuple, spec: Solve, counter, field=MLP) -> torch.Tensor:
    if not torch.is_grad_enabled():
        return direct(y0, raw, spec, counter, field)
    return _Checkpointed.apply(y0, spec, counter, field, *raw)


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, spec: Solve, counter, field, *raw):
        w = field.fold(raw)
        y1 = _forward(_rhs(w, counter, field), y0, spec, counter)
        _save(ctx, spec, counter, y1, raw, field)  # y(t1) only: O(1) in the steps
        return y1

    @staticmethod
    @once_differentiable
    def backward(ctx, a1):
        y1, raw = _saved(ctx)
        spec, counter, field = ctx.spec, ctx.counter, ctx.field
        w = field.fold(raw)
        present = [i for i, x in enumerate(raw) if x is not None]

        def F(t, state):  # reverse dynamics of (y, a, g): y' = f, a' = -a^T f_y, g' = -a^T f_theta
            counter.counts[counter.phase] += 1
            f, gy, gw = evaluate_vjp(field, state[0], member_time(t, state[0]), w, state[1])
            raw_g = field.unfold(gw, -1.0)
            return (f, gy.neg_(), *(raw_g[i] for i in present))

        aug = (y1, a1.contiguous(), *(torch.zeros_like(raw[i]) for i in present))
        if per_member(spec, y1):
            end = _members(F, aug, spec.t1, spec.t0, spec, counter, (0, 1) if spec.seminorm else None, False)
        elif spec.adaptive:
            parts = (0, 1) if spec.seminorm else None
            end = stepper.adaptive(F, EMBEDDED[spec.method], aug, spec.t1, spec.t0, spec.control, norm_parts=parts)
        else:
            end = stepper.fixed(F, TABLEAUS[spec.method], aug, spec.t1, spec.t0, spec.steps)
        grads: list = [None] * len(raw)
        for i, g in zip(present, end[2:]):
            grads[i] = g
        return (end[1], None, None, None, *grads)


def adjoint(y0: torch.Tensor, raw: tuple, spec: Solve, counter, field=MLP) -> torch.Tensor:
    if not torch.is_grad_enabled():
        return direct(y0, raw, spec, counter, field)
    return _Adjoint.apply(y0, spec, counter, field, *raw)
