"""The dynamics task: its truth, windows, field, metrics and solves, each against an independent reference."""
import math

import numpy as np
import pytest
import torch

from study.engine import field as fields
from study.engine import stepper
from study.engine.solvers import EMBEDDED
from study.tasks import dynamics as D
from study.tasks.dynamics.cubic import CUBIC, CUBIC_RNODE
from study.tasks.trajectory import data as TD
from study.tasks.trajectory import fit as TF
from tests.helpers import step_node_passes_gradcheck

SMALL = dict(iterations=3, n_points=200, eval_every=1, grid=12)


def test_the_truth_agrees_with_two_independent_solves():
    """scipy's DOP853 (the truth) against torchdiffeq's dopri5 and the hand engine's, both float64 at 1e-12."""
    import torchdiffeq

    P = D.Protocol()
    t = D.times(P)[0]
    y = D.truth(t)
    A = torch.tensor(D.A)
    f = lambda _, s: (s ** 3) @ A  # noqa: E731
    ref = torchdiffeq.odeint(f, torch.tensor(D.Y0).view(1, 2), torch.tensor(t[:201]), method="dopri5", rtol=1e-12,
                             atol=1e-12)
    assert np.abs(ref[:, 0].numpy() - y[:201]).max() < 1e-8
    (hand,) = stepper.adaptive(lambda _, s: ((s[0] ** 3) @ A,), EMBEDDED["dopri5"], (torch.tensor(D.Y0).view(1, 2),),
                               0.0, float(t[200]), stepper.Control(1e-12, 1e-12, 10**6))
    assert np.abs(hand[0].numpy() - y[200]).max() < 1e-8
    assert y[0].tolist() == [2.0, 0.0] and len(y) == 1000 and t[-1] == 25.0


def test_observations_carry_their_seed_s_noise_and_none_by_default():
    P = D.Protocol(n_points=100)
    clean = D.observations(P, 0)
    assert np.allclose(clean, D.truth(D.times(P)[0]).astype(np.float32))
    noisy = [D.observations(D.Protocol(n_points=100, noise=0.1), s) for s in (0, 0, 1)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], noisy[2])
    assert abs(float((noisy[0] - clean).std()) - 0.1) < 0.02


def test_windows_are_drawn_without_replacement_and_read_the_observations():
    P = D.Protocol(n_points=60, batch_size=50, batch_time=10)
    obs = torch.as_tensor(np.stack([D.observations(P, s) for s in (0, 1)]))
    gens = [TD.rng(D.system, s, TD.STREAM_WINDOWS) for s in (0, 1)]
    y0, target = TF.batch(obs, gens, P)
    assert y0.shape == (2, 2, 50) and target.shape == (10, 2, 2, 50)
    for s in range(2):  # each window is ten consecutive observations from a start in range, starts distinct
        starts = [int(np.flatnonzero((obs[s] == y0[s, :, b]).all(1))[0]) for b in range(50)]
        assert len(set(starts)) == 50 and max(starts) < 50
        for b, st in enumerate(starts):
            assert torch.equal(target[:, s, :, b], obs[s, st: st + 10])
    again = TF.batch(obs, [TD.rng(D.system, 0, TD.STREAM_WINDOWS)], P)[0]
    assert torch.equal(again[0], y0[0])  # a member's windows depend on its seed alone


def test_metrics_of_a_perfect_field_and_of_the_field_of_the_wrong_sign():
    """A perfect model scores 0; the field of the wrong sign has field error exactly 2 and the trajectory error of
    the time-reversed solution, computed here by scipy (over [0, 1]: backward in time the cubic field blows up
    near t = 1.25, where the reference solve then fails)."""
    from scipy.integrate import solve_ivp

    P = D.Protocol()
    pts = D.field_grid(P)
    assert D.field_error(D.true_field(pts), pts) == 0.0
    assert D.field_error(-D.true_field(pts), pts) == pytest.approx(2.0, abs=1e-12)
    t = np.linspace(0.0, 1.0, 20)
    A = torch.tensor(D.A)
    good, _, _ = D.rollout(lambda y: ((y.transpose(1, 2) ** 3) @ A).transpose(1, 2), t)
    assert D.rms_distance(good, D.truth(t)) < 1e-6
    bad, _, _ = D.rollout(lambda y: -((y.transpose(1, 2) ** 3) @ A).transpose(1, 2), t)
    back = solve_ivp(lambda _, y: -D.true_field(y), (0, t[-1]), D.Y0, method="DOP853", t_eval=t, rtol=1e-11,
                     atol=1e-12).y.T
    assert D.rms_distance(bad, D.truth(t)) == pytest.approx(D.rms_distance(back, D.truth(t)), rel=1e-5)
    assert D.rms_distance(bad, D.truth(t)) > 0.5


def test_the_field_grid_holds_the_data_s_region():
    P = D.Protocol()
    pts, y = D.field_grid(P), D.truth(D.times(P)[0])
    d = np.sqrt(((pts[:, None] - y[None]) ** 2).sum(-1)).min(1)
    assert len(pts) > 200 and d.max() <= P.band + 1e-12
    assert len(D.field_grid(P, 15, masked=False)) == 225


def cubic_weights(S=2, H=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((S, H, 2), (S, H), (S, 2, H), (S, 2))]


@pytest.mark.parametrize("t", [0.3, "per-member"])
def test_the_cubic_field_s_vjp_passes_gradcheck(t):
    w = CUBIC.fold(cubic_weights())
    leaves = [x.detach().requires_grad_() for x in w]
    y = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.2, 0.9], dtype=torch.float64).view(2, 1, 1) if t == "per-member" else t
    assert torch.autograd.gradcheck(lambda y, *ws: fields.evaluate(CUBIC, y, t, ws), [y, *leaves])
    W1, b1, W2, b2 = cubic_weights()
    ref = W2 @ torch.tanh(W1 @ y ** 3 + b1.unsqueeze(-1)) + b2.unsqueeze(-1)
    assert torch.allclose(fields.evaluate(CUBIC, y, t, CUBIC.fold(cubic_weights())), ref, atol=1e-12)


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_a_step_node_on_the_cubic_field_passes_gradcheck(method):
    assert step_node_passes_gradcheck(CUBIC, cubic_weights(), torch.randn(*(2, 2, 4), dtype=torch.float64), method)


def one_iteration(variant, dtype=torch.float64):
    """Loss and gradients of one training iteration of ``variant`` on the same weights and windows."""
    cfg = D.model_config(variant)
    P = D.Protocol(**SMALL)
    flow = D.Flow(cfg, [0] if cfg.adaptive else [0, 1], 8, dtype=dtype)
    with torch.no_grad():
        for p in flow.params:
            p.mul_(5.0)  # a field whose solves need their steps
    obs = torch.as_tensor(np.stack([D.observations(P, s) for s in flow.seeds]), dtype=dtype)
    y0, target = TF.batch(obs, [TD.rng(D.system, s, TD.STREAM_WINDOWS) for s in flow.seeds], P)
    pred = flow.solve(y0, [float(x) for x in D.times(P)[0][: P.batch_time]])
    loss = (pred - target).abs().mean()
    flow.counter.phase = "backward"
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in flow.params], flow.counter


@pytest.mark.parametrize("hand, tdq, tol", [
    ("euler", "tdq-euler", 1e-12), ("rk4-38", "tdq-rk4", 1e-12), ("rk4", "checkpoint-rk4", 1e-12),
    ("hand-dopri5", "tdq-dopri5", 1e-2),  # torchdiffeq also differentiates through its step sizes
    ("hand-dopri5", "checkpoint-dopri5", 1e-12), ("hand-adjoint-euler", "adjoint-euler", 1e-9),
    ("hand-adjoint-dopri5", "adjoint-dopri5", 1e-7),
    ("hand-adjoint-rk4", "checkpoint-rk4", 1e-3),  # the continuous adjoint: the discrete gradient to O(h^4)
])
def test_every_gradient_method_on_the_task_agrees_with_its_reference(hand, tdq, tol):
    """The hand engine's solves on the task's field against torchdiffeq's (the same arithmetic: the same loss and
    gradient), and the continuous adjoints against the discretisation's exact gradient (close at these steps)."""
    la, ga, ca = one_iteration(hand)
    lb, gb, cb = one_iteration(tdq)
    assert la == pytest.approx(lb, rel=1e-10)
    for a, b in zip(ga, gb):
        assert float((a - b).norm() / b.norm()) < tol
    assert ca.counts["forward"] == cb.counts["forward"]


def test_training_improves_the_field_and_the_record_validates():
    from study import records

    cfg = D.model_config("rk4")
    P = D.Protocol(iterations=60, n_points=200, eval_every=20, grid=12)
    configs = [D.run_config("rk4", cfg, P, s) for s in (0, 1)]
    recs, _ = D.train(configs)
    for rec in recs:
        records.validate(rec)
        c = rec["curves"]["field_err"]
        assert rec["status"] == "ok" and c[-1] < c[0] and len(c) == 3
        assert rec["metrics"]["nfe_forward"] == 60 * (P.batch_time - 1) * 4
    alone, _ = D.train(configs[:1])
    strip = lambda r: {k: v for k, v in r["metrics"].items() if k != "wall_time_s"}  # noqa: E731
    assert strip(alone[0]) == strip(recs[0])  # seed 0 beside seed 1 is seed 0 alone


def test_transfer_rows_agree_with_the_task_s_own_metrics():
    """The row of the training solver is the training solver's own rollout error; the float64 reference row is
    the reference rollout's error (to its tolerance)."""
    from study.experiments import transfer_solvers

    cfg = D.model_config("euler")
    P = D.Protocol(iterations=20, n_points=200, eval_every=10, grid=12)
    (rec,), _ = D.train([D.run_config("euler", cfg, P, 0)], transfer=transfer_solvers(1))
    rows = {r["solver"]: r for r in rec["metrics"]["transfer"]}
    assert rows["euler-1"]["traj_err"] == pytest.approx(rec["metrics"]["traj_err_own"], rel=1e-12)
    assert rows["dopri5-1e-08-f64"]["traj_err"] == pytest.approx(rec["metrics"]["traj_err"], abs=1e-5)
    assert rows["euler-1"]["nfe"] == P.n_points - 1 and rows["rk4-1"]["nfe"] == 4 * (P.n_points - 1)


def test_protocols_that_cannot_run_are_refused():
    for bad in (dict(iterations=0), dict(batch_time=1), dict(n_points=20, batch_size=20), dict(noise=-1.0),
                dict(lr=float("nan")), dict(optimizer="sgd"), dict(t_end=0.0)):
        with pytest.raises(ValueError):
            D.Protocol(**bad).validate()
    assert math.isfinite(D.Protocol().lr)


def test_the_regularised_cubic_field_s_integrands_are_autograd_s_and_its_vjp_passes_gradcheck():
    """RNODE's rows: |f|^2 and the squared Frobenius norm of autograd's Jacobian; the hand VJP through both."""
    raw = [w.requires_grad_() for w in cubic_weights()]
    F = CUBIC_RNODE
    y = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    out = F.forward(y.detach(), 0.0, F.fold([w.detach() for w in raw]))[0]
    for s in range(2):
        for b in range(3):
            plain = lambda z: CUBIC.forward(z.view(1, 2, 1).expand(2, 2, 1).contiguous(), 0.0,  # noqa: E731
                                               CUBIC.fold([w.detach() for w in raw]))[0][s, :, 0]
            J = torch.autograd.functional.jacobian(plain, y.detach()[s, :2, b])
            f = plain(y.detach()[s, :2, b])
            assert torch.allclose(out[s, :2, b], f, atol=1e-13)
            assert float(out[s, 2, b]) == pytest.approx(float((f * f).sum()), rel=1e-12)
            assert float(out[s, 3, b]) == pytest.approx(float((J * J).sum()), rel=1e-12)
    assert torch.autograd.gradcheck(lambda y, *r: fields.evaluate(F, y, 0.0, F.fold(r)), (y, *raw))


def test_remedies_are_named_in_dynamics_configs_only_when_on_and_change_training():
    from study import records

    cfg = D.model_config("rk4")
    plain = D.run_config("rk4", cfg, D.Protocol(), 0)
    assert not any(k in plain for k in D.REMEDIES)
    base = dict(iterations=5, n_points=200, eval_every=5, grid=12)
    for over in ({"kinetic": 0.05, "jacobian": 0.05}, {"weight_decay": 0.5}):
        P = D.Protocol(**base, **over)
        (rec,), _ = D.train([D.run_config("rk4", cfg, P, 0)])
        (ref,), _ = D.train([D.run_config("rk4", cfg, D.Protocol(**base), 0)])
        records.validate(rec)
        assert all(rec["config"][k] == v for k, v in over.items()) and rec["status"] == "ok"
        assert rec["metrics"]["field_err"] != ref["metrics"]["field_err"]  # the remedy acted
    with pytest.raises(ValueError):
        D.Protocol(kinetic=-0.1).validate()


@pytest.mark.parametrize("hand, tdq, tol", [("rk4-38", "tdq-rk4", 1e-12), ("rk4", "checkpoint-rk4", 1e-12),
                                            ("hand-adjoint-dopri5", "adjoint-dopri5", 1e-6)])
def test_the_regularised_objective_s_gradient_agrees_across_backends(hand, tdq, tol):
    """RNODE's objective differentiated by the hand engine (through the hand VJP's second derivatives) and by
    torchdiffeq (plain autograd through the same forward)."""
    def grads(variant):
        cfg = D.model_config(variant)
        flow = D.Flow(cfg, [0], 8, dtype=torch.float64)
        with torch.no_grad():
            for p in flow.params:
                p.mul_(5.0)
        flow.field = CUBIC_RNODE
        P = D.Protocol(**SMALL)
        obs = torch.as_tensor(np.stack([D.observations(P, 0)]), dtype=torch.float64)
        y0, target = TF.batch(obs, [TD.rng(D.system, 0, TD.STREAM_WINDOWS)], P)
        pred = flow.solve(torch.cat([y0, torch.zeros_like(y0)], 1), [float(x) for x in D.times(P)[0][:P.batch_time]])
        loss = (pred[:, :, :2] - target).abs().mean() + 0.1 * pred[-1, :, 2].mean() + 0.1 * pred[-1, :, 3].mean()
        loss.backward()
        return [p.grad.clone() for p in flow.params]

    for a, b in zip(grads(hand), grads(tdq)):
        assert float((a - b).norm() / b.norm()) < tol
