"""The density task: its data, the CNF field's divergence and hand VJP, the change of variables, the mass and the
entropy floor, each against an independent reference (autograd, a closed form, numerical quadrature)."""
import math

import numpy as np
import pytest
import torch

from study.engine import field as fields
from study.tasks import density as D
from tests.helpers import step_node_passes_gradcheck

SMALL = dict(iterations=3, n_train=256, n_val=32, n_test=64, batch_size=32, eval_every=1, grid=8, n_samples=16,
             hidden=6)


def raw_weights(S=2, H=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = ((H, 2), (H,), (H,), (H, H), (H,), (H,), (2, H), (2,))
    return [torch.randn(S, *s, generator=g, dtype=dtype) / (2 if s == (H, H) else 1) for s in shapes]


def plain_field(raw, s, t, z):
    """Member ``s``'s field at one point ``z`` (2,), written plainly for autograd."""
    W1, b1, u1, W2, b2, u2, W3, b3 = (w[s] for w in raw)
    h1 = torch.tanh(W1 @ z + b1 + t * u1)
    return W3 @ torch.tanh(W2 @ h1 + b2 + t * u2) + b3


def test_the_divergence_is_the_trace_of_autograd_s_jacobian_and_the_field_its_plain_value():
    raw = raw_weights()
    y = torch.randn(2, 3, 7, dtype=torch.float64)
    out = D.EXACT.forward(y, 0.3, D.EXACT.fold(raw))[0]
    for s in range(2):
        for b in range(7):
            z = y[s, :2, b]
            J = torch.autograd.functional.jacobian(lambda v: plain_field(raw, s, 0.3, v), z)
            assert float(out[s, 2, b]) == pytest.approx(float(J.trace()), abs=1e-12)
            assert torch.allclose(out[s, :2, b], plain_field(raw, s, 0.3, z), atol=1e-13)


@pytest.mark.parametrize("t", [0.3, "member"])
@pytest.mark.parametrize("probe", [False, True])
def test_the_cnf_field_s_hand_vjp_passes_gradcheck(t, probe):
    """Through the divergence's second derivatives, for both divergences and per-member times."""
    raw = [w.requires_grad_() for w in raw_weights()]
    y = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64).view(2, 1, 1) if t == "member" else t
    F = D.CNFField(torch.randn(2, 2, 4, dtype=torch.float64)) if probe else D.EXACT
    assert torch.autograd.gradcheck(lambda y, *r: fields.evaluate(F, y, t, F.fold(r)), (y, *raw))


def test_vjp_into_accumulates_what_vjp_returns():
    raw = raw_weights()
    w = D.EXACT.fold(raw)
    y, g = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    f, saved = D.EXACT.forward(y, 0.4, w)
    tensors, meta = D.EXACT.backward_weights(w)
    gy, gw = D.EXACT.vjp(g, y, 0.4, saved, tensors, meta)
    acc = [torch.ones_like(x) for x in w]
    gy2 = D.EXACT.vjp_into(acc, g, y, 0.4, saved, tensors, meta)
    assert torch.equal(gy, gy2) and all(torch.allclose(a, 1 + b, atol=1e-15) for a, b in zip(acc, gw))
    assert torch.equal(gy[:, 2], torch.zeros_like(gy[:, 2]))  # the field does not read the log-density


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_a_step_node_on_the_cnf_field_passes_gradcheck(method):
    assert step_node_passes_gradcheck(D.EXACT, raw_weights(), torch.randn(*(2, 3, 3), dtype=torch.float64), method)


def test_hutchinson_s_estimate_is_unbiased_with_the_variance_of_its_closed_form():
    """For Gaussian probes, E[e^T J e] = tr J and Var = ||J||_F^2 + tr(J^2) (= 2 ||sym J||_F^2)."""
    raw = raw_weights(S=1)
    z = torch.randn(1, 3, 1, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: plain_field(raw, 0, 0.5, v), z[0, :2, 0])
    n = 40_000
    probe = torch.randn(1, 2, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    est = D.CNFField(probe).forward(z.expand(1, 3, n).contiguous(), 0.5, D.EXACT.fold(raw))[0][0, 2]
    var = float((J * J).sum() + (J @ J).trace())
    assert float(est.mean()) == pytest.approx(float(J.trace()), abs=4 * math.sqrt(var / n))
    assert float(est.var()) == pytest.approx(var, rel=0.05)


def linear_flow(A: np.ndarray, c: np.ndarray, cfg_variant="hand-dopri5"):
    """A flow whose field is (nearly exactly) the linear ``f(z) = A z + c``: a tanh network in its linear range
    cannot be that, so the test builds one with tiny first-layer weights and undoes their scale in the last."""
    eps = 1e-6
    flow = D.Flow(D.model_config(cfg_variant), [0], hidden=2, dtype=torch.float64)
    W1, b1, u1, W2, b2, u2, W3, b3 = flow.params
    with torch.no_grad():
        for p in flow.params:
            p.zero_()
        W1[0] = torch.eye(2, dtype=torch.float64) * eps
        W2[0] = torch.eye(2, dtype=torch.float64)
        W3[0] = torch.as_tensor(A) / (eps * (1 - 0.0))  # tanh(tanh(eps z)) = eps z + O(eps^3)
        b3[0] = torch.as_tensor(c)
    return flow


def test_the_change_of_variables_on_a_linear_field_is_exact():
    """dz/dt = A z + c over [0, 1]: z(1) = e^A x + (int_0^1 e^{As} ds) c and log p(x) = log N(z(1)) + tr A."""
    from scipy.linalg import expm

    A, c = np.array([[0.3, -1.0], [0.5, -0.4]]), np.array([0.2, -0.1])
    flow = linear_flow(A, c)
    x = np.random.default_rng(0).standard_normal((50, 2))
    cfg = D.reference_config(flow.cfg)
    lp, _ = D.log_likelihoods(flow, x, cfg)
    E = expm(A)
    integral = np.linalg.solve(A, E - np.eye(2))
    z1 = x @ E.T + integral @ c
    exact = -0.5 * (z1 ** 2).sum(1) - math.log(2 * math.pi) + np.trace(A)
    assert np.abs(lp[0] - exact).max() < 1e-6


def test_a_known_flow_s_mass_is_one_to_the_lattice_s_error():
    """A linear flow contracting by 0.8 per unit time carries N(0, I) to N(0, e^{1.6} I)... its density's mass
    on the lattice is the Gaussian's mass in the box, computed by the lattice's midpoint rule independently."""
    from scipy.special import ndtr

    A = np.array([[-0.8, 0.0], [0.0, -0.8]])
    flow = linear_flow(A, np.zeros(2))
    P = D.Protocol(grid=60)
    points, area = D.lattice(P)
    lp, _ = D.log_likelihoods(flow, points, D.reference_config(flow.cfg))
    mass = float(np.exp(lp[0]).sum() * area)
    sd = math.exp(0.8)  # x = e^{0.8} z
    inside = (ndtr(D.BOX / sd) - ndtr(-D.BOX / sd)) ** 2
    assert mass == pytest.approx(inside, abs=2e-3)
    assert abs(mass - 1) > 0.01  # a wide density really loses mass outside the box: the test would see an error


def test_the_entropy_estimator_on_a_gaussian_and_the_densities_log_density_against_samples():
    """One Gaussian's entropy 1 + log(2 pi sigma^2) by the same Monte Carlo estimator; each density's log-density
    integrates to 1 over its region and its samples fall where it is large."""
    rng = np.random.default_rng(3)
    sigma = 0.7
    x = rng.standard_normal((20_000, 2)) * sigma
    lp = -0.5 * (x ** 2).sum(1) / sigma ** 2 - math.log(2 * math.pi * sigma ** 2)
    h, se = float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(len(x)))
    assert abs(h - (1 + math.log(2 * math.pi * sigma ** 2))) < 4 * se
    c = np.linspace(-6, 6, 241)
    gx, gy = np.meshgrid(c, c)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    for name in ("8gaussians", "2spirals", "moons"):
        mass = np.exp(D.log_density(name, grid, nodes=800)).sum() * (c[1] - c[0]) ** 2
        assert mass == pytest.approx(1.0, abs=0.01), name
        pts = D.sample(name, 2000, np.random.default_rng(0))
        assert np.median(D.log_density(name, pts, nodes=800)) > np.log(0.02), name
    pts = D.sample("checkerboard", 2000, np.random.default_rng(0))
    assert np.isfinite(D.log_density("checkerboard", pts)).all() and D.entropy("checkerboard") == (math.log(32), 0.0)


def test_the_splits_are_independent_draws_and_fixed_by_the_data_seed():
    P = D.Protocol(**SMALL)
    tr, va, te = (D.data(P, s) for s in ("train", "val", "test"))
    assert tr.shape == (256, 2) and va.shape == (32, 2) and te.shape == (64, 2)
    assert not np.array_equal(tr[:32], va) and not np.array_equal(va, te[:32])
    assert np.array_equal(te, D.data(D.Protocol(**SMALL), "test"))
    assert not np.array_equal(te, D.data(D.Protocol(**{**SMALL, "data_seed": 1}), "test"))


def one_iteration(variant):
    """Loss and gradients of one training NLL of ``variant`` on the same weights and points (float64)."""
    cfg = D.model_config(variant)
    flow = D.Flow(cfg, [0] if cfg.adaptive else [0, 1], 6, dtype=torch.float64)
    with torch.no_grad():
        for p in flow.params:
            p.mul_(2.0)
    x = D._points(D.data(D.Protocol(**SMALL), "train")[:16], len(flow.seeds), flow.params[0])
    loss = -flow.log_likelihood(x).mean()
    flow.counter.phase = "backward"
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in flow.params], flow.counter


@pytest.mark.parametrize("hand, tdq, tol", [
    ("euler", "tdq-euler", 1e-12), ("rk4-38", "tdq-rk4", 1e-12), ("rk4", "checkpoint-rk4", 1e-12),
    ("hand-dopri5", "tdq-dopri5", 1e-2),  # torchdiffeq also differentiates through its step sizes
    ("hand-dopri5", "checkpoint-dopri5", 1e-12), ("hand-adjoint-euler", "adjoint-euler", 1e-9),
    ("hand-adjoint-dopri5", "adjoint-dopri5", 1e-6),
    ("hand-adjoint-rk4", "checkpoint-rk4", 1e-3),  # the continuous adjoint: the discrete gradient to O(h^4)
])
def test_every_gradient_method_on_the_cnf_agrees_with_its_reference(hand, tdq, tol):
    la, ga, ca = one_iteration(hand)
    lb, gb, cb = one_iteration(tdq)
    assert la == pytest.approx(lb, rel=1e-10)
    for a, b in zip(ga, gb):
        assert float((a - b).norm() / b.norm()) < tol
    assert ca.counts["forward"] == cb.counts["forward"]


def test_training_lowers_the_nll_and_the_record_validates_and_carries_the_floor():
    from study import records
    from study.experiments import transfer_solvers

    P = D.Protocol(**{**SMALL, "iterations": 40, "eval_every": 20, "n_test": 128})
    cfg = D.model_config("rk4")
    configs = [D.run_config("rk4", cfg, P, s) for s in (0, 1)]
    recs, _ = D.train(configs, transfer=transfer_solvers(D.DEFAULT_STEPS))
    for rec in recs:
        records.validate(rec)
        m = rec["metrics"]
        assert rec["status"] == "ok" and rec["curves"]["val_nll"][-1] < rec["curves"]["val_nll"][0]
        assert m["nfe_forward"] == 40 * 4 * D.DEFAULT_STEPS
        assert m["entropy"] == pytest.approx(D.entropy("8gaussians")[0]) and m["gap"] == pytest.approx(
            m["nll"] - m["entropy"])
        rows = {r["solver"]: r for r in m["transfer"]}
        assert rows["rk4-8"]["nll"] == pytest.approx(m["nll_own"], rel=1e-6)
        assert rows["dopri5-1e-08-f64"]["nll"] == pytest.approx(m["nll"], abs=1e-6)
        assert rows["rk4-8"]["nfe"] == 4 * D.DEFAULT_STEPS
        assert len(rec["data"]["grid_log_density"]) == P.grid ** 2 and len(rec["data"]["samples"]) == P.n_samples
    alone, _ = D.train(configs[:1], transfer=transfer_solvers(D.DEFAULT_STEPS))
    strip = lambda r: {k: v for k, v in r["metrics"].items() if k != "wall_time_s"}  # noqa: E731
    assert strip(alone[0]) == strip(recs[0])  # seed 0 beside seed 1 is seed 0 alone
    assert alone[0]["curves"] == recs[0]["curves"] and alone[0]["data"] == recs[0]["data"]


def test_a_fixed_step_cnf_s_likelihood_is_not_its_density_s():
    """Under coarse Euler steps the reported log-likelihood is not a density's: its mass on the lattice differs
    from the reference solve's by more than the lattice's error (here a strongly rotating field)."""
    flow = D.Flow(D.model_config("euler", {"steps": 2}), [0], hidden=2, dtype=torch.float64)
    with torch.no_grad():
        for p in flow.params:
            p.zero_()
        flow.params[0][0] = torch.eye(2, dtype=torch.float64) * 1e-6
        flow.params[3][0] = torch.eye(2, dtype=torch.float64)
        flow.params[6][0] = torch.tensor([[0.0, -3.0], [3.0, 0.5]], dtype=torch.float64) / 1e-6
    points, area = D.lattice(D.Protocol(grid=60))
    own = float(np.exp(D.log_likelihoods(flow, points)[0][0]).sum() * area)
    ref = float(np.exp(D.log_likelihoods(flow, points, D.reference_config(flow.cfg))[0][0]).sum() * area)
    assert ref == pytest.approx(1.0, abs=0.02) and abs(own - ref) > 0.1


def test_protocols_and_densities_that_cannot_run_are_refused():
    for bad in (dict(iterations=0), dict(density="nope"), dict(batch_size=300, n_train=200), dict(lr=float("nan")),
                dict(t_end=0.0), dict(divergence="trace"), dict(grid=0), dict(data_seed=-1)):
        with pytest.raises(ValueError):
            D.Protocol(**bad).validate()
    with pytest.raises(ValueError):
        D.sample("nope", 3, np.random.default_rng(0))


@pytest.mark.parametrize("probe", [False, True])
def test_the_regularised_field_s_hand_vjp_passes_gradcheck(probe):
    """RNODE's two more rows (kinetic energy, Jacobian norm) and their second derivatives."""
    raw = [w.requires_grad_() for w in raw_weights()]
    y = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    F = D.CNFField(torch.randn(2, 2, 3, dtype=torch.float64) if probe else None, regularise=True)
    assert torch.autograd.gradcheck(lambda y, *r: fields.evaluate(F, y, 0.6, F.fold(r)), (y, *raw))


def test_the_regularisers_equal_their_closed_form_on_a_linear_field():
    """For dz/dt = A z + c over [0, 1]: int |Jacobian|_F^2 dt = |A|_F^2 exactly, and the kinetic energy is the
    integral of |A z(t) + c|^2 along the exact solution (scipy's quadrature)."""
    from scipy.integrate import quad
    from scipy.linalg import expm

    A, c = np.array([[0.3, -1.0], [0.5, -0.4]]), np.array([0.2, -0.1])
    flow = linear_flow(A, c)
    flow.field = D.CNFField(regularise=True)
    x = np.array([[0.7, -1.2], [0.1, 0.4]])
    with torch.no_grad():
        y1 = flow.end_state(D._points(x, 1, flow.params[0]), D.reference_config(flow.cfg))
    assert torch.allclose(y1[0, 4], torch.full((2,), float((A * A).sum()), dtype=torch.float64), atol=1e-8)
    for b in range(2):
        speed2 = lambda t: float(np.sum((A @ (expm(A * t) @ x[b] + np.linalg.solve(A, expm(A * t) - np.eye(2)) @ c)
                                         + c) ** 2))  # noqa: E731
        assert float(y1[0, 3, b]) == pytest.approx(quad(speed2, 0, 1, epsabs=1e-12)[0], rel=1e-7)


def test_remedies_are_named_in_their_configs_only_when_on_and_their_records_carry_the_weights():
    from study import records

    plain = D.run_config("rk4", D.model_config("rk4"), D.Protocol(), 0)
    assert not any(k in plain for k in D.REMEDIES)  # records made before the remedies keep their names
    P = D.Protocol(**{**SMALL, "iterations": 4, "kinetic": 0.01, "jacobian": 0.02, "steer": 0.3, "weight_decay": 0.01})
    cfg = D.model_config("hand-dopri5")
    (rec,), _ = D.train([D.run_config("hand-dopri5", cfg, P, 0)])
    records.validate(rec)
    assert {k: rec["config"][k] for k in D.REMEDIES} == {"kinetic": 0.01, "jacobian": 0.02, "steer": 0.3,
                                                         "weight_decay": 0.01}
    assert rec["status"] == "ok" and rec["metrics"]["nll"] is not None
    for bad in (dict(kinetic=-1.0), dict(steer=1.0), dict(weight_decay=float("inf"))):
        with pytest.raises(ValueError):
            D.Protocol(**bad).validate()


def test_steer_draws_end_times_around_t_end_the_same_for_every_seed():
    P = D.Protocol(**{**SMALL, "steer": 0.4})
    like = torch.zeros(1)
    a = D._Batches(D.data(P, "train"), [0, 1], P, like)
    b = D._Batches(D.data(P, "train"), [3], P, like)
    ta, tb = [a.end_time() for _ in range(200)], [b.end_time() for _ in range(200)]
    assert ta == tb and min(ta) >= 0.6 and max(ta) <= 1.4 and np.std(ta) > 0.15
    assert D._Batches(D.data(P, "train"), [0], D.Protocol(**SMALL), like).end_time() == 1.0


def test_a_run_whose_solver_gives_up_keeps_a_complete_record_with_the_iteration_it_failed_in():
    """max_num_steps = 1 makes dopri5 give up in the first iteration (it takes two steps at the start): the record says so, counts no completed
    iteration, evaluates nothing and validates."""
    from study import records

    P = D.Protocol(**{**SMALL, "iterations": 3})
    cfg = D.model_config("hand-dopri5", {"max_num_steps": 1})
    (rec,), _ = D.train([D.run_config("hand-dopri5", cfg, P, 0)])
    records.validate(rec)
    assert rec["status"] == "diverged" and "iteration 1:" in rec["reason"] and "max_num_steps" in rec["reason"]
    assert rec["metrics"]["iterations_completed"] == 0 and rec["metrics"]["nll"] is None
    assert rec["data"]["samples"] == [] and rec["metrics"]["reference_nfe"] is None


def test_the_paired_floor_is_the_held_out_points_own_cross_entropy():
    P = D.Protocol(**SMALL)
    lp = D.log_density(P.density, D.data(P, "test"))
    value, se = D.floor(P)
    assert value == pytest.approx(-lp.mean()) and se == pytest.approx(lp.std(ddof=1) / math.sqrt(len(lp)))
    assert abs(value - D.entropy(P.density)[0]) < 4 * math.hypot(se, D.entropy(P.density)[1])
