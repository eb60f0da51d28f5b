"""The two-spiral benchmark and its Bayes-optimal accuracy.

Class 0: ``theta ~ U[0, 3 pi]``, ``r = theta / (3 pi)``,
``(x, y) = r (cos theta, sin theta) + e`` with ``e ~ N(0, sigma^2 I)``.
Class 1 is class 0 rotated by ``pi``.  Classes are balanced.

Every draw is a pure function of ``(seed, stream)``: the training set, the
held-out test set and the shuffling of a run use different streams of the
same seed, so they are independent and reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...config import SIGMA  # the article's noise level, one source for the whole package

THETA_MAX = 3 * math.pi

# Independent random streams of one seed.
STREAM_TRAIN, STREAM_TEST, STREAM_SHUFFLE, STREAM_BAYES = 0, 1, 2, 3
STREAM_STEER, STREAM_PROBE = 4, 5  # the stiffness remedies' draws: STEER's end times, RNODE's Hutchinson probes


def rng(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator for ``stream`` of ``seed``; streams never overlap."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def spiral_mean(theta: np.ndarray) -> np.ndarray:
    """Noise-free point of class 0 at angle ``theta`` (shape ``(..., 2)``)."""
    r = theta / THETA_MAX
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)


def sample(n: int, sigma: float, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (float32, shape ``(n, 2)``) and labels (int64); exactly balanced for even ``n``."""
    if n < 2:
        raise ValueError(f"need at least 2 points, got {n}")
    labels = np.arange(n) % 2
    gen.shuffle(labels)
    theta = gen.uniform(0.0, THETA_MAX, size=n)
    pts = spiral_mean(theta)
    pts[labels == 1] *= -1.0  # rotation by pi
    pts += gen.normal(0.0, sigma, size=pts.shape)
    return pts.astype(np.float32), labels.astype(np.int64)


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_split(seed: int, n_train: int = 1000, n_test: int = 10_000, sigma: float = SIGMA) -> Split:
    """Training set (stream 0) and an independent held-out test set (stream 1) of one seed."""
    xtr, ytr = sample(n_train, sigma, rng(seed, STREAM_TRAIN))
    xte, yte = sample(n_test, sigma, rng(seed, STREAM_TEST))
    return Split(xtr, ytr, xte, yte)


PANEL = 20  # Gauss-Legendre nodes per panel of the composite rule


def _theta_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule on [0, THETA_MAX] with at least ``nodes`` nodes: ``(theta, weights)``,
    the weights those of the uniform density (they sum to 1).  Panels keep it cheap for many nodes (one
    global rule of n nodes costs an n x n eigenproblem)."""
    panels = max(1, math.ceil(nodes / PANEL))
    u, w = np.polynomial.legendre.leggauss(PANEL)
    edges = np.linspace(0.0, THETA_MAX, panels + 1)
    half = (edges[1:] - edges[:-1]) / 2
    theta = ((edges[:-1] + half)[:, None] + half[:, None] * u[None, :]).ravel()
    return theta, (half[:, None] * w[None, :]).ravel() / THETA_MAX


def _class0_density(points: np.ndarray, sigma: float, nodes: int) -> np.ndarray:
    """p(x | class 0) by Gauss-Legendre quadrature over theta of the Gaussian kernel.

    Vectorised: ``exp(-|p - mu|^2 / (2 sigma^2))`` is ``exp(p . a_j + c_j - |p|^2 s)`` with
    ``s = 1 / (2 sigma^2)``, ``a_j = 2 s mu_j`` and ``c_j = -s |mu_j|^2``: one matrix product and one
    ``exp`` per block, in float32 (the exponent's rounding is below 1e-5 of its value; contributions
    from nodes farther than about 13 sigma underflow to zero, where they are below 1e-37 anyway).
    """
    theta, w = _theta_rule(nodes)
    w = w.astype(np.float32)
    mu = spiral_mean(theta)  # (nodes, 2)
    s = 1.0 / (2 * sigma**2)
    a = (2 * s * mu).T.astype(np.float32)
    c = (-s * (mu**2).sum(1)).astype(np.float32)
    out = np.empty(len(points))
    for i in range(0, len(points), 4096):
        p = points[i : i + 4096]
        z = p.astype(np.float32) @ a
        z += c
        z -= (s * (p**2).sum(1)).astype(np.float32)[:, None]
        np.maximum(z, -80.0, out=z)  # exp(-80) is still a normal float32: no slow denormals
        np.exp(z, out=z)
        out[i : i + 4096] = z @ w
    return out / (2 * math.pi * sigma**2)


def quadrature_nodes(sigma: float) -> int:
    """Nodes over theta that resolve a kernel of width ``sigma`` along the spiral (about 3 per sigma of arc)."""
    return max(2000, int(math.ceil(40.0 / sigma)))


def bayes_posterior(points: np.ndarray, sigma: float = SIGMA, nodes: int | None = None) -> np.ndarray:
    """Exact (to quadrature error) posterior probability of class 1 at ``points``."""
    nodes = quadrature_nodes(sigma) if nodes is None else nodes
    points = np.asarray(points, dtype=np.float64)
    p0 = _class0_density(points, sigma, nodes)
    p1 = _class0_density(-points, sigma, nodes)  # class 1 is class 0 rotated by pi
    tot = p0 + p1
    return np.where(tot > 0, p1 / np.where(tot > 0, tot, 1.0), 0.5)


BAYES_POINTS = 40_000  # fresh points the Bayes-optimal accuracy is estimated on


@lru_cache(maxsize=8)
def bayes_accuracy(sigma: float = SIGMA, n: int = BAYES_POINTS, seed: int = 12345, nodes: int | None = None) -> tuple[float, float]:
    """Bayes-optimal accuracy of the distribution and the standard error of the estimate.

    Accuracy of the Bayes rule is ``E[max(P(c=0|x), P(c=1|x))]``; the
    expectation is estimated on ``n`` fresh points with the exact posterior
    (a Rao-Blackwellised estimator: far less variance than counting hits).
    """
    x, _ = sample(n, sigma, rng(seed, STREAM_BAYES))
    post = bayes_posterior(x, sigma, nodes)
    m = np.maximum(post, 1.0 - post)
    return float(m.mean()), float(m.std(ddof=1) / math.sqrt(n))
