"""Hand-written solvers: order of convergence against an exact solution, agreement with torchdiffeq."""
import math

import numpy as np
import pytest
import torch
import torchdiffeq

from study.engine import solvers, stepper
from study.engine.models import Dynamics


def exact_problem():
    # y' = cos(t) * y + sin(t) * [1, -1] coupled: use a scalar-per-component linear ODE with a known solution.
    # y' = cos(t) y  ->  y(t) = y0 exp(sin t)
    f = lambda t, y: math.cos(t) * y  # noqa: E731
    y0 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    T = 2.0
    exact = y0 * math.exp(math.sin(T))
    return f, y0, T, exact


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4), ("rk4-38", 4)])
def test_order_of_convergence(method, order):
    f, y0, T, exact = exact_problem()
    steps = np.array([16, 32, 64, 128, 256])
    errs = [float((stepper.odeint_fixed(f, y0, 0.0, T, int(n), method) - exact).abs().max()) for n in steps]
    slope = np.polyfit(np.log(T / steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15, (method, slope, errs)
    assert solvers.TABLEAUS[method].order == order


def order_conditions(tab) -> dict[int, list[float]]:
    """Residuals of Butcher's order conditions up to order 4 (all must vanish up to the method's order)."""
    import numpy as np

    b, c = np.array(tab.b), np.array(tab.c)
    A = np.zeros((tab.stages, tab.stages))
    for i, row in enumerate(tab.a):
        A[i, : len(row)] = row
    return {1: [b.sum() - 1], 2: [b @ c - 1 / 2], 3: [b @ c**2 - 1 / 3, b @ A @ c - 1 / 6],
            4: [b @ c**3 - 1 / 4, (b * c) @ A @ c - 1 / 8, b @ A @ c**2 - 1 / 12, b @ A @ A @ c - 1 / 24]}


def test_tableaus_satisfy_the_order_conditions_of_their_order_only():
    """Each tableau meets Butcher's conditions up to its stated order and fails some of the next order's;
    the method table agrees with the tableaus on stages and order."""
    from study.config import METHODS

    for tab in solvers.TABLEAUS.values():
        conds = order_conditions(tab)
        for p in range(1, tab.order + 1):
            assert max(abs(r) for r in conds[p]) < 1e-14, (tab.name, p)
        if tab.order < 4:
            assert max(abs(r) for r in conds[tab.order + 1]) > 1e-3, tab.name
        method = next(m for m in METHODS.values() if m.tableau == tab.name)
        assert (method.stages, method.order) == (tab.stages, tab.order)


def test_tableaus_are_validated():
    with pytest.raises(ValueError, match="sum to 1"):
        solvers.Tableau("bad", (0.0,), ((),), (0.5,), 1)
    with pytest.raises(ValueError, match="explicit"):
        solvers.Tableau("bad", (0.0, 1.0), ((), (0.5, 0.5)), (0.5, 0.5), 1)
    with pytest.raises(ValueError, match="unknown fixed-step method"):
        solvers.get_tableau("rk45")


def test_trajectory_and_grid():
    f, y0, T, exact = exact_problem()
    traj = stepper.odeint_fixed(f, y0, 0.0, T, 10, "rk4", trajectory=True)
    assert traj.shape == (11, 3)
    assert torch.equal(traj[0], y0)
    assert torch.equal(traj[-1], stepper.odeint_fixed(f, y0, 0.0, T, 10, "rk4"))
    grid = solvers.time_grid(0.0, 1.0, 20)
    assert np.allclose(grid, torch.linspace(0, 1, 21, dtype=torch.float64).numpy(), atol=1e-15)
    with pytest.raises(ValueError):
        solvers.time_grid(0.0, 1.0, 0)


def random_dynamics(seed=0, dim=6):
    """The study's dynamics network with nn.Linear's default init everywhere (no zero last layer)."""
    torch.manual_seed(seed)
    f = Dynamics(1, dim, 128, time_input=True)
    with torch.no_grad():
        for name, p in f.named_parameters():
            bound = 1 / math.sqrt(p.shape[-1] + (1 if name.startswith("l1") else 0)) if name.endswith("weight") else 1 / math.sqrt(dim + 1)
            p.uniform_(-bound, bound)
    return f


@pytest.mark.parametrize("hand,tdq", [("euler", "euler"), ("rk4-38", "rk4"), ("midpoint", "midpoint")])
def test_hand_matches_torchdiffeq_forward_and_gradients(hand, tdq):
    """Same network, same inputs: float32 rounding only.

    Measured here (torch 2.13 CPU): forward max |diff| 2.4e-7 (euler), 4.8e-7 (rk4-38),
    gradients below 1e-6; the bound is 1e-6.
    """
    f = random_dynamics()
    y0 = torch.randn(1, 128, 6, requires_grad=True)
    out_hand = stepper.odeint_fixed(f, y0, 0.0, 1.0, 20, hand)
    out_tdq = torchdiffeq.odeint(f, y0, torch.linspace(0.0, 1.0, 21), method=tdq)[-1]
    assert (out_hand - y0).abs().max() > 0.1  # a non-trivial flow
    assert (out_hand - out_tdq).abs().max() <= 1e-6

    w = torch.randn_like(out_hand)
    g_hand = torch.autograd.grad((out_hand * w).sum(), [y0, *f.parameters()])
    g_tdq = torch.autograd.grad((out_tdq * w).sum(), [y0, *f.parameters()])
    for a, b in zip(g_hand, g_tdq):
        assert (a - b).abs().max() <= 1e-6 * max(1.0, b.abs().max())


def test_classic_rk4_differs_from_torchdiffeq_rk4():
    """torchdiffeq's 'rk4' is Kutta's 3/8 rule: it matches rk4-38 to rounding, not classic RK4."""
    f, y0, T, exact = exact_problem()
    func = lambda t, y: torch.cos(t) * y  # noqa: E731 - torchdiffeq passes t as a tensor
    classic = stepper.odeint_fixed(f, y0, 0.0, T, 2, "rk4")
    three_eighths = stepper.odeint_fixed(f, y0, 0.0, T, 2, "rk4-38")
    tdq = torchdiffeq.odeint(func, y0, torch.linspace(0.0, T, 3, dtype=torch.float64), method="rk4")[-1]
    assert (three_eighths - tdq).abs().max() < 1e-13
    assert (classic - tdq).abs().max() > 1e-4


def test_nfe_per_step_is_the_number_of_stages():
    for name, tab in solvers.TABLEAUS.items():
        f = random_dynamics()
        stepper.odeint_fixed(f, torch.zeros(1, 4, 6), 0.0, 1.0, 7, name)
        assert f.counter.counts["forward"] == 7 * tab.stages


def _report():  # python -c "import tests.test_solvers as t; t._report()" prints the measured differences
    for hand, tdq in [("euler", "euler"), ("rk4-38", "rk4")]:
        f = random_dynamics()
        y0 = torch.randn(1, 128, 6, requires_grad=True)
        a = stepper.odeint_fixed(f, y0, 0.0, 1.0, 20, hand)
        b = torchdiffeq.odeint(f, y0, torch.linspace(0.0, 1.0, 21), method=tdq)[-1]
        ga = torch.autograd.grad(a.sum(), [y0, *f.parameters()])
        gb = torch.autograd.grad(b.sum(), [y0, *f.parameters()])
        print(hand, float((a - b).abs().max()), max(float((x - y).abs().max()) for x, y in zip(ga, gb)))
