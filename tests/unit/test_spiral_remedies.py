"""The spiral's stiffness remedies: RNODE's field on the study's network, STEER's end times, weight decay."""
import dataclasses
import math

import pytest
import torch

from study.config import ModelConfig, Protocol, run_config, train_engine
from study.engine import field as fieldmod
from study.engine.models import Classifier
from study.engine.rnode import RegularisedMLP
from study.tasks.classification import fit
from study.variants import variant_config
from tests.helpers import step_node_passes_gradcheck

D, H, S, B = 3, 5, 2, 4


def _raw(time_input=True):
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return (r(S, H, D), r(S, H), r(S, H) if time_input else None, r(S, H, H) / 2, r(S, H), r(S, D, H), r(S, D))


def _textbook(raw, y, t):
    """``f`` of one member's point by the textbook tanh network (autograd reference)."""
    W1, b1, wt, W2, b2, W3, b3 = raw
    h = torch.tanh(W1 @ y + b1 + (0.0 if wt is None else t * wt))
    return W3 @ torch.tanh(W2 @ h + b2) + b3


@pytest.mark.parametrize("time_input", [True, False])
def test_rnode_integrands_are_the_kinetic_energy_and_the_exact_jacobian_norm(time_input):
    raw = _raw(time_input)
    fld = RegularisedMLP(D)
    y = torch.randn(S, D + 2, B, dtype=torch.float64)
    out = fieldmod.evaluate(fld, y, 0.3, fld.fold(raw))
    mlp = fieldmod.evaluate(fieldmod.MLP, y[:, :D].contiguous(), 0.3, fieldmod.MLP.fold(raw))
    assert torch.allclose(out[:, :D], mlp, atol=1e-12)  # the same network as the sigmoid-folded evaluation
    for s in range(S):
        one = tuple(None if w is None else w[s] for w in raw)
        for b in range(B):
            f = _textbook(one, y[s, :D, b], 0.3)
            J = torch.autograd.functional.jacobian(lambda v: _textbook(one, v, 0.3), y[s, :D, b])
            assert out[s, D, b].item() == pytest.approx(float(f @ f), rel=1e-12)
            assert out[s, D + 1, b].item() == pytest.approx(float((J * J).sum()), rel=1e-12)


def test_hutchinson_s_estimate_is_p_j_squared_and_unbiased():
    raw = _raw()
    y = torch.randn(S, D + 2, B, dtype=torch.float64)
    exact = fieldmod.evaluate(RegularisedMLP(D), y, 0.1, RegularisedMLP(D).fold(raw))[:, D + 1]
    g = torch.Generator().manual_seed(0)
    n = 4000
    est = torch.zeros_like(exact)
    for _ in range(n):
        p = torch.randn(S, D, B, generator=g, dtype=torch.float64)
        fld = RegularisedMLP(D, p)
        est += fieldmod.evaluate(fld, y, 0.1, fld.fold(raw))[:, D + 1] / n
    assert torch.allclose(est, exact, rtol=0.1)  # E |J p|^2 = |J|_F^2 (the estimate's spread is about 3% here)


@pytest.mark.parametrize("probe,jacobian,time_input", [(False, True, True), (True, True, False), (False, False, True)])
def test_the_rnode_field_s_hand_vjp_passes_gradcheck(probe, jacobian, time_input):
    raw = _raw(time_input)
    fld = RegularisedMLP(D, torch.randn(S, D, B, dtype=torch.float64) if probe else None, jacobian=jacobian)
    w = [None if x is None else x.detach().requires_grad_() for x in fld.fold(raw)]
    leaves = [x for x in w if x is not None]
    y = torch.randn(S, D + 2, B, dtype=torch.float64, requires_grad=True)

    def f(y, *ws):
        it = iter(ws)
        return fieldmod.evaluate(fld, y, 0.7, tuple(None if x is None else next(it) for x in w))

    assert torch.autograd.gradcheck(f, [y, *leaves])


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_a_step_node_on_the_rnode_field_passes_gradcheck(method):
    fld = RegularisedMLP(D, torch.randn(S, D, B, dtype=torch.float64))
    assert step_node_passes_gradcheck(fld, _raw(), torch.randn(S, D + 2, B, dtype=torch.float64), method)


def _objective_grads(backend: str, method: str, P: Protocol) -> list[torch.Tensor]:
    """The remedied objective's gradient on one batch of a 2-member model in float64 (the probe and end time
    fixed)."""
    cfg = ModelConfig(backend=backend, method=method, steps=4, hidden=8, zero_init=False,
                      **({"rtol": 1e-9, "atol": 1e-9} if method == "dopri5" else {}))
    model = Classifier(cfg, [0, 1]).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    probe = torch.randn(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    logits, E, F = model.remedied(x, 1.3, RegularisedMLP(6, probe))
    (logits.square().sum() + P.kinetic * E.sum() + P.jacobian * F.sum()).backward()
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize("hand,tdq,tol", [
    (("hand", "rk4-38"), ("torchdiffeq", "rk4-38"), 1e-11),  # the same arithmetic: equal to rounding
    (("hand-checkpoint", "rk4-38"), ("torchdiffeq", "rk4-38"), 1e-11),
    (("hand", "dopri5"), ("torchdiffeq", "dopri5"), 1e-6),  # both near the exact gradient at 1e-9
    (("hand-adjoint", "dopri5"), ("torchdiffeq-adjoint", "dopri5"), 1e-6),
])
def test_the_remedied_objective_s_gradient_agrees_with_torchdiffeq(hand, tdq, tol):
    P = Protocol(kinetic=0.3, jacobian=0.2, steer=0.5)
    for a, b in zip(_objective_grads(*hand, P), _objective_grads(*tdq, P)):
        assert torch.allclose(a, b, rtol=tol, atol=tol)


def test_remedies_are_named_only_when_on_and_name_the_engine_that_ran():
    cfg = variant_config("rk4")
    plain = run_config(cfg, Protocol(), 0)
    assert not {"kinetic", "jacobian", "steer", "weight_decay"} & set(plain)
    assert plain["engine"] == cfg.engine == "fused-1"
    rnode = run_config(cfg, Protocol(kinetic=0.01, jacobian=0.01), 0)
    assert rnode["kinetic"] == rnode["jacobian"] == 0.01 and rnode["engine"] == "step-1+rnode-1"
    assert run_config(cfg, Protocol(steer=0.5), 0)["engine"] == "step-1"
    assert run_config(cfg, Protocol(weight_decay=0.01), 0)["engine"] == "fused-1"  # the optimiser, not the solve
    assert run_config(variant_config("tdq-dopri5"), Protocol(jacobian=0.1), 0)["engine"] == "torchdiffeq-1+rnode-1"


@pytest.mark.parametrize("bad", [{"kinetic": -0.1}, {"jacobian": math.nan}, {"steer": 1.0}, {"weight_decay": math.inf},
                                 {"steer": True}])
def test_bad_remedy_weights_are_refused(bad):
    with pytest.raises(ValueError):
        Protocol(**bad).validate()


TINY = dict(epochs=2, n_train=64, batch_size=32, n_test=64, curve_test_points=64, eval_every=1)


def test_remedied_training_runs_and_each_remedy_changes_it():
    cfg = dataclasses.replace(variant_config("rk4"), steps=4, hidden=16)
    base = fit(cfg, Protocol(**TINY), [0])
    losses = {}
    for arm in ({"kinetic": 0.5, "jacobian": 0.5}, {"steer": 0.5}, {"weight_decay": 0.5}):
        h = fit(cfg, Protocol(**TINY, **arm), [0])
        assert not h.diverged and all(map(math.isfinite, h.curves["loss"][-1]))
        losses[tuple(arm)] = h.curves["loss"][-1][0]
    assert len({base.curves["loss"][-1][0], *losses.values()}) == 4


def test_an_rnode_seed_trained_beside_another_trains_as_alone():
    cfg = dataclasses.replace(variant_config("rk4"), steps=4, hidden=16)
    P = Protocol(**TINY, kinetic=0.1, jacobian=0.1)
    both, alone = fit(cfg, P, [0, 1]), fit(cfg, P, [1])
    assert both.curves["loss"][-1][1] == pytest.approx(alone.curves["loss"][-1][0], rel=1e-5)


def test_steer_trains_one_seed_at_a_time_and_remedies_need_a_flow():
    with pytest.raises(ValueError, match="one at a time"):
        fit(variant_config("rk4"), Protocol(**TINY, steer=0.5), [0, 1])
    with pytest.raises(ValueError, match="flow"):
        fit(variant_config("resnet"), Protocol(**TINY, kinetic=0.1), [0])
