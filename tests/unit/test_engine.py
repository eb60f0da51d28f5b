"""The hand engine on its building block: one evaluation's VJP, adaptive dopri5, the checkpointed and the
continuous adjoint, against autograd, torchdiffeq and exact solutions."""
import math

import pytest
import torch

from study.engine import evaluation as ev
from study.engine import field as fields
from study.engine import stepper
from study.engine.instrument import activation_bytes
from study.engine.loss import loss_fn
from study.engine.models import Classifier
from study.engine.solvers import EMBEDDED
from study.variants import variant_config


def random_weights(S=2, d=3, H=5, time_input=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(S, H, d), (S, H), (S, H), (S, H, H), (S, H), (S, d, H), (S, d)]
    raw = [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]
    if not time_input:
        raw[2] = None
    return raw


@pytest.mark.parametrize("time_input", [True, False])
@pytest.mark.parametrize("t", [0.3, "per-member"])
def test_one_evaluation_passes_gradcheck(time_input, t):
    w = ev.fold_weights(*random_weights(time_input=time_input))
    leaves = [None if x is None else x.detach().requires_grad_() for x in w]
    y = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.2, 0.9], dtype=torch.float64).view(2, 1, 1) if t == "per-member" else t
    inputs = [y] + [x for x in leaves if x is not None]

    def f(y, *ws):
        it = iter(ws)
        return fields.evaluate(fields.MLP, y, t, ev.Folded(*(None if x is None else next(it) for x in leaves)))

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
@pytest.mark.parametrize("per_member", [False, True])
def test_one_step_node_passes_gradcheck(method, per_member):
    """One step as one graph node (the direct and checkpointed solves' unit): its hand-written backward against
    finite differences, for every output (the new state and each stage derivative), with a given first stage
    (dopri5's first same as last) and with per-member times and step sizes."""
    from types import SimpleNamespace

    from study.engine import step_node
    from study.engine.solvers import TABLEAUS

    tab = EMBEDDED["dopri5"].tableau if method == "dopri5" else TABLEAUS[method]
    w = ev.fold_weights(*random_weights())
    leaves = [None if x is None else x.detach().requires_grad_() for x in w]
    y = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k0 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True) if method == "dopri5" else None
    counter = SimpleNamespace(counts={"forward": 0}, phase="forward")
    if per_member:
        t, dt, into = torch.tensor([0.1, 0.6], dtype=torch.float64), torch.tensor([0.3, 0.05], dtype=torch.float64), stepper.axpy_m
    else:
        t, dt, into = 0.2, 0.25, stepper.axpy

    def f(y, *rest):
        it = iter(rest[1:] if k0 is not None else rest)
        step = step_node.node_step(ev.Folded(*(None if x is None else next(it) for x in leaves)), counter, tab, into)
        y1, ks = step(t, (y,), None if k0 is None else (rest[0],), dt)
        return (y1[0], *(k[0] for k in ks[1 if k0 is not None else 0:]))

    inputs = [y] + ([k0] if k0 is not None else []) + [x for x in leaves if x is not None]
    assert torch.autograd.gradcheck(f, inputs)
    counter.counts["forward"] = 0
    f(*inputs)
    assert counter.counts["forward"] == tab.stages - (k0 is not None)  # counted where the evaluations happen


def test_evaluation_is_the_tanh_network():
    raw = random_weights()
    W1, b1, wt, W2, b2, W3, b3 = raw
    y = torch.randn(2, 3, 4, dtype=torch.float64)
    t = 0.4
    h = torch.tanh(W1 @ y + (b1 + t * wt).unsqueeze(-1))
    ref = W3 @ torch.tanh(W2 @ h + b2.unsqueeze(-1)) + b3.unsqueeze(-1)
    assert torch.allclose(fields.evaluate(fields.MLP, y, t, ev.fold_weights(*raw)), ref, atol=1e-12)
    f, gy, gw = fields.evaluate_vjp(fields.MLP, y, t, ev.fold_weights(*raw), torch.ones_like(ref))
    assert torch.allclose(f, ref, atol=1e-12)


def pair(f_of_t):
    return lambda t, s: (f_of_t(t, s[0]),)


def test_adaptive_error_scales_with_the_tolerance_as_torchdiffeqs_does():
    """y' = cos(t) y, y(0) = 1: y(2) = exp(sin 2).  The hand dopri5 lands where torchdiffeq's lands (the same
    steps), and its global error falls with the tolerance."""
    import torchdiffeq

    F = pair(lambda t, y: math.cos(t) * y)
    y0 = torch.ones(1, 1, 1, dtype=torch.float64)
    errors = []
    for tol in (1e-3, 1e-5, 1e-7, 1e-9):
        (y1,) = stepper.adaptive(F, EMBEDDED["dopri5"], (y0,), 0.0, 2.0, stepper.Control(tol, tol))
        ref = torchdiffeq.odeint(lambda t, y: torch.cos(t) * y, y0, torch.tensor([0.0, 2.0], dtype=torch.float64),
                                 rtol=tol, atol=tol, method="dopri5")[-1]
        assert abs(float(y1) - float(ref)) < 1e-13
        errors.append(abs(float(y1) - math.exp(math.sin(2.0))))
        assert errors[-1] < 20 * tol
    assert all(b < a / 10 for a, b in zip(errors, errors[1:]))  # 100x tighter: over 10x smaller


def models(variants_and_backends, scale=True, dtype=torch.float64, **over):
    """Models of the given (variant, backend overrides) on one set of weights, with a flow that needs steps."""
    base = Classifier(variant_config(variants_and_backends[0][0], zero_init=False, **over), [0]).to(dtype)
    if scale:
        with torch.no_grad():
            base.core.func.l3.weight.mul_(30)
            base.core.func.l2.weight.mul_(3)
    out = []
    for name, kw in variants_and_backends:
        m = Classifier(variant_config(name, zero_init=False, **over, **kw), [0]).to(dtype)
        m.load_state_dict(base.state_dict())
        out.append(m)
    return out


def grad_and_counts(m, x, y):
    m.counter.reset()
    m.zero_grad()
    m.counter.phase = "forward"
    loss = loss_fn(m(x), y)
    m.counter.phase = "backward"
    loss.backward()
    m.counter.phase = "forward"
    return torch.cat([p.grad.reshape(-1) for p in m.parameters()]), dict(m.counter.counts), m.counter.accepted, m.counter.rejected


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 128, 2, generator=g, dtype=torch.float64), torch.randint(0, 2, (1, 128), generator=g)


def test_hand_dopri5_follows_torchdiffeq_step_for_step(batch):
    x, y = batch
    hand, tdq = models([("tdq-dopri5", {"backend": "hand"}), ("tdq-dopri5", {})])
    with torch.no_grad():
        assert float((hand.core(hand.lift(x)) - tdq.core(tdq.lift(x))).abs().max()) < 1e-12
    (gh, ch, ah, rh), (gt, ct, at, rt) = grad_and_counts(hand, x, y), grad_and_counts(tdq, x, y)
    assert (ch, ah, rh) == (ct, at, rt) and ah >= 5  # the same evaluations, accepted and rejected steps
    # torchdiffeq also differentiates through its step sizes; the hand engine through the accepted steps only
    assert rel(gh, gt) < 1e-3


@pytest.mark.parametrize("method", ["euler", "rk4-38", "dopri5"])
def test_checkpointed_gradient_is_the_direct_gradient(batch, method):
    """Recomputing one step at a time gives backpropagation's gradient (fixed steps: the fused engine's)."""
    x, y = batch
    name = "tdq-dopri5" if method == "dopri5" else "tdq-euler"
    over = {} if method == "dopri5" else {"method": method, "steps": 7}
    direct, ckpt = models([(name, {"backend": "hand"}), (name, {"backend": "hand-checkpoint"})], **over)
    (gd, cd, _, _), (gc, cc, ac, _) = grad_and_counts(direct, x, y), grad_and_counts(ckpt, x, y)
    assert rel(gc, gd) < 1e-12 and cc["forward"] == cd["forward"]
    if method == "dopri5":
        assert cc["backward"] == 7 * ac  # each accepted step again: its first stage, then six
    else:
        assert cc["backward"] == cd["forward"]  # each step again, once


@pytest.mark.parametrize("variant", ["adjoint-euler", "adjoint-rk4", "adjoint-dopri5", "adjoint-dopri5-seminorm"])
def test_hand_adjoint_equals_torchdiffeqs_adjoint(batch, variant):
    x, y = batch
    over = {} if "dopri5" in variant else {"steps": 9}
    hand, tdq = models([(variant, {"backend": "hand-adjoint"}), (variant, {})], **over)
    (gh, ch, _, _), (gt, ct, _, _) = grad_and_counts(hand, x, y), grad_and_counts(tdq, x, y)
    assert rel(gh, gt) < 1e-10 and ch == ct


def test_activation_memory_of_the_three_gradient_methods():
    """Direct: every evaluation's activations; checkpointed: one state per step more; adjoint: constant."""
    x, y = torch.randn(1, 128, 2), torch.randint(0, 2, (1, 128))
    count = lambda kw, n: activation_bytes(Classifier(variant_config("euler", steps=n, **kw), [0]), x, y)  # noqa: E731
    ckpt = [count({"backend": "hand-checkpoint"}, n) for n in (5, 20, 80)]
    adj = [count({"backend": "hand-adjoint"}, n) for n in (5, 20, 80)]
    state = 128 * 6 * 4
    assert ckpt[1] - ckpt[0] == 15 * state and ckpt[2] - ckpt[1] == 60 * state
    assert adj[0] == adj[1] == adj[2] < ckpt[0] < count({}, 5)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_steps_in_one_node_steps_equal_the_fused_solve(batch, method):
    """The bench's one-node-step row computes what the fused fast path computes."""
    from study.runners.bench import StepNodeODE

    x, y = batch
    (fused,) = models([(method, {"steps": 6})], scale=False)
    generic = StepNodeODE(models([(method, {"steps": 6})], scale=False)[0])
    gf, cf, _, _ = grad_and_counts(fused, x, y)
    generic.zero_grad()
    loss_fn(generic(x), y).backward()
    gg = torch.cat([p.grad.reshape(-1) for p in generic.model.parameters()])
    assert rel(gg, gf) < 1e-12 and generic.counter.counts["forward"] == cf["forward"]


def test_torchodes_dopri5_row_solves_what_torchdiffeqs_solves():
    """The bench's torchode dopri5 row (the whole batch one instance) is the same solve as torchdiffeq's dopri5 on
    the same weights: the same evaluations, and the solution and gradient within the tolerance (torchode ends
    its last step at t = 1 where torchdiffeq steps past it and interpolates back)."""
    pytest.importorskip("torchode")
    from study.runners.bench import candidates

    c = candidates(20, 64, "cpu")
    ode, tdq = c["torchode-dopri5"], c["tdq-dopri5"]
    outs = []
    for cand in (ode, tdq):
        cand.model.zero_grad()
        cand.model.counter.reset()
        out = cand.model(cand.x)
        loss_fn(out, cand.y).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in (cand.model.model if cand is ode else cand.model).parameters()])
        outs.append((out.detach(), grad, cand.model.counter.counts["forward"]))
    (a, ga, na), (b, gb, nb) = outs
    tol = variant_config("tdq-dopri5").rtol
    assert na == nb > 6 and (a - b).abs().max() < tol and rel(ga, gb) < tol
