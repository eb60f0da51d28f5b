"""Per-member adaptive step control: ``S`` independent solves (the members of a batched model) at once, each with
its own step size, error ratio and acceptance, on the stage loop of :mod:`study.engine.stepper` (the same
controller as :func:`study.engine.stepper.adaptive`, member by member; times and steps are ``(S,)`` float64
tensors)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .solvers import Embedded
from .stepper import RHS, Control, State, Step, _scaled_squares, _shampine, _sum_terms, rk_step


# -- per-member step control: several independent solves (the members of a batched model) at once ------------

@dataclass
class MemberTrace:
    """What a per-member adaptive solve did, per member (``S``, counts on the CPU): accepted and rejected steps,
    evaluations of the right-hand side while the member was being solved, and the failure (if any) that
    stopped it."""

    members: int
    accepted: torch.Tensor = None
    rejected: torch.Tensor = None
    evaluations: torch.Tensor = None
    failures: dict = field(default_factory=dict)

    def __post_init__(self):
        zero = lambda: torch.zeros(self.members, dtype=torch.long)  # noqa: E731
        self.accepted = zero() if self.accepted is None else self.accepted
        self.rejected = zero() if self.rejected is None else self.rejected
        self.evaluations = zero() if self.evaluations is None else self.evaluations


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member vector ``(S,)`` shaped to broadcast against ``like`` ``(S, ...)``, in its dtype."""
    return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class _AxpyM(torch.autograd.Function):
    """One part's :func:`axpy_m` as one graph node, with autograd's arithmetic (see :class:`_Axpy`)."""

    @staticmethod
    def forward(ctx, col, coeffs, y, *ks):
        ctx.col, ctx.coeffs = col, coeffs
        acc = ks[0] * coeffs[0]
        for a, k in zip(coeffs[1:], ks[1:]):
            acc = acc + k * a
        return y + acc * col

    @staticmethod
    def backward(ctx, g):
        gacc = g * ctx.col
        return (None, None, g, *(gacc * a for a in ctx.coeffs))


def _cols(dt: torch.Tensor, y: State) -> list[torch.Tensor]:
    """``dt`` ``(S,)`` in the state's dtype, shaped to broadcast against each part (one conversion)."""
    d = dt.to(y[0].dtype)
    return [d.view(-1, *([1] * (yp.dim() - 1))) for yp in y]


def axpy_m(y: State, coeffs: Sequence[float], ks: Sequence[State], dt: torch.Tensor) -> State:
    """:func:`axpy` with a step per member (``dt``: ``(S,)``); with a graph, one node per part, without one,
    every part in one ``_foreach`` call per term (the same values either way)."""
    terms = [(a, k) for a, k in zip(coeffs, ks) if a != 0.0]
    if not terms:
        return y
    cols = _cols(dt, y)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (*y, *(x for _, k in terms for x in k))):
        cs = tuple(a for a, _ in terms)
        return tuple(_AxpyM.apply(cols[p], cs, yp, *(k[p] for _, k in terms)) for p, yp in enumerate(y))
    return tuple(torch._foreach_add(list(y), torch._foreach_mul(_sum_terms(terms), cols)))


def _rms_m(x: torch.Tensor) -> torch.Tensor:
    """Per-member RMS ``(S,)`` in float64."""
    return x.detach().abs().pow(2).flatten(1).mean(1).sqrt().double()


def _norm_ratio_m(err: State, y0: State, y1: State, ctl: Control, parts) -> torch.Tensor:
    """:func:`_norm_ratio` per member, ``(S,)`` float64."""
    q = _scaled_squares(err, y0, y1, ctl, parts)
    return torch.stack([x.flatten(1).mean(1).sqrt().double() for x in q]).amax(0)


def _initial_step_m(F: RHS, t0: torch.Tensor, y0: State, f0: State, order: int, ctl: Control, parts,
                    direction: float) -> torch.Tensor:
    """:func:`_initial_step` for each member."""
    scale = [ctl.atol + y.abs() * ctl.rtol for y in y0]
    d0 = torch.stack([_rms_m(y / s) for p, (y, s) in enumerate(zip(y0, scale)) if p in parts]).amax(0)
    d1 = torch.stack([_rms_m(f / s) for p, (f, s) in enumerate(zip(f0, scale)) if p in parts]).amax(0)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    with torch.no_grad():
        f1 = F(t0 + direction * h0, axpy_m(tuple(y.detach() for y in y0), [1.0], [tuple(f.detach() for f in f0)],
                                           direction * h0))
    d2 = torch.stack([_rms_m((a - b) / s) for p, (a, b, s) in enumerate(zip(f1, f0, scale)) if p in parts]).amax(0) / h0
    small = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = torch.where(small, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / torch.maximum(d1, d2)) ** (1.0 / (order + 1)))
    return torch.minimum(100 * h0, h1)


def _next_step_m(dt: torch.Tensor, ratio: torch.Tensor, ctl: Control, order: int) -> torch.Tensor:
    dfactor = torch.where(ratio < 1, torch.ones_like(ratio), torch.full_like(ratio, ctl.dfactor))
    factor = torch.clamp(torch.maximum(ctl.safety / ratio ** (1.0 / order), dfactor), max=ctl.ifactor)
    factor = torch.where(torch.isnan(ratio), torch.full_like(ratio, ctl.dfactor), factor)  # as _next_step
    return torch.where(ratio == 0, dt * ctl.ifactor, dt * factor)


def _dense_m(pair: Embedded, y0: State, y1: State, ks: list[State], dt: torch.Tensor, x: torch.Tensor) -> State:
    """:func:`dense` with a step and an output point per member."""
    return _shampine(y0, y1, ks, axpy_m(y0, pair.mid, ks, dt), lambda a: _col(dt, a), lambda a: _col(x, a))


def _where(mask: torch.Tensor, a: State, b: State) -> State:
    return tuple(torch.where(mask.view(-1, *([1] * (x.dim() - 1))), x, y) for x, y in zip(a, b))


def adaptive_members(F: RHS, pair: Embedded, y0: State, t0: float, t1: float, ctl: Control,
                     norm_parts: Sequence[int] | None = None, trace: MemberTrace | None = None,
                     step: Step | None = None) -> State:
    """:func:`adaptive` for ``S`` independent members at once (every part of the state is ``(S, ...)``): each
    member has its own time, step size, error norm, accept/reject decisions, step count and failure, as if it
    were solved alone (torchode's per-instance control).  ``F(t, state)`` gets ``t`` as a float64 ``(S,)``
    tensor.  A member that has reached ``t1`` (or failed) is frozen: it takes zero-length steps and its
    evaluations are not counted.  A member that fails (``max_num_steps``, underflow) ends as NaN and its reason
    is in ``trace.failures``; the others go on.  ``step`` replaces :func:`rk_step` ``(F, tableau, axpy_m)``
    (its ``t`` and ``dt`` are ``(S,)`` tensors)."""
    step = rk_step(F, pair.tableau, axpy_m) if step is None else step
    S = y0[0].shape[0]
    parts = set(range(len(y0)) if norm_parts is None else norm_parts)
    direction = 1.0 if t1 >= t0 else -1.0
    trace = MemberTrace(S) if trace is None else trace  # its counts stay on the CPU
    dev = y0[0].device  # the per-member times, steps and flags live with the state
    t = torch.full((S,), float(t0), dtype=torch.float64, device=dev)
    f = F(t, y0)
    dt = direction * _initial_step_m(F, t, y0, f, pair.order - 1, ctl, parts, direction)
    trace.evaluations += 2
    y, done, n = y0, torch.zeros(S, dtype=torch.bool, device=dev), torch.zeros(S, dtype=torch.long, device=dev)
    while not bool(done.all()):
        active = ~done
        for m in torch.nonzero(active & (n >= ctl.max_num_steps)).flatten().tolist():
            trace.failures[m] = f"max_num_steps exceeded ({int(n[m])}>={ctl.max_num_steps})"
        for m in torch.nonzero(active & ~(direction * ((t + dt) - t) > 0)).flatten().tolist():
            trace.failures.setdefault(m, f"underflow in dt {float(dt[m])}")
        if trace.failures:
            failed = torch.zeros(S, dtype=torch.bool, device=dev)
            failed[list(trace.failures)] = True
            y = tuple(torch.where(_col(failed & active, x).bool(), torch.full_like(x, float("nan")), x) for x in y)
            done = done | failed
            active = ~done
            if bool(done.all()):
                break
        h = torch.where(active, dt, torch.zeros_like(dt))  # a frozen member steps by zero
        y1, ks = step(t, y, f, h)
        trace.evaluations += active.long().cpu() * (len(pair.tableau.c) - 1)
        with torch.no_grad():  # the estimate only steers the step sizes: no graph
            cols = _cols(h, y)
            err = _sum_terms([([c * e for c in cols], ks[j]) for j, e in enumerate(pair.b_err) if e != 0.0])
            ratio = _norm_ratio_m(err, y, y1, ctl, parts)
        accept = active & (ratio <= 1)  # NaN rejects
        trace.accepted += accept.long().cpu()
        trace.rejected += (active & ~accept).long().cpu()
        last = accept & (direction * (t + dt - t1) >= 0)
        x = torch.where(last, (t1 - t) / dt, torch.ones_like(t))
        moved = accept & ~last
        y_new = _where(moved, y1, y)
        if bool(last.any()):
            y_new = _where(last, _dense_m(pair, y, y1, ks, h, x), y_new)
        f = _where(moved, ks[-1], f)
        t = torch.where(moved, t + dt, torch.where(last, torch.full_like(t, float(t1)), t))
        y, done = y_new, done | last
        dt = torch.where(active, _next_step_m(dt, ratio, ctl, pair.order), dt)
        n = n + active.long()
    return y

