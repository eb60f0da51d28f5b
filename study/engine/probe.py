"""The linear probe: is a representation linearly separable?

Logistic regression fitted by Newton's method (iteratively reweighted least
squares) in float64 on standardised features, with a small ridge penalty
(``ridge``, on the weights only) so that separable data still has a finite
optimum.  It is fitted on the training points' features and scored on the
held-out points' features: the held-out accuracy of the best linear classifier
of the representation.  numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-4  # per point: small against the data term, large enough to bound the weights of separable data
MAX_ITER = 100


@dataclass(frozen=True)
class Probe:
    """A fitted probe: ``p(class 1 | z) = sigmoid(((z - mean) / scale) @ w + b)``."""

    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: float
    iterations: int

    def logits(self, z: np.ndarray) -> np.ndarray:
        return ((np.asarray(z, np.float64) - self.mean) / self.scale) @ self.w + self.b

    def accuracy(self, z: np.ndarray, y: np.ndarray) -> float:
        return float(((self.logits(z) > 0) == (np.asarray(y) == 1)).mean())


def fit(z: np.ndarray, y: np.ndarray, ridge: float = RIDGE, max_iter: int = MAX_ITER, tol: float = 1e-10) -> Probe:
    """Fit the probe to features ``z`` (``(n, d)``) and labels ``y`` in {0, 1}."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
        raise ValueError(f"need features (n, d) and n labels, got {z.shape} and {y.shape}")
    mean, scale = z.mean(0), z.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    x = np.hstack([(z - mean) / scale, np.ones((len(z), 1))])
    n, k = x.shape
    penalty = np.full(k, ridge * n)
    penalty[-1] = 0.0  # the bias is not penalised
    theta = np.zeros(k)
    it = 0
    for it in range(1, max_iter + 1):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = x.T @ (p - y) + penalty * theta
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-12 * np.eye(k)
        delta = np.linalg.solve(hess, grad)
        theta -= delta
        if np.max(np.abs(delta)) < tol:
            break
    return Probe(mean, scale, theta[:-1], float(theta[-1]), it)


def loss_gradient(probe: Probe, z: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """The gradient of the penalised loss at the fitted probe (zero at the optimum; for tests)."""
    z = np.asarray(z, np.float64)
    x = np.hstack([(z - probe.mean) / probe.scale, np.ones((len(z), 1))])
    theta = np.append(probe.w, probe.b)
    p = 1.0 / (1.0 + np.exp(-(x @ theta)))
    penalty = np.full(len(theta), ridge * len(z))
    penalty[-1] = 0.0
    return x.T @ (p - np.asarray(y, np.float64)) + penalty * theta
