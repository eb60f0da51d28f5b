"""Conformance of the engine's fields and of the one solve entry.

* Every hand-written field (each task's, on its work-precision problem) has a VJP equal to autograd's through its
  own evaluation.
* Any ``torch.nn.Module`` written for torchdiffeq is a field (:class:`ModuleField`): every implementation and
  gradient method of the one solve entry gives it the gradient torchdiffeq gives the module itself, and the
  discretisation-exact gradient methods pass ``gradcheck``.
"""
import pytest
import torch

from study import tasks
from study.engine.field import evaluate_vjp
from study.engine.module_field import FieldError, ModuleField
from study.engine.solve import How, solve


def _task_problem(task: str):
    """The task's work-precision problem on its initial model, weights moved off their zero initialisation."""
    from study import experiments, tasks

    module = tasks.get(task)
    job = next(j for j in experiments.plan("quick", [tasks.experiment(task, "work-precision")]))
    config = job.run_configs()[0]
    model, _ = module.workprecision_models({**config, "fields": ["initial"]})["initial"]
    p = module.problem(model, config)
    g = torch.Generator().manual_seed(0)
    raw = tuple(None if x is None else (x + 0.3 * torch.randn(x.shape, generator=g, dtype=x.dtype)).detach()
                for x in p.raw)
    return p, raw


@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_hand_written_vjp_equals_autograd(task):
    p, raw = _task_problem(task)
    field = p.field
    y = (p.y0 + 0.1 * torch.randn(p.y0.shape, generator=torch.Generator().manual_seed(1), dtype=p.y0.dtype))
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    t = 0.37
    _, gy, gw = evaluate_vjp(field, y, t, field.fold(raw), g)
    hand = (gy, *field.unfold(gw))
    leaves = [y.clone().requires_grad_()] + [None if x is None else x.clone().requires_grad_() for x in raw]
    with torch.enable_grad():
        if hasattr(field, "differentiable"):  # a field whose forward builds no graph (its VJP is autograd's)
            f = field.differentiable(leaves[0], t, field.fold(leaves[1:]))
        else:
            f, _ = field.forward(leaves[0], t, field.fold(leaves[1:]))
        present = [x for x in leaves if x is not None]
        auto = iter(torch.autograd.grad(f, present, g, allow_unused=True))
    for h, x in zip(hand, leaves):
        if x is None:
            continue
        a = next(auto)
        a = torch.zeros_like(x) if a is None else a
        assert torch.allclose(h, a, rtol=1e-10, atol=1e-12), (task, float((h - a).abs().max()))


class TorchdiffeqStyle(torch.nn.Module):
    """A field as a torchdiffeq user writes it (ode_demo's shape, with a time input): ``f(t, y)``, y ``(B, 2)``."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
        with torch.no_grad():
            for prm in self.net.parameters():
                prm.copy_(torch.randn(prm.shape, generator=g, dtype=prm.dtype) * 0.5)

    def forward(self, t, y):
        return self.net(torch.cat([y ** 3, t.expand(y.shape[0], 1)], dim=1))


def _module_problem():
    m = TorchdiffeqStyle()
    y0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return m, y0, ModuleField(m, (2,))


def _loss(y1):
    return (y1 ** 2).sum()


def _torchdiffeq_gradient(m, y0, method, **kw):
    import torchdiffeq

    params = list(m.parameters())
    y1 = torchdiffeq.odeint(m, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method=method, **kw)[-1]
    return torch.cat([x.flatten() for x in torch.autograd.grad(_loss(y1), params)])


def _ours(field, y0, how):
    raw = [x.detach().clone().requires_grad_() for x in field.raw()]
    y1 = solve(field, raw, field.to_engine(y0), 0.0, 1.0, how)
    return torch.cat([x.flatten() for x in torch.autograd.grad(_loss(field.to_user(y1)), raw)])


@pytest.mark.parametrize("implementation,gradient", [("hand", "direct"), ("hand", "checkpoint"), ("hand", "adjoint"),
                                                     ("hand", "seminorm"), ("torchdiffeq", "direct"),
                                                     ("torchdiffeq", "adjoint")])
def test_a_module_field_gets_torchdiffeq_s_gradient_from_every_gradient_method(implementation, gradient):
    m, y0, field = _module_problem()
    # fixed steps: the same discretisation as torchdiffeq's rk4 (Kutta's 3/8 rule) on the module itself
    fixed = _ours(field, y0, How(implementation, "rk4-38", 16, None, gradient))
    exact_fixed = _torchdiffeq_gradient(m, y0, "rk4", options={"step_size": 1 / 16})
    continuous = gradient in ("adjoint", "seminorm")  # the continuous adjoint: the ODE's gradient to O(h^4)
    assert torch.allclose(fixed, exact_fixed, rtol=1e-4 if continuous else 1e-10, atol=1e-12)
    adaptive = _ours(field, y0, How(implementation, "dopri5", None, 1e-10, gradient))
    reference = _torchdiffeq_gradient(m, y0, "rk4", options={"step_size": 1 / 512})
    assert torch.allclose(adaptive, reference, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("gradient", ["direct", "checkpoint"])
def test_the_discretisation_exact_gradients_of_a_module_field_pass_gradcheck(gradient):
    m, y0, field = _module_problem()
    raw = [x.detach().clone().requires_grad_() for x in field.raw()]
    y = field.to_engine(y0).requires_grad_()

    def f(y_, *w):
        return solve(field, w, y_, 0.0, 1.0, How("hand", "rk4", 6, None, gradient))

    assert torch.autograd.gradcheck(f, (y, *raw), eps=1e-6, atol=1e-7)


def test_a_module_that_is_no_field_is_named():
    class Wrong(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 3).double()

        def forward(self, t, y):
            return self.lin(y)  # (B, 3) for a (B, 2) state

    field = ModuleField(Wrong(), (2,))
    y0 = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(FieldError, match=r"returned torch.float64 \(4, 3\) for a state of torch.float64 \(4, 2\)"):
        solve(field, field.raw(), field.to_engine(y0), 0.0, 1.0, How("hand", "euler", 2))


def test_how_refuses_what_no_implementation_has():
    for kwargs, words in (({"implementation": "jax"}, "implementation"), ({"gradient": "magic"}, "gradient"),
                          ({"method": "heun"}, "unknown method"), ({"implementation": "torchdiffeq", "method": "rk4"},
                                                                   "torchdiffeq has no 'rk4'"),
                          ({"implementation": "torchdiffeq", "method": "euler", "gradient": "checkpoint"}, "hand engine"),
                          ({"method": "dopri5"}, "positive tol"), ({"steps": 0}, "positive number of steps")):
        with pytest.raises(ValueError, match=words):
            How(**kwargs)
    assert How.of_backend("torchdiffeq-adjoint", "dopri5", {"tol": 1e-3}) == How("torchdiffeq", "dopri5", None, 1e-3,
                                                                                    "adjoint")


# -- every registered task: a short training lowers its loss and makes records that validate --------------------

SHORT = {"spiral": {"epochs": 6, "n_test": 200, "curve_test_points": 100, "eval_every": 2},
         "dynamics": {"iterations": 30, "n_points": 250, "eval_every": 10, "grid": 16},
         "density": {"iterations": 30, "n_train": 512, "n_val": 64, "n_test": 128, "batch_size": 64,
                     "eval_every": 10, "grid": 8, "n_samples": 32},
         "digits": {"epochs": 3, "eval_every": 1},
         "stiff": {"iterations": 12, "n_points": 60, "eval_every": 4, "grid": 8}}


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_short_training_of_every_task_lowers_its_loss_and_makes_valid_records(task):
    from study import records

    from study.experiments import TASK_SPEC

    module = tasks.get(task)
    variant = "backward-euler" if getattr(module, "STIFF", False) else "rk4"  # RK4 blows up on a stiff field
    cfg = module.model_config(variant)
    proto = module.Protocol(**SHORT.get(task, TASK_SPEC["quick"][task].get("protocol", {})))
    config = module.run_config(variant, cfg, proto, 0, "cpu", None)
    (record,), _ = module.train([config])
    records.validate(record, tasks.record_schema)
    assert record["status"] == "ok", record.get("error")
    loss = record["curves"]["loss"]
    assert len(loss) >= 3 and loss[-1] < loss[0], loss


def test_the_dynamics_hand_fields_and_their_rnode_form_equal_autograd_s():
    """The registered fast path (hand VJPs of the cubic field and of RNODE's terms through it) against the same
    field differentiated by torch.func (values, then VJPs with respect to the state and every weight)."""
    from study.engine.autograd_field import AutogradField
    from study.tasks.dynamics import cubic

    g = torch.Generator().manual_seed(3)
    S, H, B = 2, 5, 4
    raw = [torch.randn(S, H, 2, generator=g, dtype=torch.float64), torch.randn(S, H, generator=g, dtype=torch.float64),
           torch.randn(S, 2, H, generator=g, dtype=torch.float64), torch.randn(S, 2, generator=g, dtype=torch.float64)]
    for hand, auto, rows in zip(cubic.hand_fields(), cubic.autograd_fields(), (2, 4)):
        assert isinstance(auto, AutogradField) and getattr(hand, "rows", 2) == rows
        y = torch.randn(S, rows, B, generator=g, dtype=torch.float64)
        gout = torch.randn(S, rows, B, generator=g, dtype=torch.float64)
        fh, saved = hand.forward(y, 0.0, hand.fold(raw))
        fa, _ = auto.forward(y, 0.0, auto.fold(raw))
        assert torch.allclose(fh, fa, rtol=1e-12, atol=1e-12)
        gy_h, gw_h = hand.vjp(gout, y, 0.0, saved, *hand.backward_weights(hand.fold(raw)))
        gy_a, gw_a = auto.vjp(gout, y, 0.0, (), *auto.backward_weights(auto.fold(raw)))
        assert torch.allclose(gy_h[:, :2], gy_a[:, :2], rtol=1e-10, atol=1e-12)
        for h, a in zip(hand.unfold(gw_h), auto.unfold(gw_a)):
            assert torch.allclose(h, a, rtol=1e-10, atol=1e-12), float((h - a).abs().max())


def test_an_autograd_field_passes_gradcheck_through_every_gradient_method():
    """A field with no hand VJP (the trajectory factory's tanh MLP, as the pendulum uses it), its RNODE form too: the
    discretisation's exact gradients (direct and checkpointed) pass gradcheck, the continuous adjoint meets
    torchdiffeq's odeint_adjoint."""
    import torchdiffeq

    from study.tasks.trajectory.fields import autograd_fields

    g = torch.Generator().manual_seed(4)
    S, H, B = 1, 4, 3
    raw = [0.5 * torch.randn(S, H, 2, generator=g, dtype=torch.float64), torch.randn(S, H, generator=g, dtype=torch.float64),
           0.5 * torch.randn(S, 2, H, generator=g, dtype=torch.float64), torch.randn(S, 2, generator=g, dtype=torch.float64)]
    for field in autograd_fields(2):
        rows = getattr(field, "rows", 2)
        y0 = torch.randn(S, rows, B, generator=g, dtype=torch.float64)
        for gradient in ("direct", "checkpoint"):
            how = How("hand", "rk4", 4, None, gradient)
            f = lambda y_, *w: solve(field, w, y_, 0.0, 0.7, how).sum()  # noqa: E731
            assert torch.autograd.gradcheck(f, (y0.clone().requires_grad_(), *[w.clone().requires_grad_() for w in raw]),
                                            eps=1e-6, atol=1e-7)
        ours = [w.clone().requires_grad_() for w in raw]
        theirs = [w.clone().requires_grad_() for w in raw]
        how = How("hand", "dopri5", None, 1e-10, "adjoint")
        a = torch.autograd.grad(solve(field, ours, y0, 0.0, 0.7, how).pow(2).sum(), ours)
        rhs = lambda t, y: field.differentiable(y, t, field.fold(theirs))  # noqa: E731
        module = torch.nn.Module()
        module.forward = rhs
        y1 = torchdiffeq.odeint_adjoint(module, y0, torch.tensor([0.0, 0.7], dtype=torch.float64), rtol=1e-10,
                                        atol=1e-10, adjoint_params=tuple(theirs))[-1]
        b = torch.autograd.grad(y1.pow(2).sum(), theirs)
        for x, z in zip(a, b):
            assert torch.allclose(x, z, rtol=1e-6, atol=1e-8), float((x - z).abs().max())
