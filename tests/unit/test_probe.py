"""The linear probe against independent references: the optimum's gradient, separable and unseparable data."""
import numpy as np

from study.engine import probe


def _two_blobs(n, gap, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = rng.normal(size=(n, 3)) + gap * (2 * y[:, None] - 1) * np.array([1.0, -0.5, 0.0])
    return z, y


def test_fit_reaches_the_penalised_optimum():
    z, y = _two_blobs(400, 0.7, 0)
    p = probe.fit(z, y)
    assert np.abs(probe.loss_gradient(p, z, y)).max() < 1e-8
    assert p.iterations < probe.MAX_ITER


def test_separable_data_is_separated_and_noise_is_not():
    z, y = _two_blobs(500, 4.0, 1)
    assert probe.fit(z, y).accuracy(z, y) == 1.0
    rng = np.random.default_rng(2)
    noise, labels = rng.normal(size=(2000, 4)), rng.integers(0, 2, 2000)
    held_out = rng.normal(size=(2000, 4)), rng.integers(0, 2, 2000)
    assert abs(probe.fit(noise, labels).accuracy(*held_out) - 0.5) < 0.05


def test_spirals_are_not_linearly_separable_in_the_input():
    """The benchmark's raw input: a linear classifier stays far below the Bayes ceiling (about 87%)."""
    from study.tasks.spiral import data

    sp = data.make_split(0, 1000, 10_000, 0.1)
    acc = probe.fit(sp.x_train, sp.y_train).accuracy(sp.x_test, sp.y_test)
    assert 0.5 < acc < 0.75


def test_reconstruction_inverts_the_flow_up_to_the_solvers_error():
    """Backward from y(T): exact for the identity flow (zero init); for a random field, RK4's error is
    far below Euler's (fourth against first order in the step)."""
    import torch

    from study.engine.models import Classifier
    from study.variants import variant_config

    x = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ident = Classifier(variant_config("euler"), [0])
        y0, yT = ident.features(x)
        assert torch.equal(ident.reconstruct(yT), y0)
        errs = {}
        for m in ("euler", "rk4"):
            model = Classifier(variant_config(m, zero_init=False), [1])
            y0, yT = model.features(x)
            errs[m] = float((model.reconstruct(yT) - y0).norm() / y0.norm())
        assert errs["rk4"] < 1e-4 < errs["euler"] < 0.5
        assert Classifier(variant_config("resnet"), [0]).reconstruct(yT) is None
