"""The stiff task and the stiffness measures: its truth against the closed form and a second stiff solver, its
known part, the stiffness indicator against a hand count, each method's stability on y' = lambda y, and what the
explicit and implicit methods do on its field."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from study import tasks
from study.config import METHODS
from study.engine import implicit
from study.engine.solvers import TABLEAUS
from study.tasks import stiff
from study.tasks.trajectory import data
from study.tasks.trajectory.stiffness import radius

T = stiff.TASK


def test_the_truth_is_the_closed_form_and_a_second_stiff_solver_s():
    P = T.Protocol()
    t = data.times(P)[0]
    truth = T.truth(t)  # scipy's Radau at 1e-10
    assert np.abs(truth - stiff.exact(t)).max() < 1e-8
    bdf = solve_ivp(lambda _, y: stiff.true_field(y), (0.0, t[-1]), np.array(stiff.TASK.system.y0), method="BDF",
                    t_eval=t, rtol=1e-10, atol=1e-12)
    assert bdf.success and np.abs(bdf.y.T - truth).max() < 1e-6
    r = np.hypot(*truth.T)
    assert r[0] == 2.0 and abs(r[-1] - 1.0) < 1e-9  # on the circle after the transient


def test_the_field_error_reads_the_learned_part_only():
    pts = np.random.default_rng(0).normal(size=(50, 2))
    assert data.field_error(T.system, stiff.true_field(pts), pts) == 0.0
    assert data.field_error(T.system, stiff.relaxation(pts), pts) == pytest.approx(1.0)  # the network learned nothing


def test_the_known_part_is_the_same_in_numpy_and_torch():
    y = np.random.default_rng(1).normal(size=(7, 2))
    got = stiff.relaxation_torch(torch.as_tensor(y.T).unsqueeze(0))[0].T.numpy()
    assert np.allclose(got, stiff.relaxation(y), rtol=1e-14, atol=1e-12)


def test_the_stiffness_indicator_counts_the_known_spectral_radius():
    """With the network's weights zero the field is the rotation plus the relaxation: at (2, 0) its Jacobian is
    [[K (1 - 3 r^2), -1], [1, K (1 - r^2)]] = [[-5500, -1], [1, -1500]], eigenvalues -3500 -+ sqrt(2000^2 - 1)."""
    flow = T.Flow(T.model_config("backward-euler"), [0], hidden=4)
    zeros = [torch.zeros_like(p) for p in flow.params]
    J = np.array([[-5500.0, -1.0], [1.0, -1500.0]])
    # the network adds nothing: the relaxation alone (its rotation is the network's to learn)
    want = np.abs(np.linalg.eigvals(np.array([[-5500.0, 0.0], [0.0, -1500.0]]))).max()
    assert radius(flow.plain, zeros, np.array([[2.0, 0.0]])) == pytest.approx(want, rel=1e-12)
    assert np.abs(np.linalg.eigvals(J)).max() == pytest.approx(3500 + np.sqrt(2000 ** 2 - 1), rel=1e-12)


@pytest.mark.parametrize("name", ["euler", "rk4", "rk4-38", "midpoint"])
def test_each_explicit_method_s_real_stability_limit_is_its_polynomial_s_root(name):
    """``|R(-x)| <= 1`` on ``[0, real_limit]`` and ``> 1`` just beyond, ``R`` the tableau's stability polynomial
    ``1 + z b^T (I - z A)^{-1} 1``."""
    tab = TABLEAUS[name]
    s = len(tab.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i, : len(row)] = [float(x) for x in row]
    b = np.array([float(x) for x in tab.b])
    R = lambda z: 1 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))  # noqa: E731
    lim = METHODS[name].real_limit
    assert all(abs(R(-x)) <= 1 + 1e-9 for x in np.linspace(0, lim, 400))
    assert abs(R(-lim * 1.002)) > 1


@pytest.mark.parametrize("method", ["backward-euler", "trapezoid", "kvaerno3"])
@pytest.mark.parametrize("lam", [-1.0, -1e2, -1e4, -1e6])
def test_each_implicit_method_s_stability_function_on_y_prime_lambda_y(method, lam):
    """One step of ``h = 1`` on ``y' = lambda y`` is ``R(lambda) y``: backward Euler ``1 / (1 - z)``, the
    trapezoid ``(1 + z/2) / (1 - z/2)``, Kvaerno 3(2) its tableau's ``1 + z b^T (I - z A)^{-1} 1``; the
    L-stable ones tend to 0 as ``z -> -inf``, the trapezoid to -1."""
    tab = implicit.DIRKS[method]
    s = len(tab.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i, : i + 1] = row
    z = lam
    closed = {"backward-euler": 1 / (1 - z), "trapezoid": (1 + z / 2) / (1 - z / 2),
              "kvaerno3": 1 + z * np.array(tab.b) @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))}[method]
    y0 = torch.ones(1, 1, dtype=torch.float64)
    got = implicit.solve(lambda t, y: lam * y, (), y0, 0.0, 1.0, method, steps=1, newton=implicit.Newton(tol=1e-14))
    # each stage's linear system has condition ~|z|: its rounding, about 1e-12 |z| relative, is all that differs
    assert float(got) == pytest.approx(closed, rel=max(1e-10, 1e-12 * abs(z)), abs=1e-15)
    assert abs(closed) <= 1.0
    if METHODS[method].stability == "L-stable" and lam == -1e6:
        assert abs(closed) < 1e-5


def test_explicit_fixed_steps_blow_up_on_the_stiff_field_and_backward_euler_trains():
    P = T.Protocol(iterations=6, n_points=60, eval_every=2, grid=8)
    out = {}
    for v in ("euler", "backward-euler"):
        cfg = T.model_config(v)
        (rec,), _ = T.train([T.run_config(v, cfg, P, 0)])
        out[v] = rec
    assert out["euler"]["status"] == "diverged" and "iteration 1" in out["euler"]["reason"]
    be = out["backward-euler"]
    assert be["status"] == "ok" and be["metrics"]["newton_iterations"] > 0 and be["metrics"]["linear_solves"] > 0
    ind = be["metrics"]["stiffness"]
    assert ind["rho_start"] > 5000 and ind["h_rho_end"] > METHODS["dopri5"].real_limit  # stiff for every explicit


def test_implicit_methods_apply_to_stiff_tasks_alone():
    from study.variants import VARIANTS

    for name in tasks.TASKS:
        module = tasks.get(name)
        why = tasks.why_not(module, VARIANTS["kvaerno3"])
        assert (why is None) == bool(getattr(module, "STIFF", False)), name
