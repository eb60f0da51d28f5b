"""The stiffness indicator of a trained trajectory model: how stiff its field is where the data are, against the
step its training solver took and each explicit method's stability limit.

For a member's field ``f`` the indicator is ``rho = max_y rho(df/dy (y))``, the largest spectral radius of the
field's Jacobian over the true states at the observation times, at the start of training (the initial weights)
and at its end, and ``h rho`` with ``h`` the training solver's step: the observation interval over the steps of
a fixed-step method, the mean accepted step of an adaptive one (the windows' time over its accepted steps).  An
explicit method whose stability interval on the negative real axis (:attr:`study.config.Method.real_limit`: 2
for Euler, 2.785 for RK4, 3.307 for dopri5) is shorter than ``h rho`` amplifies the field's fastest mode there:
that is the sense of "stiff" the records measure (Hairer & Wanner IV.2); an implicit method's interval is
unbounded."""
from __future__ import annotations

import numpy as np

from . import data


def radius(field, weights, states: np.ndarray) -> float:
    """``max_y rho(df/dy (y))`` over ``states`` ``(N, d)`` of a field with weights ``(1, ...)`` (float64)."""
    import torch

    from ...engine.implicit import jacobian

    w = field.fold([x.detach().to(torch.float64) for x in weights])
    y = torch.as_tensor(states, dtype=torch.float64)

    def f(t, rows):
        return field.differentiable(rows.T.unsqueeze(0), t, w)[0].T

    J = jacobian(f, 0.0, y)
    if not torch.isfinite(J).all():
        return float("nan")
    return float(torch.linalg.eigvals(J).abs().max())


def training_step(cfg, P, accepted: int, iterations: int) -> float | None:
    """The training solver's step: fixed, the observation interval over ``steps``; adaptive, the mean accepted
    step over the ``iterations`` done (None when it took none)."""
    interval = P.t_end / (P.n_points - 1)
    if not cfg.adaptive:
        return interval / cfg.steps
    solved = iterations * (P.batch_time - 1) * interval  # every iteration solves each window's intervals, batched
    return solved / accepted if accepted > 0 else None


def indicator(task, flow, s: int, P, accepted: int, iterations: int) -> dict:
    """Member ``s``'s indicator: ``rho_start``, ``rho_end``, the step ``h`` and ``h_rho_end`` (None where not
    finite)."""
    from .model import Flow

    states = data.truth(task.system, data.times(P)[0])
    first = Flow(task, flow.cfg, [flow.seeds[s]], flow.hidden)  # the member's initial weights, drawn again
    start = radius(first.plain, first.params, states)
    end = radius(flow.plain, flow.member_weights(s), states)
    h = training_step(flow.cfg, P, accepted, iterations)
    finite = lambda x: float(f"{x:.6g}") if x is not None and np.isfinite(x) else None  # noqa: E731
    return {"rho_start": finite(start), "rho_end": finite(end), "h": finite(h),
            "h_rho_end": finite(None if h is None else h * end)}
