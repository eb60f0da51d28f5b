"""A trained flow's evaluation: the reference solve's held-out NLL, the mass on the lattice, samples, transfer."""
from __future__ import annotations

import math

import numpy as np

from ..ensemble import is_solver_failure
from ...config import ModelConfig, solver_label
from .data import STREAM_PROBLEM, data, entropy
from .field import Flow, member
from .fit import _finite, _points, log_likelihoods
from .protocol import BOX, Protocol, REFERENCE_MAX_STEPS, REFERENCE_TOL


def _short(x) -> float | None:
    x = float(x)
    return float(f"{x:.5g}") if math.isfinite(x) else None


# -- evaluation ------------------------------------------------------------------------------------------------

def reference_config(cfg: ModelConfig) -> ModelConfig:
    """The reference solve: torchdiffeq's dopri5 at :data:`REFERENCE_TOL` (run in float64)."""
    return ModelConfig.from_dict({**cfg.__dict__, "backend": "torchdiffeq", "method": "dopri5", "rtol": REFERENCE_TOL,
                                  "atol": REFERENCE_TOL, "max_num_steps": REFERENCE_MAX_STEPS})


def lattice(P: Protocol, resolution: int | None = None) -> tuple[np.ndarray, float]:
    """The mass lattice's points ``(n*n, 2)`` (cell centres over ``[-BOX, BOX]^2``, x fastest) and a cell's area."""
    n = P.grid if resolution is None else resolution
    h = 2 * BOX / n
    c = -BOX + h * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(c, c)
    return np.stack([gx.ravel(), gy.ravel()], 1), h * h


def samples(flow64: Flow, P: Protocol) -> np.ndarray:
    """``n_samples`` points of every member's flow ``(S, n, 2)``: ``N(0, I)`` draws carried from ``t_end`` back to 0
    by the reference solve (the same draws for every member)."""
    import torch

    # (this stream is STREAM_STEER's too; they never meet in one computation: to be separated at the next VERSION)
    z = np.random.default_rng(np.random.SeedSequence([P.data_seed, STREAM_PROBLEM + 1, 22])).standard_normal(
        (P.n_samples, 2))
    S = len(flow64.seeds)
    y = _points(z, S, flow64.params[0])
    y = torch.cat([y, torch.zeros_like(y[:, :1])], 1)
    flow64.counter.phase = "eval"
    try:
        with torch.no_grad():
            x = flow64.interval(y, P.t_end, 0.0, reference_config(flow64.cfg))[:, :2]
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return np.full((S, P.n_samples, 2), np.nan)
    return x.transpose(1, 2).numpy()


def member_metrics(flow: Flow, P: Protocol) -> dict:
    """A one-member flow's metrics, the evaluations of its solves and what the figures draw."""
    import torch

    test = data(P, "test")
    points, area = lattice(P)
    ref = member(flow, 0, torch.float64)
    rcfg = reference_config(flow.cfg)
    lp_ref, nfe_ref = log_likelihoods(ref, test, rcfg, P.t_end)
    lp_own, nfe_own = log_likelihoods(flow, test, t_end=P.t_end)
    grid_ref, _ = log_likelihoods(ref, points, rcfg, P.t_end)
    grid_own, _ = log_likelihoods(flow, points, t_end=P.t_end)
    nll, own = _finite(-lp_ref[0].mean()), _finite(-lp_own[0].mean())
    floor = entropy(P.density)
    metrics = {"nll": nll, "nll_own": own, "nll_bias": None if nll is None or own is None else own - nll,
               "gap": None if nll is None else nll - floor[0], "entropy": floor[0], "entropy_se": floor[1],
               "mass": _finite(np.exp(grid_ref[0]).sum() * area), "mass_own": _finite(np.exp(grid_own[0]).sum() * area),
               "nfe_eval": float(nfe_own[0]), "reference_nfe": float(nfe_ref[0])}
    data_ = {"box": BOX, "grid_log_density": [_short(v) for v in grid_own[0]],
             "samples": [[_short(v) for v in row] for row in samples(ref, P)[0]]}
    return metrics, data_


def transfer_rows(flow: Flow, P: Protocol, solvers: list[dict]) -> list[dict]:
    """A one-member flow's held-out NLL when its trained field is solved by each of ``solvers`` (the hand engine,
    as :func:`study.tasks.spiral.transfer_rows` takes them), and the evaluations of that solve:
    ``[{solver, nll, nfe}, ...]``."""
    import torch

    test = data(P, "test")
    rows = []
    for solver in solvers:
        over = {"backend": "hand", "method": solver["method"]}
        over.update({"steps": solver["steps"]} if "steps" in solver else {"rtol": solver["tol"], "atol": solver["tol"]})
        cfg = ModelConfig.from_dict({**flow.cfg.__dict__, **over})
        other = member(flow, 0, torch.float64 if solver.get("dtype") == "float64" else torch.float32)
        lp, nfe = log_likelihoods(other, test, cfg, P.t_end)
        rows.append({"solver": solver_label(solver), "nll": _finite(-lp[0].mean()), "nfe": nfe[0]})
    return rows


