"""The implicit methods against independent references: the exact one-step recurrences of a linear system (hand
algebra), the matrix exponential and scipy's Radau on stiff problems, each method's order, gradcheck of the
implicit-function-theorem gradients, and Newton failing in bounded time."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.integrate import solve_ivp

from study.engine import implicit

A = torch.tensor([[-1000.0, 1.0], [0.0, -1.0]], dtype=torch.float64)  # eigenvalues -1000 and -1: stiff


@pytest.fixture(autouse=True)
def _float64():
    """Every tensor of these tests in float64 (restored after each: the other tests' default is float32)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def linear(t, y):
    return y @ A.T


def test_one_step_of_each_method_on_a_linear_system_is_its_exact_recurrence():
    y0 = torch.tensor([[1.0, 2.0], [-0.5, 0.3]])
    h = 0.1
    eye = torch.eye(2)
    expected = {
        "backward-euler": torch.linalg.solve(eye - h * A, y0.T).T,
        "trapezoid": torch.linalg.solve(eye - h / 2 * A, (eye + h / 2 * A) @ y0.T).T,
    }
    for method, want in expected.items():
        got = implicit.solve(linear, (), y0, 0.0, h, method, steps=1, newton=implicit.Newton(tol=1e-12))
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), method


def test_kvaerno3_meets_the_matrix_exponential_on_a_stiff_linear_system():
    y0 = torch.tensor([[1.0, 2.0]])
    stats = implicit.Stats()
    got = implicit.solve(linear, (), y0, 0.0, 2.0, "kvaerno3", rtol=1e-5, atol=1e-8, stats=stats)
    want = torch.tensor(scipy.linalg.expm(2.0 * A.numpy()) @ y0[0].numpy())
    assert torch.allclose(got[0], want, rtol=1e-4, atol=1e-7)
    # an explicit RK4 would need h < 2.785e-3 over [0, 2] (about 720 steps); the L-stable method's steps are set by
    # the accuracy of the slow component alone
    assert stats.accepted < 400 and stats.newton_failures == 0, stats.accepted


def test_kvaerno3_solves_robertson_as_scipy_s_radau_does():
    def rober(t, y):
        a, b, c = y[:, 0], y[:, 1], y[:, 2]
        return torch.stack([-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b], 1)

    ref = solve_ivp(lambda t, y: rober(t, torch.tensor(y)[None])[0].numpy(), (0, 4.0), [1.0, 0.0, 0.0],
                    method="Radau", rtol=1e-10, atol=1e-14).y[:, -1]
    got = implicit.solve(rober, (), torch.tensor([[1.0, 0.0, 0.0]]), 0.0, 4.0, "kvaerno3", rtol=1e-5, atol=1e-10,
                         first_step=1e-6)
    assert np.allclose(got[0].numpy(), ref, rtol=1e-3, atol=1e-9), (got, ref)


@pytest.mark.parametrize("method, order", [("backward-euler", 1), ("trapezoid", 2), ("kvaerno3", 3)])
def test_each_method_converges_at_its_order(method, order):
    f = lambda t, y: torch.stack([y[:, 1], -torch.sin(y[:, 0]) - 0.1 * y[:, 1] + torch.cos(t).expand(len(y))], 1)  # noqa: E731
    y0 = torch.tensor([[1.0, 0.0]])
    ref = implicit.solve(f, (), y0, 0.0, 1.0, "kvaerno3", steps=100)  # its error is below 1 % of the others
    errs = [float((implicit.solve(f, (), y0, 0.0, 1.0, method, steps=n) - ref).norm()) for n in (10, 20)]
    assert math.log2(errs[0] / errs[1]) == pytest.approx(order, abs=0.25), errs


@pytest.mark.parametrize("method", ["backward-euler", "trapezoid", "kvaerno3"])
def test_the_implicit_function_theorem_gradient_passes_gradcheck(method):
    g = torch.Generator().manual_seed(0)
    W1 = (0.5 * torch.randn(6, 2, generator=g)).requires_grad_()
    W2 = (0.5 * torch.randn(2, 6, generator=g)).requires_grad_()
    b = torch.randn(2, generator=g).requires_grad_()

    def run(y0, W1, W2, b):
        f = lambda t, y: torch.tanh(y @ W1.T) @ W2.T - 3.0 * y + b  # noqa: E731
        return implicit.solve(f, (W1, W2, b), y0, 0.0, 0.5, method, steps=3,
                              newton=implicit.Newton(tol=1e-13, max_iter=30)).sum(0)

    y0 = torch.randn(3, 2, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(run, (y0, W1, W2, b), eps=1e-6, atol=1e-6)


def test_the_adaptive_gradient_is_the_fixed_sequence_s_and_matches_finite_differences():
    """With the accepted steps held fixed, the adaptive solve's gradient is exact: central differences of the
    loss through the same steps agree."""
    W = torch.tensor([[-50.0, 2.0], [1.0, -0.5]], requires_grad=True)
    y0 = torch.tensor([[1.0, -1.0]])
    f = lambda t, y: torch.tanh(y) @ W.T  # noqa: E731
    stats = implicit.Stats()
    y1 = implicit.solve(f, (W,), y0, 0.0, 1.0, "kvaerno3", rtol=1e-4, atol=1e-7, stats=stats)
    (grad,) = torch.autograd.grad(y1.sum(), W)

    def through(Wp):
        fp = lambda t, y: torch.tanh(y) @ Wp.T  # noqa: E731
        y, t = y0, 0.0
        for h in stats.steps:
            y = implicit.solve(fp, (), y, t, t + h, "kvaerno3", steps=1, newton=implicit.Newton(tol=1e-13))
            t += h
        return float(y.sum())

    eps = 1e-6
    assert len(stats.steps) > 5
    for i, j in ((0, 0), (1, 0), (0, 1)):
        Wp, Wm = W.detach().clone(), W.detach().clone()
        Wp[i, j] += eps
        Wm[i, j] -= eps
        assert (through(Wp) - through(Wm)) / (2 * eps) == pytest.approx(float(grad[i, j]), rel=1e-5, abs=1e-8)


def test_newton_failure_is_a_solver_failure_in_bounded_time():
    f = lambda t, y: y ** 3 * 1e6  # noqa: E731 - blows up: no stage solution near the guess
    with pytest.raises(AssertionError, match="did not converge|underflow in dt"):
        implicit.solve(f, (), torch.tensor([[10.0]]), 0.0, 1.0, "backward-euler", steps=1,
                       newton=implicit.Newton(max_iter=5))
    stats = implicit.Stats()
    with pytest.raises(AssertionError, match="underflow in dt|max_num_steps"):
        implicit.solve(f, (), torch.tensor([[10.0]]), 0.0, 1.0, "kvaerno3", stats=stats,
                       newton=implicit.Newton(max_iter=5), max_steps=200)
    assert stats.newton_iterations <= 200 * 4 * 5


def test_the_solve_entry_runs_the_implicit_methods_on_any_module_field():
    """A torchdiffeq-style module y' = y A^T through study.engine.solve: trapezoid steps equal their recurrence, the
    gradient with respect to the module's weights passes gradcheck, and the counter sees the Newton work."""
    from study.engine.module_field import ModuleField
    from study.engine.solve import Count, How, solve

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(A.clone() / 100)

        def forward(self, t, y):
            return y @ self.A.T

    module = Linear()
    field = ModuleField(module, (2,))
    y0 = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
    counter = Count()
    y1 = solve(field, field.raw(), field.to_engine(y0), 0.0, 1.0, How("hand", "trapezoid", 4), counter)
    h, M, eye = 0.25, module.A.detach(), torch.eye(2)
    step = torch.linalg.solve(eye - h / 2 * M, eye + h / 2 * M)
    want = y0.T
    for _ in range(4):
        want = step @ want
    assert torch.allclose(field.to_user(y1), want.T, rtol=1e-10, atol=1e-12)
    assert counter.newton["forward"] > 0 and counter.linear_solves["forward"] > 0 and counter.counts["forward"] > 0
    run = lambda Aw: field.to_user(solve(field, (Aw,), field.to_engine(y0), 0.0, 1.0, How("hand", "kvaerno3", None, 1e-4)))  # noqa: E731
    assert torch.autograd.gradcheck(lambda Aw: run(Aw).sum(0), (module.A.detach().clone().requires_grad_(),),
                                    eps=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="direct or the checkpointed gradient"):
        How("hand", "kvaerno3", None, 1e-6, "adjoint")


@pytest.mark.parametrize("steps", [3, None])
def test_the_checkpointed_gradient_is_the_direct_one(steps):
    """One state a step kept, the stages recomputed in the backward pass: the same gradient as through every
    step's node (fixed steps and an adaptive solve's accepted steps)."""
    g = torch.Generator().manual_seed(1)
    W = (torch.randn(3, 3, generator=g) - 4 * torch.eye(3)).requires_grad_()
    y0 = torch.randn(5, 3, generator=g).requires_grad_()
    f = lambda t, y: torch.tanh(y @ W.T) + 0.1 * y @ W.T  # noqa: E731
    grads = []
    for checkpoint in (False, True):
        y1 = implicit.solve(f, (W,), y0, 0.0, 1.0, "kvaerno3", steps=steps, rtol=1e-4, checkpoint=checkpoint)
        grads.append(torch.autograd.grad((y1 ** 2).sum(), (y0, W)))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
