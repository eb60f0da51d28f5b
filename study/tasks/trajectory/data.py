"""A trajectory-fitting task's data and error measures (numpy and scipy, no torch): the truth, the observation
times, each member's observations, the lattice where the field error is measured, and the errors."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

TRUTH_TOL = (1e-10, 1e-12)  # rtol, atol of the truth's solve (scipy's DOP853, or Radau for a stiff system; float64)
STREAM_NOISE, STREAM_WINDOWS, STREAM_PROBLEM = 0, 1, 2  # a member's random streams


@lru_cache(maxsize=16)
def _truth(system, times: tuple) -> np.ndarray:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda t, y: system.true_field(y), (times[0], times[-1]), np.asarray(system.y0, float),
                    method="Radau" if system.stiff else "DOP853", t_eval=np.array(times), rtol=TRUTH_TOL[0],
                    atol=TRUTH_TOL[1])
    if not sol.success:
        raise RuntimeError(f"the truth's solve failed: {sol.message}")
    return sol.y.T.copy()


def times(P) -> tuple[np.ndarray, np.ndarray]:
    """The observation times on ``[0, t_end]`` and the held-out times of the extrapolation, at the same spacing
    as far as ``t_end + t_extrapolate``."""
    obs = np.linspace(0.0, P.t_end, P.n_points)
    h = obs[1] - obs[0]
    n_ext = max(1, int(round(P.t_extrapolate / h)))
    return obs, P.t_end + h * np.arange(1, n_ext + 1)


def truth(system, t: np.ndarray) -> np.ndarray:
    """The true states ``(len(t), d)`` at increasing times ``t`` from 0 (float64)."""
    t = np.asarray(t, dtype=float)
    full = np.concatenate([[0.0], t]) if t[0] != 0.0 else t
    out = _truth(system, tuple(full.tolist()))
    return out[1:] if t[0] != 0.0 else out


def rng(system, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), system.rng_key]))


def observations(system, P, seed: int) -> np.ndarray:
    """What member ``seed`` trains on: the truth at the observation times plus its own noise (float32)."""
    t_obs, _ = times(P)
    y = truth(system, t_obs)
    if P.noise > 0:
        y = y + P.noise * rng(system, seed, STREAM_NOISE).standard_normal(y.shape)
    return y.astype(np.float32)


def field_grid(system, P, resolution: int | None = None, masked: bool = True) -> np.ndarray:
    """The points ``(M, d)`` where the field error is measured: a lattice over the true trajectory's bounding box
    (on ``[0, t_end]``, widened by ``band``), those within ``band`` of an observed true state (all of them with
    ``masked=False``)."""
    n = P.grid if resolution is None else resolution
    return _grid(system, P.t_end, P.n_points, P.band, n, masked).copy()


@lru_cache(maxsize=16)
def _grid(system, t_end: float, n_points: int, band: float, n: int, masked: bool) -> np.ndarray:
    y = truth(system, np.linspace(0.0, t_end, n_points))
    lo, hi = y.min(0) - band, y.max(0) + band
    axes = np.meshgrid(*[np.linspace(lo[k], hi[k], n) for k in range(y.shape[1])])
    pts = np.stack([a.ravel() for a in axes], 1)
    if not masked:
        return pts
    d2 = ((pts[:, None, :] - y[None, :, :]) ** 2).sum(-1).min(1)
    return pts[d2 <= band ** 2]


def field_error(system, learned: np.ndarray, points: np.ndarray) -> float:
    """Relative RMS error of ``learned`` (the field's values ``(M, d)`` at ``points``) against the truth's; for a
    system with a known part, of the learned part against the unknown part (the known part, exact in both, would
    flatter it)."""
    ref = system.true_field(points)
    if system.known is not None:
        known = system.known.numpy(points)
        ref, learned = ref - known, learned - known
    return float(np.sqrt(((learned - ref) ** 2).sum(1).mean() / (ref ** 2).sum(1).mean()))


def rms_distance(states: np.ndarray, ref: np.ndarray) -> float:
    """RMS over time of the distance between two trajectories ``(T, d)`` (NaN for a non-finite one)."""
    d = np.sqrt(((states - ref) ** 2).sum(-1).mean())
    return float(d) if np.isfinite(d) else float("nan")
