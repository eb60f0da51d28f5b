"""The hand backend's fused solve: the same values and gradients as autograd through the generic solver."""
import contextlib

import pytest
import torch
import torchdiffeq

from study.engine import hand_solve as fused
from study.engine import solvers, stepper
from study.engine.loss import loss_fn
from study.engine.models import Classifier
from study.variants import variant_config


def network(method="euler", members=2, time_input=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cfg = variant_config("euler", method=method, steps=7, zero_init=False, time_input=time_input)
    return Classifier(cfg, list(range(members))).to(dtype).core.func


def grads(out, wrt, w):
    return torch.autograd.grad((out * w).sum(), wrt)


@pytest.mark.parametrize("method", list(solvers.TABLEAUS))
@pytest.mark.parametrize("time_input", [True, False])
def test_fused_solve_is_backprop_through_the_steps(method, time_input):
    """float64: the hand backward equals autograd through odeint_fixed to 1e-12 (measured: 7e-15)."""
    f = network(method, time_input=time_input)
    y0 = torch.randn(2, 50, 6, dtype=torch.float64, requires_grad=True)
    tab = solvers.get_tableau(method)
    ref = stepper.odeint_fixed(f, y0, 0.0, 1.0, 7, method)
    out = fused.solve(f, y0, tab, 7)
    assert (ref - y0).abs().max() > 0.1  # a non-trivial flow
    assert (out - ref).abs().max() < 1e-12
    w = torch.randn_like(ref)
    wrt = [y0, *f.parameters()]
    for a, b in zip(grads(out, wrt, w), grads(ref, wrt, w)):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-12 * max(1.0, float(b.abs().max()))
    held = dict(f.workspace.saved)
    with torch.no_grad():  # inference keeps no buffers and computes the same
        assert torch.equal(fused.solve(f, y0.detach(), tab, 7), out)
    with torch.inference_mode():
        assert torch.equal(fused.solve(f, y0.detach(), tab, 7), out)
    assert f.workspace.saved == held
    out2 = fused.solve(f, y0, tab, 7)  # and training after inference still works
    assert torch.equal(out2, out)


def test_fused_rk4_38_matches_torchdiffeq_rk4_in_float32():
    f = network("rk4-38", members=1, dtype=torch.float32)
    y0 = torch.randn(1, 128, 6, requires_grad=True)
    out = fused.solve(f, y0, solvers.get_tableau("rk4-38"), 7)
    ref = torchdiffeq.odeint(f, y0, torch.linspace(0.0, 1.0, 8), method="rk4")[-1]
    assert (out - ref).abs().max() <= 1e-6
    w = torch.randn_like(ref)
    wrt = [y0, *f.parameters()]
    for a, b in zip(grads(out, wrt, w), grads(ref, wrt, w)):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max()))


def test_reused_buffers_never_corrupt_a_pending_backward():
    f = network("rk4")
    tab = solvers.get_tableau("rk4")
    x1, x2 = (torch.randn(2, 30, 6, dtype=torch.float64) for _ in range(2))
    w = torch.randn(2, 30, 6, dtype=torch.float64)

    def alone(x):
        return torch.autograd.grad((fused.solve(f, x, tab, 7) * w).sum(), list(f.parameters()))

    expected = alone(x1), alone(x2)
    # Two solves before either backward: the second must not write into the first's buffers.
    o1, o2 = fused.solve(f, x1, tab, 7), fused.solve(f, x2, tab, 7)
    g2 = torch.autograd.grad((o2 * w).sum(), list(f.parameters()))
    g1 = torch.autograd.grad((o1 * w).sum(), list(f.parameters()))
    for got, want in ((g1, expected[0]), (g2, expected[1])):
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    # After a backward, and after a graph is dropped unused, the next solve reuses the buffers.
    ptr = lambda: next(iter(f.workspace.saved.values())).bufs[0].data_ptr()  # noqa: E731
    fused.solve(f, x1, tab, 7)
    first = ptr()
    alone(x2)
    assert ptr() == first and len(f.workspace.saved) == 1
    # A retained graph run again after a later solve took its buffers: an error, not wrong numbers,
    # also where saved-tensor hooks bypass autograd's version check.
    for hooks in (False, True):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t) if hooks else contextlib.nullcontext():
            o1 = fused.solve(f, x1, tab, 7)
            again = torch.autograd.grad((o1 * w).sum(), list(f.parameters()), retain_graph=True)
            assert all(torch.equal(a, b) for a, b in zip(again, torch.autograd.grad((o1 * w).sum(), list(f.parameters()), retain_graph=True)))
            alone(x2)
            with pytest.raises(RuntimeError, match="reused by a later solve"):
                torch.autograd.grad((o1 * w).sum(), list(f.parameters()))


def test_fused_counts_evaluations_in_the_current_phase():
    f = network("rk4", members=1)
    y0 = torch.randn(1, 10, 6, dtype=torch.float64)
    fused.solve(f, y0, solvers.get_tableau("rk4"), 7)
    f.counter.phase = "eval"
    with torch.no_grad():
        fused.solve(f, y0, solvers.get_tableau("rk4"), 7)
    assert f.counter.counts == {"forward": 28, "backward": 0, "eval": 28}


def test_dropped_workspaces_are_allocated_again_by_the_next_step():
    """CUDA peak memory drops them before its step, so that it counts them (study.runners.memory.cuda_peak_bytes)."""
    m = Classifier(variant_config("euler", steps=5), [0])
    x, y = torch.randn(1, 16, 2), torch.randint(0, 2, (1, 16))
    loss_fn(m(x), y).backward()
    assert m.core.func.workspace is not None and m.core.func.workspace.saved
    m.drop_workspaces()
    assert m.core.func.workspace is None
    loss_fn(m(x), y).backward()
    assert m.core.func.workspace.saved
