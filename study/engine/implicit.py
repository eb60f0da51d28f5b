"""Implicit Runge-Kutta methods for stiff problems: diagonally implicit tableaus, Newton's method on each stage, and
exact gradients by the implicit function theorem.

A diagonally implicit (DIRK) tableau has ``a[i][j] = 0`` for ``j > i``: stage ``i`` solves
``Y_i = y + h sum_{j<i} a_ij k_j + h a_ii f(t + c_i h, Y_i)`` for ``Y_i`` alone (``k_i = f(t + c_i h, Y_i)``), by
Newton's method with the field's Jacobian ``df/dy`` (per sample, by ``torch.func``: samples are independent rows of
a batch-major state ``(B, d)``), to :attr:`Newton.tol` relative to the state (never below 64 ulps of its precision) within
:attr:`Newton.max_iter` iterations.  A stage that does not converge fails the step: an adaptive solve rejects it and retries a quarter as
long, a fixed-step solve raises :class:`NewtonFailure` (an ``AssertionError`` whose message reads as the other
solvers' give-ups, so a training loop records it as a solver failure).  Nothing loops without bound.

The gradient of a step is the exact gradient of the discretisation, with no backpropagation through Newton's
iterations.  With ``w_i = dL/dk_i`` and ``u_i = dL/dY_i``, the stage equations give, from the last stage back,
``(I - h a_ii J_i^T) w_i = h b_i g + h sum_{l>i} a_li u_l`` (one transposed linear solve per stage) and then one
vector-Jacobian product of the field at ``Y_i`` with cotangent ``w_i``: ``u_i = J_i^T w_i`` and the parameters'
share ``(df/dtheta)^T w_i``; ``dL/dy = g + sum_i u_i``.

Tableaus: backward Euler (order 1, L-stable), the trapezoidal rule as a two-stage ESDIRK (order 2, A-stable) and
Kvaerno's ESDIRK 3(2) (A. Kvaerno, BIT 44 (2004) 489-502; order 3, L-stable, stiffly accurate, with an embedded
order-2 solution for the error estimate; the coefficients as in diffrax's ``Kvaerno3``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Dirk:
    """A diagonally implicit tableau; ``b_err``: the weights of ``y1 - y1_embedded`` (adaptive pairs)."""

    name: str
    c: tuple
    a: tuple  # a[i] has i + 1 entries: the stage's coefficients on stages 0..i
    b: tuple
    order: int
    b_err: tuple | None = None
    stiffly_accurate: bool = False

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s or any(len(row) != i + 1 for i, row in enumerate(self.a)):
            raise ValueError(f"tableau {self.name}: a must be lower triangular with its diagonal, {s} stages")
        if any(abs(sum(row) - ci) > 1e-10 for row, ci in zip(self.a, self.c)):
            raise ValueError(f"tableau {self.name}: row sums of a must equal c")
        if abs(sum(self.b) - 1.0) > 1e-10:
            raise ValueError(f"tableau {self.name}: weights b must sum to 1")

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


def _kvaerno3() -> Dirk:
    g = 0.43586652150
    a31, a32 = (-4 * g ** 2 + 6 * g - 1) / (4 * g), (-2 * g + 1) / (4 * g)
    a41, a42, a43 = (6 * g - 1) / (12 * g), -1 / ((24 * g - 12) * g), (-6 * g ** 2 + 6 * g - 1) / (6 * g - 3)
    return Dirk("kvaerno3", (0.0, 2 * g, 1.0, 1.0), ((0.0,), (g, g), (a31, a32, g), (a41, a42, a43, g)),
                (a41, a42, a43, g), 3, (a41 - a31, a42 - a32, a43 - g, g), stiffly_accurate=True)


DIRKS = {
    "backward-euler": Dirk("backward-euler", (1.0,), ((1.0,),), (1.0,), 1, stiffly_accurate=True),
    "trapezoid": Dirk("trapezoid", (0.0, 1.0), ((0.0,), (0.5, 0.5)), (0.5, 0.5), 2, stiffly_accurate=True),
    "kvaerno3": _kvaerno3(),
}


class NewtonFailure(AssertionError):
    """Newton's method did not converge on a stage (a solver failure, as torchdiffeq's give-ups are)."""


@dataclass(frozen=True)
class Newton:
    """Newton's method on a stage: converged when the update's norm relative to ``floor + |Y|`` is at most ``tol``;
    at most ``max_iter`` iterations (each a Jacobian and one batched linear solve)."""

    tol: float = 1e-10
    floor: float = 1e-12
    max_iter: int = 12
    eps_factor: float = 64.0  # the tolerance is never below this many units of the state's precision
    first: float = 1e-3  # after the first iteration: an update larger than this (relative) evaluates it anew
    contraction: float = 0.25  # an update larger than this fraction of the last: the Jacobian is evaluated anew

    def tolerance(self, dtype) -> float:
        """``tol``, or ``eps_factor`` ulps of ``dtype`` where that is larger (float32: 7.6e-6): a tolerance below
        the arithmetic's resolution is never met."""
        return max(self.tol, self.eps_factor * torch.finfo(dtype).eps)


@dataclass
class Stats:
    """What the implicit solves did: field evaluations, Jacobians, Newton iterations, linear solves, accepted and
    rejected steps, Newton failures."""

    evaluations: int = 0
    jacobians: int = 0
    newton_iterations: int = 0
    linear_solves: int = 0
    accepted: int = 0
    rejected: int = 0
    newton_failures: int = 0
    steps: list = field(default_factory=list)
    backward_evaluations: int = 0  # the backward pass's vector-Jacobian products of the field
    counter: object = None  # a study counter whose "backward" count the backward pass's products add to

    def newton_step(self) -> None:
        """One Newton iteration and its linear solve (counted on the counter too, by phase)."""
        self.newton_iterations += 1
        self.linear_solves += 1
        self._tell("newton", "linear_solves")

    def backward_solve(self) -> None:
        """One transposed linear solve of the backward pass (counted on the counter too)."""
        self.linear_solves += 1
        self._tell("linear_solves")

    def _tell(self, *keys) -> None:
        """Add one to each of the counter's ``keys`` (dicts by phase: ``counter.newton["forward"]``)."""
        if self.counter is None:
            return
        for key in keys:
            by_phase = self.counter.__dict__.setdefault(key, {})
            by_phase[self.counter.phase] = by_phase.get(self.counter.phase, 0) + 1

    def backward_products(self, n: int = 1) -> None:
        self.backward_evaluations += n
        if self.counter is not None:
            self.counter.counts["backward"] += n


def jacobian(f, t, y: torch.Tensor) -> torch.Tensor:
    """``df/dy`` per row, ``(B, d, d)``, of a row-wise field ``f(t, y)`` on ``y`` ``(B, d)``: for a small state
    (``d <= 16``) row ``k`` of every sample's Jacobian at once by one reverse-mode product (the samples are
    independent rows, so the gradient of ``sum_b f_k(y_b)`` is each sample's row ``k``; 4x faster than
    vectorised forward mode at ``d = 2``), else ``d`` forward-mode products vectorised over the basis."""
    d = y.shape[1]
    if d <= 16:
        with torch.enable_grad():
            z = y.detach().requires_grad_()
            out = f(t, z)
            rows = [torch.autograd.grad(out[:, k].sum(), z, retain_graph=k < d - 1)[0] for k in range(d)]
        return torch.stack(rows, 1)
    basis = torch.eye(d, dtype=y.dtype, device=y.device).unsqueeze(1).expand(d, *y.shape)
    cols = torch.func.vmap(lambda v: torch.func.jvp(lambda z: f(t, z), (y,), (v,))[1])(basis)  # (d, B, d_out)
    return cols.permute(1, 2, 0)


def _stage(f, t, base: torch.Tensor, ha: float, guess: torch.Tensor, lu, newton: Newton, stats: Stats):
    """``Y = base + ha f(t, Y)`` by Newton's method from ``guess`` with the step's factorised iteration matrix
    ``lu`` (of ``I - ha J``, ``J`` the Jacobian at the step's start: the simplified Newton iteration of
    Hairer & Wanner, IV.8), the Jacobian evaluated again at the iterate whenever an update is more than
    :attr:`Newton.contraction` of the last: ``(Y, f(t, Y))``."""
    Y = guess
    eye = torch.eye(base.shape[1], dtype=base.dtype, device=base.device)
    previous, slow = None, False
    for it in range(newton.max_iter):
        if slow:  # contracting slowly: the Jacobian at the current iterate (a full Newton step)
            lu = torch.linalg.lu_factor(eye - ha * jacobian(f, t, Y))
            stats.jacobians += 1
        fy = f(t, Y)
        stats.evaluations += 1
        stats.newton_step()
        r = Y - base - ha * fy
        delta = torch.linalg.lu_solve(*lu, r.unsqueeze(-1)).squeeze(-1)
        Y = Y - delta
        size = float(delta.norm() / (newton.floor + Y.norm()))
        if not torch.isfinite(Y).all():
            break
        slow = size > newton.contraction * (previous if previous is not None else newton.first)
        previous = size
        if size <= newton.tolerance(Y.dtype):
            fy = f(t, Y)
            stats.evaluations += 1
            return Y, fy
    stats.newton_failures += 1
    raise NewtonFailure(f"Newton's method did not converge in {newton.max_iter} iterations on a stage at t={float(t):.6g} "
                        "(underflow in dt: the implicit solver gave up)")


def step_values(f, tab: Dirk, t: float, y: torch.Tensor, h: float, newton: Newton, stats: Stats):
    """The stage values and derivatives of one step, no graph: ``(Ys, ks)``.  One Jacobian per step, at its start,
    and one factorisation per distinct diagonal coefficient (an ESDIRK's are all equal)."""
    Ys, ks, lus = [], [], {}
    eye = torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
    with torch.no_grad():
        J = None
        for i, (ci, row) in enumerate(zip(tab.c, tab.a)):
            base = y + h * sum((aij * k for aij, k in zip(row[:i], ks)), torch.zeros_like(y))
            ti = torch.tensor(t + ci * h, dtype=y.dtype, device=y.device)
            if row[i] == 0.0:  # an explicit first stage (ESDIRK)
                Ys.append(base)
                ks.append(f(ti, base))
                stats.evaluations += 1
                continue
            if J is None:
                J = jacobian(f, torch.tensor(t, dtype=y.dtype, device=y.device), y)
                stats.jacobians += 1
            if row[i] not in lus:
                lus[row[i]] = torch.linalg.lu_factor(eye - h * row[i] * J)
            guess = Ys[-1] if Ys else y  # the last stage's value: an explicit predictor overshoots on a stiff field
            Y, k = _stage(f, ti, base, h * row[i], guess, lus[row[i]], newton, stats)
            Ys.append(Y)
            ks.append(k)
    return Ys, ks


class _Step(torch.autograd.Function):
    """One DIRK step ``y -> y + h sum_i b_i k_i``, its backward by the implicit function theorem."""

    @staticmethod
    def forward(ctx, spec, y, *params):
        f, tab, t, h, newton, stats, pre = spec
        Ys, ks = step_values(f, tab, t, y, h, newton, stats) if pre is None else pre
        ctx.spec = spec[:6]
        ctx.save_for_backward(*Ys, *params)
        ctx.stages = len(Ys)
        return y + h * sum((bi * k for bi, k in zip(tab.b, ks)), torch.zeros_like(y))

    @staticmethod
    def backward(ctx, g):
        f, tab, t, h, newton, stats = ctx.spec
        saved = ctx.saved_tensors
        Ys, params = saved[: ctx.stages], saved[ctx.stages:]
        eye = torch.eye(g.shape[1], dtype=g.dtype, device=g.device)
        s = len(tab.b)
        u = [None] * s
        gy = g.clone()
        gp = [torch.zeros_like(p) for p in params]
        for i in reversed(range(s)):
            ti = torch.tensor(t + tab.c[i] * h, dtype=g.dtype, device=g.device)
            rhs = h * tab.b[i] * g
            for l in range(i + 1, s):
                if tab.a[l][i] != 0.0:
                    rhs = rhs + h * tab.a[l][i] * u[l]
            aii = tab.a[i][i]
            if aii != 0.0:
                J = jacobian(f, ti, Ys[i])
                stats.jacobians += 1
                rhs = torch.linalg.solve((eye - h * aii * J).transpose(1, 2), rhs.unsqueeze(-1)).squeeze(-1)
                stats.backward_solve()
            with torch.enable_grad():
                Yi = Ys[i].detach().requires_grad_()
                out = f(ti, Yi)
                grads = torch.autograd.grad(out, (Yi, *params), rhs, allow_unused=True)
            stats.backward_products()
            u[i] = grads[0]
            gy = gy + u[i]
            for j, x in enumerate(grads[1:]):
                if x is not None:
                    gp[j] = gp[j] + x
        return (None, gy, *gp)


class _Checkpointed(torch.autograd.Function):
    """A whole solve as one node that keeps only the state before each accepted step: its backward recomputes each
    step's stages (Newton again) and applies that step's exact VJP, last step first."""

    @staticmethod
    def forward(ctx, spec, y0, *params):
        f, tab, plan, newton, stats = spec
        states, y = [], y0.detach()
        for t, h in plan:
            states.append(y)
            Ys, ks = step_values(f, tab, t, y, h, newton, stats)
            y = y + h * sum((bi * k for bi, k in zip(tab.b, ks)), torch.zeros_like(y))
        ctx.spec, ctx.states = spec, states
        ctx.save_for_backward(*params)
        return y

    @staticmethod
    def backward(ctx, g):
        f, tab, plan, newton, stats = ctx.spec
        params = ctx.saved_tensors
        gp = [torch.zeros_like(p) for p in params]
        for (t, h), y in zip(reversed(plan), reversed(ctx.states)):
            with torch.enable_grad():
                leaf = y.detach().requires_grad_()
                out = _Step.apply((f, tab, t, h, newton, stats, None), leaf, *params)
                grads = torch.autograd.grad(out, (leaf, *params), g, allow_unused=True)
            g = grads[0]
            gp = [a if x is None else a + x for a, x in zip(gp, grads[1:])]
        return (None, g, *gp)


def solve(f, params, y0: torch.Tensor, t0: float, t1: float, method: str = "kvaerno3", steps: int | None = None,
          rtol: float = 1e-6, atol: float = 1e-8, newton: Newton | None = None, stats: Stats | None = None,
          max_steps: int = 100_000, first_step: float | None = None, checkpoint: bool = False) -> torch.Tensor:
    """``y(t1)`` of ``y' = f(t, y)`` (row-wise, ``y0`` ``(B, d)``) by ``method`` (:data:`DIRKS`): ``steps`` equal
    steps, or with ``steps=None`` an adaptive solve (an embedded pair only) at ``rtol``/``atol``.  Differentiable in
    ``y0`` and ``params`` (the tensors ``f`` reads, e.g. a module's parameters) by the implicit function theorem:
    through every step's node (direct), or with ``checkpoint`` through one node that keeps one state per step and
    recomputes each step's stages in the backward pass (the same gradient)."""
    tab = DIRKS[method]
    newton = Newton() if newton is None else newton
    stats = Stats() if stats is None else stats
    params = tuple(params)
    if checkpoint:
        plan = _plan(f, tab, y0, t0, t1, steps, rtol, atol, newton, stats, max_steps, first_step)
        return _Checkpointed.apply((f, tab, plan, newton, stats), y0, *params)
    if steps is not None:
        h = (t1 - t0) / steps
        y = y0
        for n in range(steps):
            y = _Step.apply((f, tab, t0 + n * h, h, newton, stats, None), y, *params)
            stats.accepted += 1
        return y
    if not tab.adaptive:
        raise ValueError(f"{method} has no error estimate: give it a number of steps")
    return _adaptive(f, tab, params, y0, t0, t1, rtol, atol, newton, stats, max_steps, first_step)


def _plan(f, tab, y0, t0, t1, steps, rtol, atol, newton, stats, max_steps, first_step) -> list:
    """The steps ``[(t, h), ...]`` a solve takes: equal ones, or those the adaptive controller accepts (found by a
    solve without a graph)."""
    if steps is not None:
        h = (t1 - t0) / steps
        stats.accepted += steps
        return [(t0 + n * h, h) for n in range(steps)]
    if not tab.adaptive:
        raise ValueError(f"{tab.name} has no error estimate: give it a number of steps")
    local = Stats()
    with torch.no_grad():
        _adaptive(f, tab, (), y0.detach(), t0, t1, rtol, atol, newton, local, max_steps, first_step)
    for name in ("evaluations", "jacobians", "newton_iterations", "linear_solves", "accepted", "rejected",
                 "newton_failures"):
        setattr(stats, name, getattr(stats, name) + getattr(local, name))
    stats.steps += local.steps
    times = [t0]
    for h in local.steps[:-1]:
        times.append(times[-1] + h)
    return list(zip(times, local.steps))


def _adaptive(f, tab: Dirk, params, y0, t0, t1, rtol, atol, newton, stats, max_steps, first_step):
    """Steps chosen by the embedded error estimate (an elementary controller: ``h 0.9 ratio^(-1/(q+1))`` within
    ``[0.2, 5] h``); the step sequence is a constant of the gradient, as in backpropagation through torchdiffeq's
    solves."""
    direction = 1.0 if t1 >= t0 else -1.0
    h = direction * (first_step or 0.01 * abs(t1 - t0))
    t, y = t0, y0
    for _ in range(max_steps):
        if (t1 - t) * direction <= 1e-14 * max(1.0, abs(t1)):
            return y
        h = direction * min(abs(h), abs(t1 - t))
        try:
            Ys, ks = step_values(f, tab, t, y.detach(), h, newton, stats)
        except NewtonFailure:
            stats.rejected += 1
            h /= 4
            if abs(h) < 1e-14 * max(1.0, abs(t)):
                raise NewtonFailure(f"underflow in dt at t={t:.6g}: Newton's method fails at every step size") from None
            continue
        err = h * sum((e * k for e, k in zip(tab.b_err, ks)), torch.zeros_like(y))
        y1 = y.detach() + h * sum((bi * k for bi, k in zip(tab.b, ks)), torch.zeros_like(y))
        scale = atol + rtol * torch.maximum(y.detach().abs(), y1.abs())
        ratio = float(((err / scale) ** 2).mean().sqrt())
        if ratio <= 1.0:
            y = _Step.apply((f, tab, t, h, newton, stats, (Ys, ks)), y, *params)  # accepted: its stages kept
            t += h
            stats.accepted += 1
            stats.steps.append(h)
        else:
            stats.rejected += 1
        h *= min(5.0, max(0.2, 0.9 * (ratio if ratio > 0 else 1e-10) ** (-1.0 / tab.order)))
        if abs(h) < 1e-14 * max(1.0, abs(t)):
            raise NewtonFailure(f"underflow in dt at t={t:.6g}")
    raise NewtonFailure(f"max_num_steps exceeded ({max_steps})")
