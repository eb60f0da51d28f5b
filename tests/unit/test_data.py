"""The spiral data and its Bayes-optimal accuracy, checked against independent estimates."""
import math

import numpy as np
import pytest

from study.tasks.spiral import data


def test_split_is_balanced_deterministic_and_independent():
    a, b = data.make_split(0), data.make_split(0)
    assert a.x_train.shape == (1000, 2) and a.x_test.shape == (10_000, 2)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_test, b.x_test)
    assert a.y_train.sum() == 500 and a.y_test.sum() == 5000
    c = data.make_split(1)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.allclose(a.x_train, a.x_test[:1000])  # test set is a different stream


def test_sample_follows_the_generative_model():
    x, y = data.sample(200_000, 0.0, data.rng(0, 9))  # noise-free: points lie on the spirals
    r = np.linalg.norm(x, axis=1)
    theta = r * data.THETA_MAX
    mean0 = data.spiral_mean(theta)
    on_curve = np.where(y[:, None] == 0, mean0, -mean0)
    assert np.abs(on_curve - x).max() < 1e-5
    assert abs(r.mean() - 0.5) < 0.005 and r.max() <= 1.0 + 1e-6  # r ~ U[0, 1]
    xn, _ = data.sample(200_000, 0.1, data.rng(0, 9))
    assert abs(np.std(xn - x) - 0.1) < 0.002  # same stream: noise is the only difference


@pytest.mark.parametrize("sigma", [0.1, 0.03])
def test_class_density_quadrature_against_monte_carlo(sigma):
    """The composite float32 rule against plain float64 Monte Carlo over theta, on and near the spiral."""
    theta0 = np.array([1.0, 3.0, 5.5, 8.0])
    pts = np.vstack([data.spiral_mean(theta0) + sigma * np.array([0.5, -0.3]), [[0.1, 0.2], [-0.5, 0.3]]])
    quad = data._class0_density(pts, sigma, data.quadrature_nodes(sigma))
    theta = data.rng(1, 9).uniform(0, data.THETA_MAX, 400_000)
    mu = data.spiral_mean(theta)
    d2 = ((pts[:, None, :] - mu[None]) ** 2).sum(-1)
    mc = np.exp(-d2 / (2 * sigma**2)).mean(1) / (2 * math.pi * sigma**2)
    big = mc > 1e-3 * mc.max()
    assert np.allclose(quad[big], mc[big], rtol=0.03)


def test_theta_rule_integrates_smooth_functions():
    theta, w = data._theta_rule(2000)
    assert len(theta) == 2000 and abs(w.sum() - 1) < 1e-12
    assert abs((w * np.cos(theta)).sum() - np.sin(data.THETA_MAX) / data.THETA_MAX) < 1e-12


def test_bayes_accuracy_against_counting_hits():
    acc, se = data.bayes_accuracy(0.1, n=4000, seed=1, nodes=1000)
    assert 0.85 < acc < 0.90 and se < 0.003
    x, y = data.sample(6000, 0.1, data.rng(2, 9))
    hits = ((data.bayes_posterior(x, 0.1, 1000) > 0.5) == y).mean()
    assert abs(hits - acc) < 4 * math.sqrt(acc * (1 - acc) / 6000) + 3 * se
    assert data.bayes_accuracy(0.01, n=2000, seed=1, nodes=2000)[0] > 0.99  # almost no overlap


def test_sample_rejects_tiny_n():
    with pytest.raises(ValueError):
        data.sample(1, 0.1, data.rng(0, 0))
