"""A trained trajectory model's evaluation: rollouts from ``y(0)`` by a tight reference solve and by any of the
study's solvers, the task's metrics, and solver transfer."""
from __future__ import annotations

import math

import numpy as np

from . import data
from ..ensemble import is_solver_failure
from ...config import ModelConfig, solver_label

ROLLOUT_TOL = (1e-9, 1e-10)  # the reference rollout of a learned field (float64)
ROLLOUT_MAX_STEPS = 200_000


def reference_rollout(flow, weights: list, t: np.ndarray):
    """A member's field (float64 weights ``(1, ...)``) rolled out from ``y(0)`` at times ``t`` by torchdiffeq's
    dopri5 at :data:`ROLLOUT_TOL`: ``(states (len(t), d), NFE, failure or None)``."""
    field, system = flow.plain, flow.task.system
    w = field.fold(weights)
    if system.stiff:  # Radau differentiates it
        return rollout(system, lambda y: field.differentiable(y, 0.0, w), t)
    return rollout(system, lambda y: field.forward(y, 0.0, w)[0], t)


def rollout(system, field, t: np.ndarray):
    """Any field ``field(y)`` (``(1, d, 1)`` float64 tensors) rolled out from ``y(0)`` at times ``t`` by the
    reference solve: ``(states (len(t), d), NFE, failure or None)``."""
    if system.stiff:
        return _radau_rollout(system, field, t)
    import torch
    import torchdiffeq

    nfe = [0]

    def f(_, y):
        nfe[0] += 1
        return field(y)

    d = len(system.y0)
    y0 = torch.tensor(system.y0, dtype=torch.float64).view(1, d, 1)
    tt = torch.as_tensor(t, dtype=torch.float64)
    try:
        with torch.no_grad():
            ys = torchdiffeq.odeint(f, y0, tt, method="dopri5", rtol=ROLLOUT_TOL[0], atol=ROLLOUT_TOL[1],
                                    options={"max_num_steps": ROLLOUT_MAX_STEPS})
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return np.full((len(t), d), np.nan), nfe[0], str(exc)
    return ys[:, 0, :, 0].numpy(), nfe[0], None


def _radau_rollout(system, field, t: np.ndarray):
    """:func:`rollout` of a stiff system's learned field by scipy's Radau (implicit, order 5, L-stable) at
    :data:`ROLLOUT_TOL`, with the field's Jacobian by autograd; NFE counts its evaluations and ``d`` per
    Jacobian."""
    import torch
    from scipy.integrate import solve_ivp

    d = len(system.y0)
    nfe = [0]

    def f(_, y):
        nfe[0] += 1
        with torch.no_grad():
            return field(torch.as_tensor(y, dtype=torch.float64).view(1, d, 1)).view(d).numpy()

    def jac(_, y):
        nfe[0] += d
        x = torch.as_tensor(y, dtype=torch.float64)
        return torch.autograd.functional.jacobian(lambda z: field(z.view(1, d, 1)).view(d), x).numpy()

    try:
        with np.errstate(all="ignore"):
            sol = solve_ivp(f, (0.0, float(t[-1])), np.asarray(system.y0, float), method="Radau",
                            t_eval=np.asarray(t), rtol=ROLLOUT_TOL[0], atol=ROLLOUT_TOL[1], jac=jac)
    except (ValueError, np.linalg.LinAlgError) as exc:  # a non-finite field or Jacobian: its solve fails
        return np.full((len(t), d), np.nan), nfe[0], f"Radau failed: {exc}"
    if not sol.success or sol.y.shape[1] != len(t) or not np.isfinite(sol.y).all():
        return np.full((len(t), d), np.nan), nfe[0], f"Radau failed: {sol.message}"
    return sol.y.T.copy(), nfe[0], None


def own_rollout(flow, t: np.ndarray, cfg: ModelConfig | None = None):
    """Every member rolled out from ``y(0)`` at times ``t`` by ``cfg``'s solver (default the training one), in the
    model's precision, no graph: ``(states (S, len(t), d), NFE per member)``.  A member whose solve fails is NaN."""
    import torch

    S, y0 = len(flow.seeds), flow.task.system.y0
    d = len(y0)
    y0 = torch.tensor(y0, dtype=flow.params[0].dtype, device=flow.params[0].device).view(1, d, 1).expand(S, d, 1)
    counter = flow.counter
    saved = dict(counter.counts), counter.accepted, counter.rejected, dict(counter.failures)
    counter.phase = "eval"
    before = counter.counts["eval"]
    try:
        with torch.no_grad():
            ys = flow.solve(y0.contiguous(), [float(x) for x in t], cfg)[:, :, :, 0].transpose(0, 1).cpu().double().numpy()
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        ys = np.full((S, len(t), d), np.nan)
    nfe = counter.counts["eval"] - before
    counter.counts.update(saved[0])
    counter.accepted, counter.rejected, counter.failures = saved[1], saved[2], saved[3]
    counter.phase = "forward"
    return ys, nfe


def transfer_rows(flow, P, solvers: list[dict]) -> list[list]:
    """Each member's trajectory error when its trained field is rolled out over ``[0, t_end]`` by each of
    ``solvers`` (the hand engine, as :func:`study.tasks.spiral.transfer_rows` takes them), and the evaluations
    that took: ``[[{solver, traj_err, nfe}, ...] per member]``."""
    import torch

    t_obs = data.times(P)[0]
    true = data.truth(flow.task.system, t_obs)
    rows: list[list] = [[] for _ in flow.seeds]
    for solver in solvers:
        over = {"backend": "hand", "method": solver["method"]}
        over.update({"steps": solver["steps"]} if "steps" in solver else {"rtol": solver["tol"], "atol": solver["tol"]})
        cfg = ModelConfig.from_dict({**flow.cfg.__dict__, **over})
        other = flow.as_dtype(torch.float64 if solver.get("dtype") == "float64" else torch.float32)
        ys, nfe = own_rollout(other, t_obs, cfg)
        for s in range(len(flow.seeds)):
            err = data.rms_distance(ys[s], true)
            rows[s].append({"solver": solver_label(solver), "traj_err": err if math.isfinite(err) else None,
                            "nfe": nfe})
    return rows


def member_metrics(flow, s: int, P, own: np.ndarray | None = None) -> dict:
    """The task's metrics of member ``s``: reference rollout errors, the field error, the own-solver error."""
    system = flow.task.system
    t_obs, t_ext = data.times(P)
    t_all = np.concatenate([t_obs, t_ext])
    ref, nfe, failure = reference_rollout(flow, flow.member_weights(s), t_all)
    points = data.field_grid(system, P)
    true = data.truth(system, t_all)
    n = len(t_obs)
    out = {"traj_err": data.rms_distance(ref[:n], true[:n]), "extrap_err": data.rms_distance(ref[n:], true[n:]),
           "field_err": data.field_error(system, flow.values(points)[s], points), "reference_nfe": nfe,
           "reference_failure": failure}
    if own is not None:
        out["traj_err_own"] = data.rms_distance(own[s], true[: own.shape[1]])
    return out, ref
