"""Models: parameter counts, identity at init, ResNet = Euler, ensemble members, saved-tensor counts."""
import pytest
import torch

from study.config import ModelConfig
from study.engine import solvers, stepper
from study.engine.instrument import activation_bytes
from study.engine.loss import loss_fn
from study.engine.models import Classifier, Dynamics, ResNetStack
from study.variants import VARIANTS, variant_config


def test_parameter_counts_match_the_article():
    assert Classifier(variant_config("euler"), [0]).param_count() == 18_906
    assert Classifier(variant_config("resnet"), [0]).param_count() == 364_236
    for name in VARIANTS:  # every ODE variant is the same network
        cfg = variant_config(name)
        assert Classifier(cfg, [0]).param_count() == {"resnet": 364_236, "ode": 18_906, "none": 596}[cfg.model]


@pytest.mark.parametrize("overrides", [{}, {"head": "linear"}, {"lift_dim": 2}, {"lift_dim": 2, "head": "linear"}])
@pytest.mark.parametrize("variant", ["euler", "no-flow", "resnet"])
def test_parameter_count_from_the_config_is_the_models(variant, overrides):
    """The hand count (config) against the module's tensors: no-flow is lift + head, the linear head d x 2 + 2."""
    cfg = variant_config(variant, **overrides)
    assert Classifier(cfg, [0, 1]).param_count() == cfg.param_count()
    if variant == "no-flow":
        d = cfg.lift_dim
        assert cfg.param_count() == 3 * d + (2 * d + 2 if cfg.head == "linear" else d * 64 + 64 + 130)


def test_no_flow_is_the_head_on_the_lift():
    m = Classifier(variant_config("no-flow", head="linear"), [4])
    x = torch.randn(1, 30, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0, yT = m.features(x)
        assert torch.equal(y0, yT) and m.counter.counts["forward"] == 0
        assert torch.allclose(m(x), m.head1(m.lift(x)))


@pytest.mark.parametrize("variant", ["euler", "rk4", "resnet", "tdq-dopri5"])
def test_zero_init_is_the_identity_flow(variant):
    m = Classifier(variant_config(variant), [3])
    x = torch.randn(1, 50, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lifted = m.lift(x)
        # dopri5's dense output at t = 1 is an interpolant: exact up to rounding
        assert (m.core(lifted) - lifted).abs().max() <= (1e-5 if variant == "tdq-dopri5" else 0.0)


def test_random_init_is_not_the_identity():
    m = Classifier(variant_config("euler", zero_init=False), [3])
    x = torch.randn(1, 50, 2)
    with torch.no_grad():
        lifted = m.lift(x)
        assert (m.core(lifted) - lifted).abs().max() > 1e-3


def test_resnet_with_shared_blocks_is_exactly_euler():
    """The article's identity: h <- h + (1/N) f(t_i, h) with one shared f *is* forward Euler, bit for bit."""
    ode = Classifier(variant_config("euler", zero_init=False), [0])
    f = ode.core.func
    stack = ResNetStack(ModelConfig(model="resnet", steps=20), members=1)
    stack.blocks = torch.nn.ModuleList([f] * 20)  # every block is the same dynamics network, fed t_i
    y0 = torch.randn(1, 128, 6)
    with torch.no_grad():
        euler = ode.core(y0)
        res = stack(y0)
        loop = stack(y0, trajectory_points=21)[-1]  # the blocks called one by one
        generic = stepper.odeint_fixed(f, y0, 0.0, 1.0, 20, "euler")
    assert (euler - y0).abs().max() > 1e-2
    assert torch.equal(res, euler)
    assert torch.equal(loop, generic)
    assert (res - loop).abs().max() < 1e-6


@pytest.mark.parametrize("time_input", [False, True])
def test_resnet_engine_is_backprop_through_the_blocks(time_input):
    """float64: the fused ResNet (per-block weights) equals autograd through the block-by-block loop."""
    torch.manual_seed(0)
    m = Classifier(variant_config("resnet", steps=6, zero_init=False), [0, 1]).double()
    if time_input:  # per-block weights with a time input (block i at t_i), as the engine allows
        blocks = [Dynamics(2, 6, 128, time_input=True).double() for _ in range(6)]
        for b in blocks:
            b.counter = m.counter
            for p in b.parameters():
                torch.nn.init.uniform_(p, -0.3, 0.3)
        m.core.blocks = torch.nn.ModuleList(blocks)
    y0 = torch.randn(2, 40, 6, dtype=torch.float64, requires_grad=True)
    fused_out = m.core(y0)
    loop_out = m.core(y0, trajectory_points=7)[-1]
    assert (fused_out - loop_out).abs().max() < 1e-12 and (loop_out - y0).abs().max() > 0.1
    w = torch.randn_like(fused_out)
    wrt = [y0, *m.core.parameters()]
    g_fused = torch.autograd.grad((fused_out * w).sum(), wrt)
    g_loop = torch.autograd.grad((loop_out * w).sum(), wrt)
    for a, b in zip(g_fused, g_loop):
        assert (a - b).abs().max() <= 1e-12 * max(1.0, float(b.abs().max()))
    assert m.counter.counts["forward"] == 6 + 6


def test_ensemble_members_are_independent_models():
    cfg = variant_config("euler", zero_init=False)
    ens = Classifier(cfg, [0, 1, 2])
    alone = Classifier(cfg, [1])
    for a, b in zip(ens.member(1).parameters(), alone.parameters()):
        assert torch.equal(a, b)  # initialisation does not depend on the other members
    x = torch.randn(3, 40, 2)
    with torch.no_grad():
        out = ens(x)
        assert (out[1] - alone(x[1:2])[0]).abs().max() < 1e-5
        assert (out[0] - out[1]).abs().max() > 1e-3


def hand_count(steps: int, stages: int, B=128, d=6, H=128, head=64) -> int:
    """Saved-tensor bytes of one training step, counted by hand (float32, int64 targets).

    Lift saves its input x (B x 2).  Every dynamics evaluation saves its input
    state (B x d) and its two tanh outputs (B x H each; the next linear layer
    saves the same tensor).  The head saves the final state (B x d) and the
    ReLU output (B x head); cross-entropy saves the log-softmax (B x 2), the
    int64 targets (B) and a scalar total weight.
    """
    per_eval = B * d + 2 * B * H
    floats = B * 2 + steps * stages * per_eval + B * d + B * head + B * 2
    return 4 * floats + 8 * B + 4


@pytest.mark.parametrize("variant,method,stages", [("euler", "euler", 1), ("rk4", "rk4", 4), ("rk4-38", "rk4-38", 4),
                                                   ("euler", "midpoint", 2), ("resnet", "euler", 1),
                                                   ("tdq-euler", "euler", 1), ("tdq-rk4", "rk4-38", 4)])
@pytest.mark.parametrize("steps", [5, 20])
def test_activation_bytes_match_a_hand_count(variant, method, stages, steps):
    m = Classifier(variant_config(variant, method=method, steps=steps, zero_init=False), [0])
    x, y = torch.randn(1, 128, 2), torch.randint(0, 2, (1, 128))
    got = activation_bytes(m, x, y)
    if variant.startswith("tdq"):
        # torchdiffeq passes times as float32 tensors, which the dynamics' t * w_t saves: at most
        # the N+1 grid values and one 0-d tensor per intermediate stage time (0 < c < 1).
        inner = sum(0 < c < 1 for c in solvers.get_tableau(method).c)
        assert 0 < got - hand_count(steps, stages) <= 4 * (steps + 1) + 4 * steps * inner
    else:
        assert got == hand_count(steps, stages)


def test_adjoint_activation_bytes_do_not_grow_with_steps():
    x, y = torch.randn(1, 128, 2), torch.randint(0, 2, (1, 128))
    direct = [activation_bytes(Classifier(variant_config("tdq-euler", steps=n), [0]), x, y) for n in (5, 10, 40)]
    adjoint = [activation_bytes(Classifier(variant_config("adjoint-euler", steps=n), [0]), x, y) for n in (5, 10, 40)]
    assert direct[0] < direct[1] < direct[2]
    assert adjoint[0] == adjoint[1] == adjoint[2] < direct[0]


def test_sigmoid_evaluation_equals_the_tanh_network():
    """f uses tanh(z) = 2 sigmoid(2z) - 1 with folded biases: the same function and gradients up to rounding."""
    torch.manual_seed(0)
    m = Classifier(variant_config("euler", zero_init=False), [0, 1])
    f = m.core.func
    y = torch.randn(2, 64, 6, requires_grad=True)
    for t in (0.0, 0.35, 1.0):
        fast, ref = f(t, y), f.reference(t, y)
        assert (fast - ref).abs().max() < 1e-6 * max(1.0, float(ref.detach().abs().max()))
        w = torch.randn_like(ref)
        g_fast = torch.autograd.grad((fast * w).sum(), [y, *f.parameters()])
        g_ref = torch.autograd.grad((ref * w).sum(), [y, *f.parameters()])
        for a, b in zip(g_fast, g_ref):
            assert (a - b).abs().max() < 1e-5 * max(1.0, float(b.abs().max()))
    per_call = f(0.5, y)
    with f.prepared():  # weights prepared once per solve give the same values as per call
        assert torch.equal(f(0.5, y), per_call)
    assert not f.holds_prepared


def test_adjoint_gradients_match_direct_backprop_and_never_use_stale_weights():
    x, y = torch.randn(1, 128, 2, generator=torch.Generator().manual_seed(1)), torch.randint(0, 2, (1, 128))
    direct = Classifier(variant_config("tdq-rk4", steps=40, zero_init=False), [0])
    adjoint = Classifier(variant_config("adjoint-rk4", steps=40, zero_init=False), [0])
    adjoint.load_state_dict(direct.state_dict())
    for _ in range(2):  # the second round runs after a weight update: prepared weights must be fresh
        grads = []
        for m in (direct, adjoint):
            m.zero_grad()
            loss_fn(m(x), y).backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
        assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-4
        assert not adjoint.core.func.holds_prepared
        with torch.no_grad():
            for m in (direct, adjoint):
                for p in m.parameters():
                    p.add_(0.05 * torch.sin(torch.arange(p.numel(), dtype=p.dtype)).reshape(p.shape))
