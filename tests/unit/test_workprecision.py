"""The work-precision kind on a problem with a known answer: a linear field ``y' = A y``, whose end state is
``expm(A) y0`` and whose loss gradient is the Frechet derivative of the matrix exponential (scipy)."""
import math

import numpy as np
import pytest
import torch

from study.runners import workprecision as W


class LinearField:
    """``f(y) = A y`` in the engine's field interface (:mod:`study.engine.field`); raw parameters ``(A (S, d, d),)``."""

    name = "linear"

    def fold(self, raw):
        return tuple(raw)

    def as_weights(self, entries):
        return tuple(entries)

    def forward(self, y, t, w):
        return torch.bmm(w[0], y), ()

    def backward_weights(self, w):
        return (w[0],), None

    def vjp(self, g, y, t, saved, tensors, meta):
        return torch.bmm(tensors[0].transpose(1, 2), g), (torch.bmm(g, y.transpose(1, 2)),)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        acc[0].baddbmm_(g, y.transpose(1, 2))
        return torch.bmm(tensors[0].transpose(1, 2), g)

    def unfold(self, grads, sign: float = 1.0):
        return tuple(sign * x for x in grads)


A = np.array([[-0.3, 1.2, 0.0], [-1.0, -0.2, 0.4], [0.1, -0.5, -0.6]])
Y0 = np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])  # (d, B)
C = np.array([[0.5, -1.0], [2.0, 0.3], [-0.4, 1.1]])


def problem():
    c = torch.as_tensor(C).unsqueeze(0)
    return W.Problem(LinearField(), (torch.as_tensor(A).unsqueeze(0),), torch.as_tensor(Y0).unsqueeze(0), 0.0, 1.0,
                     lambda y1: (y1 * c).sum())


def test_the_reference_is_the_exact_solution_and_gradient():
    from scipy.linalg import expm, expm_frechet

    y1, grad, own_error = W.reference(problem(), 1e-12, steps=256)
    assert np.abs(y1[0].numpy() - expm(A) @ Y0).max() < 1e-10
    assert own_error < 1e-9
    exact = expm_frechet(A.T, C @ Y0.T, compute_expm=False)  # d/dA sum(C * expm(A) Y0)
    assert np.abs(grad.numpy() - exact.ravel()).max() < 1e-9 * np.abs(exact).max()


def test_each_method_converges_at_its_order_in_solution_and_gradient():
    """Halving the step divides the error by 2^order: Euler 1, midpoint 2, RK4 4 (the slopes the work-precision
    figure shows), for the solution and for direct backpropagation's gradient alike."""
    config = {"reference_tol": 1e-12, "repeats": 1, "steps": [8, 16, 32], "tolerances": [1e-4, 1e-6],
              "solvers": [("hand", "euler"), ("hand", "midpoint"), ("torchdiffeq", "rk4-38"), ("hand", "dopri5")],
              "gradient_methods": [("hand", "euler"), ("hand", "rk4"), ("hand-checkpoint", "rk4"),
                                   ("torchdiffeq-adjoint", "dopri5")]}
    rows, _ = W.measure(problem(), {**config, "reference_steps": 256})
    for what, backend, method, order in (("solution", "hand", "euler", 1), ("solution", "hand", "midpoint", 2),
                                         ("solution", "torchdiffeq", "rk4-38", 4), ("gradient", "hand", "euler", 1),
                                         ("gradient", "hand", "rk4", 4), ("gradient", "hand-checkpoint", "rk4", 4)):
        errs = [r["error"] for r in rows if (r["what"], r["backend"], r["method"]) == (what, backend, method)]
        slopes = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
        assert all(abs(s - order) < 0.25 for s in slopes), (what, backend, method, slopes)
    adaptive = [r for r in rows if r["method"] == "dopri5"]
    assert all(r["error"] < 50 * r["tol"] for r in adaptive) and all(r["nfe"] > 0 for r in adaptive)
    sol = {(r["backend"], r["method"], r.get("steps")): r["nfe"] for r in rows if r["what"] == "solution"}
    assert sol[("hand", "euler", 8)] == 8 and sol[("hand", "midpoint", 16)] == 32  # evaluations counted by hand


def test_the_reference_gradient_converges_on_a_nonlinear_field():
    """On the density task's CNF the reference gradient (torchdiffeq's RK4 on a fine grid) equals the hand engine's
    direct dopri5 gradient at a tight tolerance (step sizes held fixed in its backward).  Backpropagation through
    torchdiffeq's adaptive dopri5, the reference before, was 1e-4 away here: it differentiates the step-size
    control."""
    from study.tasks import density as D

    flow = D.Flow(D.model_config("rk4"), [0], 16)
    with torch.no_grad():
        for p in flow.params:
            p.mul_(2.0)
    p = D.problem(flow, {"protocol": D.Protocol().as_config(), "seed": 0, "batch": 32})
    _, exact, own_error = W.reference(p, 1e-12, steps=512)
    params = W._leaves(p.raw)
    p.loss(W._solve(p, params, "hand", "dopri5", {"tol": 1e-11}, W._Count())).backward()
    hand = W._flat_grad(params)
    assert float((hand - exact).norm() / exact.norm()) < 1e-8 and own_error < 1e-8
    params = W._leaves(p.raw)
    p.loss(W._solve(p, params, "torchdiffeq", "dopri5", {"tol": 1e-12}, W._Count())).backward()
    assert float((W._flat_grad(params) - exact).norm() / exact.norm()) > 1e-6  # what the old reference did
