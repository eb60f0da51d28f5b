"""Generic Runge-Kutta steppers over Butcher tableaus, on states that are tuples of tensors.

One stage loop (:func:`stages`) serves every solve of the hand engine: fixed steps
(:func:`fixed`), adaptive steps with an embedded pair and torchdiffeq's step-size
controller (:func:`adaptive`), forward and - on the augmented state of the
continuous adjoint - backward in time.  A state is a tuple of tensors; the right
hand side ``F(t, state) -> tuple`` is the caller's (it counts its evaluations).

The adaptive solver follows torchdiffeq's ``dopri5`` step for step: the initial
step of Hairer, Norsett and Wanner (II.4), the error ratio
``norm(err / (atol + rtol max(|y0|, |y1|)))`` with torchdiffeq's RMS norm over the
whole state (the maximum over its parts for a tuple), ``accept = ratio <= 1``, the
next step ``dt min(ifactor, max(safety / ratio^(1/order), dfactor))`` (``dfactor``
only when rejecting), first-same-as-last, steps past the end and Shampine's dense
output back to it, and the same failures: ``max_num_steps exceeded`` and
``underflow in dt`` (AssertionErrors, as torchdiffeq raises them).  Time and step
sizes are Python floats (float64), as torchdiffeq's time-like values are float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .solvers import Embedded, Tableau, combine, get_tableau

State = tuple  # of tensors
RHS = Callable[[float, State], State]
Combine = Callable  # (y, coeffs, ks, dt) -> y + dt * sum_j coeffs[j] ks[j], part by part
Step = Callable  # (t, y, k0 or None, dt) -> (y1, stage derivatives): one step of a tableau (rk_step)


def _axpy_part(yp: torch.Tensor, terms, dt: float) -> torch.Tensor:
    if len(terms) == 1:
        return torch.add(yp, terms[0][1], alpha=dt * terms[0][0])
    acc = terms[0][1] * terms[0][0]
    for a, k in terms[1:]:
        acc = acc + k * a
    return torch.add(yp, acc, alpha=dt)


class _Axpy(torch.autograd.Function):
    """One part's :func:`axpy` as one graph node.  Forward and backward are the arithmetic autograd would run
    through the separate products and sums (the same values, bit for bit); one node instead of ``2 j``
    saves most of the cost of differentiating through an adaptive step's stage combinations."""

    @staticmethod
    def forward(ctx, dt, coeffs, y, *ks):
        ctx.dt, ctx.coeffs = dt, coeffs
        return _axpy_part(y, list(zip(coeffs, ks)), dt)

    @staticmethod
    def backward(ctx, g):
        dt, coeffs = ctx.dt, ctx.coeffs
        if len(coeffs) == 1:
            return (None, None, g, g * (dt * coeffs[0]))
        gacc = g * dt
        return (None, None, g, *(gacc * a for a in coeffs))


def _sum_terms(terms) -> list[torch.Tensor]:
    """``sum_j a_j k_j`` part by part for ``terms = [(a_j, k_j)]`` (``a_j`` a number, or one tensor per part), one
    ``_foreach`` call per product and per sum, in the order autograd's separate ops would take (the same values)."""
    acc = torch._foreach_mul(list(terms[0][1]), terms[0][0])
    for a, k in terms[1:]:
        torch._foreach_add_(acc, torch._foreach_mul(list(k), a))
    return acc


def _foreach_axpy(y: State, terms, dt: float) -> State:
    """:func:`axpy` over every part at once (one dispatch per term, not per part and term; the same values)."""
    ys = list(y)
    if len(terms) == 1:
        return tuple(torch._foreach_add(ys, list(terms[0][1]), alpha=dt * terms[0][0]))
    return tuple(torch._foreach_add(ys, _sum_terms(terms), alpha=dt))


def axpy(y: State, coeffs: Sequence[float], ks: Sequence[State], dt: float) -> State:
    """``y + dt * sum_j coeffs[j] ks[j]`` for each part (zero coefficients skipped; increments summed first,
    then added to the state once, as :func:`study.engine.solvers.combine` does).  Differentiable; with a
    graph each part is one node (:class:`_Axpy`), without one every part goes in one ``_foreach`` call."""
    terms = [(a, k) for a, k in zip(coeffs, ks) if a != 0.0]
    if not terms:
        return y
    if torch.is_grad_enabled() and any(x.requires_grad for x in (*y, *(x for _, k in terms for x in k))):
        cs = tuple(a for a, _ in terms)
        return tuple(_Axpy.apply(dt, cs, yp, *(k[p] for _, k in terms)) for p, yp in enumerate(y))
    if len(y) > 1:
        return _foreach_axpy(y, terms, dt)
    return (_axpy_part(y[0], [(a, k[0]) for a, k in terms], dt),)


def combine_parts(y: State, coeffs: Sequence[float], ks: Sequence[State], dt) -> State:
    """:func:`axpy` with :func:`study.engine.solvers.combine`'s rounding (its increments accumulate in place,
    one rounding per term): the combination of the fused fixed-step engine and of :func:`odeint_fixed`, whose
    records were made with it."""
    return tuple(combine(yp, coeffs, [k[p] for k in ks], dt) for p, yp in enumerate(y))


def stages(F: RHS, tab: Tableau, t, y: State, dt, k0: State | None = None, into: Combine = axpy) -> list[State]:
    """The stage derivatives of one step from ``(t, y)``; ``k0 = F(t, y)`` may be given (first same as last).

    The engine's one stage loop: every solve - fixed, adaptive, per member, the fused engine's forward, the
    autograd reference - runs its steps through it.  ``into`` forms each stage's input (:func:`axpy` by
    default; :func:`axpy_m` for per-member steps, where ``t`` and ``dt`` are ``(S,)`` tensors)."""
    ks: list[State] = []
    for i, (ci, ai) in enumerate(zip(tab.c, tab.a)):
        if i == 0 and k0 is not None:
            ks.append(k0)
            continue
        ks.append(F(t + dt if ci == 1.0 else t + ci * dt, into(y, ai, ks, dt)))
    return ks


def rk_step(F: RHS, tab: Tableau, into: Combine = axpy) -> Step:
    """One step of ``tab`` on ``F`` through :func:`stages`: ``step(t, y, k0, dt) -> (y1, ks)``, the steppers'
    default (a solve may pass another step with the same contract, such as the hand engine's one-node step)."""

    def step(t, y: State, k0: State | None, dt):
        ks = stages(F, tab, t, y, dt, k0, into=into)
        return into(y, tab.b, ks, dt), ks

    return step


def fixed(F: RHS, tab: Tableau, y: State, t0: float, t1: float, steps: int, on_step=None,
          into: Combine = axpy, step: Step | None = None) -> State:
    """``steps`` equal steps from ``t0`` to ``t1`` (``t1 < t0`` integrates backward); ``on_step(n, t, y)``
    is told the state before each step.  ``into`` forms the stage inputs and the new states (:func:`stages`);
    ``step`` replaces :func:`rk_step` ``(F, tab, into)``."""
    dt = (t1 - t0) / steps
    step = rk_step(F, tab, into) if step is None else step
    for n in range(steps):
        t = t0 + n * dt
        if on_step is not None:
            on_step(n, t, y)
        y = step(t, y, None, dt)[0]  # the stage derivatives go now, not a step later
    return y


def odeint_fixed(f, y0: torch.Tensor, t0: float = 0.0, t1: float = 1.0, steps: int = 20, method="euler",
                 trajectory: bool = False) -> torch.Tensor:
    """Integrate ``dy/dt = f(t, y)`` (one tensor) from ``t0`` to ``t1`` in ``steps`` equal steps of ``method``
    (a name of :data:`study.engine.solvers.TABLEAUS` or a tableau), differentiable by autograd: the reference
    the hand engine is tested against, and the solve of trajectories and reconstructions.  The grid is
    ``t0 + i (t1 - t0) / steps``, as torchdiffeq builds it.  Returns ``y(t1)``, or with ``trajectory=True``
    the ``(steps + 1, *y0.shape)`` states at every grid point."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    states: list = []
    on_step = (lambda n, t, y: states.append(y[0])) if trajectory else None
    (y,) = fixed(lambda t, s: (f(t, s[0]),), get_tableau(method), (y0,), t0, t1, steps, on_step, combine_parts)
    return torch.stack(states + [y]) if trajectory else y


def rms(x: torch.Tensor) -> float:
    return float(x.detach().abs().pow(2).mean().sqrt())


@dataclass(frozen=True)
class Control:
    """torchdiffeq's step-size control settings (its defaults)."""

    rtol: float
    atol: float
    max_num_steps: int = 2**31 - 1
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2


@dataclass
class Trace:
    """What an adaptive solve did: accepted steps ``(t, dt, state before)``, rejected count, and the last
    step's dense-output point ``x`` in [0, 1] (the end time inside the last accepted step)."""

    steps: list = field(default_factory=list)
    rejected: int = 0
    x: float = 1.0


def _scaled_squares(err: State, y0: State, y1: State, ctl: Control, parts) -> list[torch.Tensor]:
    """``(err_p / (atol + rtol max(|y0_p|, |y1_p|)))^2`` for the parts the norm reads, each elementwise step in one
    ``_foreach`` call over the parts (no graph)."""
    idx = [p for p in range(len(err)) if p in parts]
    a = torch._foreach_abs([y0[p].detach() for p in idx])
    scale = torch._foreach_add(torch._foreach_mul(torch._foreach_maximum(a, torch._foreach_abs(
        [y1[p].detach() for p in idx])), ctl.rtol), ctl.atol)
    return torch._foreach_pow(torch._foreach_abs(torch._foreach_div([err[p] for p in idx], scale)), 2)


def _norm_ratio(err: State, y0: State, y1: State, ctl: Control, parts) -> float:
    """``max_p rms(err_p / (atol + rtol max(|y0_p|, |y1_p|)))`` over the parts the norm reads."""
    return float(torch.stack([x.mean() for x in _scaled_squares(err, y0, y1, ctl, parts)]).sqrt().max())


def _initial_step(F: RHS, t0: float, y0: State, f0: State, order: int, ctl: Control, parts, direction: float) -> float:
    """Hairer, Norsett and Wanner's initial step, as torchdiffeq's ``_select_initial_step``."""
    scale = [ctl.atol + y.abs() * ctl.rtol for y in y0]
    d0 = max(rms(y / s) for p, (y, s) in enumerate(zip(y0, scale)) if p in parts)
    d1 = max(rms(f / s) for p, (f, s) in enumerate(zip(f0, scale)) if p in parts)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    with torch.no_grad():
        f1 = F(t0 + direction * h0, axpy(tuple(y.detach() for y in y0), [1.0], [tuple(f.detach() for f in f0)], direction * h0))
    d2 = max(rms((a - b) / s) for p, (a, b, s) in enumerate(zip(f1, f0, scale)) if p in parts) / h0
    h1 = max(1e-6, h0 * 1e-3) if d1 <= 1e-15 and d2 <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


STEP_OVERFLOW = 1e12  # a step this many times the interval is a controller running away, not a step


def _next_step(dt: float, ratio: float, ctl: Control, order: int) -> float:
    if ratio != ratio:  # a non-finite estimate (the trial step overflowed): rejected, the step shrinks as after
        return dt * ctl.dfactor  # any large error (diffrax's rule; torchdiffeq's next step is NaN and it stops)
    if ratio == 0:
        return dt * ctl.ifactor
    dfactor = 1.0 if ratio < 1 else ctl.dfactor
    return dt * min(ctl.ifactor, max(ctl.safety / ratio ** (1.0 / order), dfactor))


def trial(step: Step, pair: Embedded, t: float, y: State, f0: State, dt: float):
    """One attempted step by ``step`` (:func:`rk_step` of the pair's tableau, or one with its contract):
    ``(y1, f1, error estimate, stage derivatives)``."""
    y1, ks = step(t, y, f0, dt)
    with torch.no_grad():  # the estimate only steers the step size: no graph
        err = _sum_terms([(dt * e, ks[j]) for j, e in enumerate(pair.b_err) if e != 0.0])
    return y1, ks[-1], tuple(err), ks


def _shampine(y0: State, y1: State, ks: list[State], ymid: State, step, point) -> State:
    """Shampine's quartic through the step ``y0 -> y1`` at ``point``; ``step(part)``, ``point(part)`` give the
    step size and output point as each part uses them (floats, or per-member columns)."""
    out = []
    for p in range(len(y0)):
        f0, f1, a0, a1, m = ks[0][p], ks[-1][p], y0[p], y1[p], ymid[p]
        h, x = step(a0), point(a0)
        coeffs = [a0, h * f0, h * (f1 - 4 * f0) - 11 * a0 - 5 * a1 + 16 * m,
                  h * (5 * f0 - 3 * f1) + 18 * a0 + 14 * a1 - 32 * m, 2 * h * (f1 - f0) - 8 * (a1 + a0) + 16 * m]
        total, power = coeffs[0] + x * coeffs[1], x
        for c in coeffs[2:]:
            power = power * x
            total = total + power * c
        out.append(total)
    return tuple(out)


def dense(pair: Embedded, y0: State, y1: State, ks: list[State], dt: float, x: float) -> State:
    """Shampine's fourth-order dense output at ``x`` in [0, 1] of the step ``y0 -> y1`` (torchdiffeq's fit)."""
    return _shampine(y0, y1, ks, axpy(y0, pair.mid, ks, dt), lambda _: dt, lambda _: x)


def adaptive(F: RHS, pair: Embedded, y0: State, t0: float, t1: float, ctl: Control,
             norm_parts: Sequence[int] | None = None, trace: Trace | None = None, on_accept=None,
             step: Step | None = None) -> State:
    """The state at ``t1`` by adaptive steps (``t1 < t0`` integrates backward).  ``norm_parts``: the parts of
    the state the error norm reads (all by default; the adjoint's seminorm leaves out the parameters').
    The graph, where there is one, runs through the accepted steps only.  ``step`` replaces :func:`rk_step`
    of the pair's tableau (``F`` still gives the first derivative and the initial step)."""
    step = rk_step(F, pair.tableau) if step is None else step
    parts = set(range(len(y0)) if norm_parts is None else norm_parts)
    direction = 1.0 if t1 >= t0 else -1.0
    trace = Trace() if trace is None else trace
    f0 = F(t0, y0)
    dt = direction * _initial_step(F, t0, y0, f0, pair.order - 1, ctl, parts, direction)
    t, y, n = t0, y0, 0
    while direction * (t1 - t) > 0:
        if n >= ctl.max_num_steps:
            raise AssertionError(f"max_num_steps exceeded ({n}>={ctl.max_num_steps})")
        if not direction * ((t + dt) - t) > 0:
            raise AssertionError(f"underflow in dt {dt}")
        if not abs(dt) <= STEP_OVERFLOW * max(1.0, abs(t1 - t0)):  # also NaN: a vanishing or non-finite estimate
            raise AssertionError(f"step size overflow: dt {dt}")
        y1, f1, err, ks = trial(step, pair, t, y, f0, dt)
        with torch.no_grad():
            ratio = _norm_ratio(err, y, y1, ctl, parts)
        if ratio <= 1:  # accept (a NaN ratio rejects, as in torchdiffeq, until the step underflows)
            trace.steps.append((t, dt, y))
            if on_accept is not None:
                on_accept()
            if direction * (t + dt - t1) >= 0:  # the step reaches past the end: dense output back to it
                trace.x = (t1 - t) / dt
                y = dense(pair, y, y1, ks, dt, trace.x)
                t = t1
                break
            t, y, f0 = t + dt, y1, f1
        else:
            trace.rejected += 1
        dt = _next_step(dt, ratio, ctl, pair.order)
        n += 1
    return y


from .stepper_members import MemberTrace, adaptive_members, axpy_m  # noqa: E402,F401 - per member, re-exported
