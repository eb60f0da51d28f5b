"""The density task's data (seeded samples of the 2-D densities) and their exact log-densities and entropies."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


from .protocol import DENSITIES, LOG_2PI, Protocol


# -- the data and their entropy --------------------------------------------------------------------------------

def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), 22]))


STREAM_TRAIN, STREAM_VAL, STREAM_TEST, STREAM_ENTROPY, STREAM_BATCHES, STREAM_PROBES, STREAM_PROBLEM, STREAM_STEER = range(8)
SPLITS = {"train": STREAM_TRAIN, "val": STREAM_VAL, "test": STREAM_TEST}
_S2 = 1.0 / math.sqrt(2.0)
GAUSS_CENTRES = 4.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (_S2, _S2), (_S2, -_S2), (-_S2, _S2), (-_S2, -_S2)])
GAUSS_STD, GAUSS_DIV = 0.5, 1.414
SPIRAL_TURN = 540 * 2 * math.pi / 360  # the 2spirals' largest angle (3 pi)
SPIRAL_BOX, SPIRAL_NOISE, SPIRAL_DIV = 0.5, 0.1, 3.0
MOONS_NOISE, MOONS_SCALE, MOONS_SHIFT = 0.1, 2.0, np.array([-1.0, -0.2])


def sample(density: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points ``(n, 2)`` (float64) of ``density``, drawn from ``rng``."""
    if density == "8gaussians":
        idx = rng.integers(0, 8, n)
        return (rng.standard_normal((n, 2)) * GAUSS_STD + GAUSS_CENTRES[idx]) / GAUSS_DIV
    if density == "checkerboard":
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
        return np.stack([x1, x2], 1) * 2
    if density == "2spirals":
        m = (n + 1) // 2
        t = np.sqrt(rng.random((m, 1))) * SPIRAL_TURN
        d = np.hstack([-np.cos(t) * t, np.sin(t) * t]) + rng.random((m, 2)) * SPIRAL_BOX
        return np.vstack([d, -d])[:n] / SPIRAL_DIV + rng.standard_normal((n, 2)) * SPIRAL_NOISE
    if density == "moons":
        try:
            from sklearn.datasets import make_moons
        except ImportError:
            raise RuntimeError("the moons density needs scikit-learn: pip install 'study[sklearn]'") from None
        x, _ = make_moons(n, noise=MOONS_NOISE, random_state=int(rng.integers(0, 2 ** 31 - 1)))
        return x * MOONS_SCALE + MOONS_SHIFT
    raise ValueError(f"unknown density {density!r}; choose one of: {', '.join(DENSITIES)}")


def data(P: Protocol, split: str) -> np.ndarray:
    """The ``split`` (train, val or test) points of the protocol's data (float64), independent draws."""
    n = {"train": P.n_train, "val": P.n_val, "test": P.n_test}[split]
    return _data(P.density, n, P.data_seed, SPLITS[split]).copy()


@lru_cache(maxsize=16)
def _data(density: str, n: int, seed: int, stream: int) -> np.ndarray:
    return sample(density, n, _rng(seed, stream))


def _norm_logpdf(x: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    return -0.5 * (((x - mean) / std) ** 2).sum(-1) - 2 * math.log(std) - LOG_2PI


def _logmeanexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).mean(axis, keepdims=True))).squeeze(axis)


def _box_gauss(x: np.ndarray, lo: np.ndarray, width: float, std: float) -> np.ndarray:
    """Density of ``U[lo, lo + width] + N(0, std^2)`` at ``x`` (elementwise)."""
    from scipy.special import ndtr

    return (ndtr((x - lo) / std) - ndtr((x - lo - width) / std)) / width


def log_density(density: str, x: np.ndarray, nodes: int = 2000) -> np.ndarray:
    """The data density's log at points ``x`` ``(n, 2)``: exact for the Gaussians and the checkerboard, by the
    midpoint rule over the curve's parameter (``nodes`` points) for the spirals and the moons."""
    if density == "8gaussians":
        c = GAUSS_CENTRES / GAUSS_DIV
        return _logmeanexp(np.stack([_norm_logpdf(x, ci, GAUSS_STD / GAUSS_DIV) for ci in c], 1), 1)
    if density == "checkerboard":
        u = x / 2
        inside = (np.abs(u[:, 0]) <= 2) & ((np.floor(u[:, 0]) + np.floor(u[:, 1])) % 2 == 0) & (np.abs(u[:, 1]) <= 2)
        return np.where(inside, -math.log(32.0), -np.inf)
    u = (np.arange(nodes) + 0.5) / nodes
    out = np.empty(len(x))
    with np.errstate(divide="ignore"):  # far from the data the density underflows: log 0 = -inf
        for i in range(0, len(x), 512):
            out[i: i + 512] = np.log(_curve_density(density, x[i: i + 512], u))
    return out


def _curve_density(density: str, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    if density == "moons":
        th = np.pi * u
        arcs = (np.stack([np.cos(th), np.sin(th)], 1), np.stack([1 - np.cos(th), 0.5 - np.sin(th)], 1))
        s = MOONS_NOISE * MOONS_SCALE
        dens = [np.exp(_norm_logpdf(x[:, None, :], a * MOONS_SCALE + MOONS_SHIFT, s)).mean(1) for a in arcs]
        return 0.5 * (dens[0] + dens[1])
    t = np.sqrt(u) * SPIRAL_TURN  # n = sqrt(U) 3 pi: u's midpoints are equally likely
    base = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) / SPIRAL_DIV  # (K, 2)
    w, s = SPIRAL_BOX / SPIRAL_DIV, SPIRAL_NOISE
    plus = _box_gauss(x[:, None, :], base, w, s).prod(-1).mean(1)
    minus = _box_gauss(x[:, None, :], -base - w, w, s).prod(-1).mean(1)
    return 0.5 * (plus + minus)


@lru_cache(maxsize=8)
def entropy(density: str, n: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """The density's differential entropy in nats and its standard error: ``-E log p(X)`` by Monte Carlo over ``n``
    fresh samples (the checkerboard's is ``log 32``, exactly)."""
    if density == "checkerboard":
        return math.log(32.0), 0.0
    lp = log_density(density, sample(density, n, _rng(seed, STREAM_ENTROPY)))
    return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(n))


def floor(P: Protocol) -> tuple[float, float]:
    """The held-out points' own floor: ``-mean log p(x)`` over the test split under the data's density, and its
    standard error.  ``nll`` minus this is a paired estimate of ``KL(p || q)`` on the same points, far less noisy
    than ``nll`` minus :func:`entropy` (two independent samples; 0.02 nats of sampling error at 2,000 points)."""
    return _floor(P.density, P.n_test, P.data_seed)


@lru_cache(maxsize=16)
def _floor(density: str, n: int, seed: int) -> tuple[float, float]:
    lp = log_density(density, _data(density, n, seed, STREAM_TEST))
    if not np.isfinite(lp).all():  # a point outside the support (the checkerboard's edges): no finite floor
        return float("inf"), 0.0
    return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(n))


def reference_value(P: Protocol) -> float:
    return entropy(P.density)[0]


