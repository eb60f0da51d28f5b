"""The ODE block of the spiral's classifier: its dynamics network integrated over ``[0, 1]`` by the configured
backend and method (the hand engine's fused fixed-step solve, its evaluation-based solves, or torchdiffeq)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import METHODS, ModelConfig
from . import hand_ode, hand_solve, solvers, stepper
from .dynamics import Dynamics
from .field import MLP
from .stepper import Control


class _ReleaseAfterBackward(torch.autograd.Function):
    """Identity on the state; its backward drops the dynamics' prepared weights."""

    @staticmethod
    def forward(ctx, y, func):
        ctx.func = func
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        ctx.func.release_prepared()
        return grad, None


class _PlainField:
    """The dynamics network as a field of the solve entry's implicit methods: its evaluation in plain torch on the
    engine's layout (``(S, d, B)``), not counted (the solve counts), differentiable by autograd in the module's
    parameters (the raw weights it is given are those parameters)."""

    def __init__(self, func):
        self.func = func

    def fold(self, raw):
        return tuple(raw)

    def differentiable(self, y, t, w):
        b1, wt, a1, c2, a2, c3, a3 = self.func._prepare()
        if wt is not None:
            b1 = b1 + (t.to(y.dtype) if isinstance(t, torch.Tensor) else float(t)) * wt
        s1 = torch.sigmoid(torch.baddbmm(b1, a1, y))
        s2 = torch.sigmoid(torch.baddbmm(c2, a2, s1))
        return torch.baddbmm(c3, a3, s2)


class ODEBlock(nn.Module):
    """Integrates the dynamics over ``[0, 1]`` with the configured backend and method."""

    def __init__(self, cfg: ModelConfig, members: int):
        super().__init__()
        self.cfg = cfg
        self.func = Dynamics(members, cfg.lift_dim, cfg.hidden, cfg.time_input)

    def _tdq_kwargs(self) -> dict:
        cfg = self.cfg
        kw: dict = {"method": METHODS[cfg.method].torchdiffeq}
        if cfg.adaptive:
            kw.update(rtol=cfg.rtol, atol=cfg.atol, options={"max_num_steps": cfg.max_num_steps})
            if cfg.backend == "torchdiffeq-adjoint":
                aopts = {"max_num_steps": cfg.max_num_steps}
                if cfg.adjoint_norm == "seminorm":
                    aopts["norm"] = "seminorm"
                kw["adjoint_options"] = aopts
        else:
            # The uniform N-step grid, given explicitly: torchdiffeq's step_size option can add a
            # zero-length step when 1/step_size rounds up, and passing the grid as output times
            # would make odeint keep (and the adjoint save) all N+1 states.
            n = cfg.steps
            # (The adjoint's backward solve calls it on the reversed, negated interval.)
            kw["options"] = {"grid_constructor": lambda f, y0, t: torch.linspace(
                float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)}
        return kw

    def forward(self, y0: torch.Tensor, trajectory_points: int | None = None) -> torch.Tensor:
        """State at t = 1, or with ``trajectory_points=K`` the states at ``K`` equally spaced times.

        Fixed-step trajectories are read off the solver grid (K - 1 should divide the steps);
        adaptive ones are torchdiffeq's dense output at the K times.
        """
        if self.cfg.backend == "torchdiffeq-adjoint":
            # odeint_adjoint's backward re-evaluates f after this call returns: keep the prepared
            # weights (with their graph to the parameters) until then.  _ReleaseAfterBackward sits
            # below the solve in the graph, so its backward runs after the adjoint's and drops them.
            self.func.hold_prepared()
            if torch.is_grad_enabled():
                y0 = _ReleaseAfterBackward.apply(y0, self.func)
            try:
                return self._solve(y0, trajectory_points)
            finally:
                if not torch.is_grad_enabled():
                    self.func.release_prepared()
        if METHODS[self.cfg.method].implicit:
            return self._implicit(y0, trajectory_points)
        if self.cfg.backend == "hand" and trajectory_points is None and not self.cfg.adaptive:
            return hand_solve.solve(self.func, y0, solvers.get_tableau(self.cfg.method), self.cfg.steps)
        if self.cfg.backend.startswith("hand") and trajectory_points is None:
            return self._hand_solve(y0)
        with self.func.prepared():
            return self._solve(y0, trajectory_points)

    def _implicit(self, y0: torch.Tensor, trajectory_points: int | None) -> torch.Tensor:
        """An implicit method through the one solve entry, on the network's plain-torch evaluation (its Jacobian
        and VJPs by autograd); with ``trajectory_points`` the states at equally spaced times, one solve per
        interval."""
        from .solve import How, solve

        how, f = How.of_model(self.cfg), self.func
        field = _PlainField(f)
        if trajectory_points is None:
            return solve(field, f.raw(), y0.transpose(1, 2).contiguous(), 0.0, 1.0, how, f.counter).transpose(1, 2)
        t = torch.linspace(0.0, 1.0, trajectory_points).tolist()
        out, y = [y0], y0.transpose(1, 2).contiguous()
        for t0, t1 in zip(t[:-1], t[1:]):
            y = solve(field, f.raw(), y, t0, t1, how, f.counter)
            out.append(y.transpose(1, 2))
        return torch.stack(out)

    def _hand_solve(self, y0: torch.Tensor) -> torch.Tensor:
        """The hand engine on the evaluation building block: adaptive, checkpointed or adjoint solves."""
        cfg, f = self.cfg, self.func
        control = Control(cfg.rtol, cfg.atol, cfg.max_num_steps) if cfg.adaptive else None
        spec = hand_ode.Solve(cfg.method, cfg.steps, control, cfg.adjoint_norm == "seminorm")
        solve = {"hand": hand_ode.direct, "hand-checkpoint": hand_ode.checkpointed, "hand-adjoint": hand_ode.adjoint}[cfg.backend]
        return solve(y0.transpose(1, 2).contiguous(), f.raw(), spec, f.counter).transpose(1, 2).contiguous()

    def remedied(self, y0: torch.Tensor, t_end: float = 1.0, field=None):
        """A training solve under a stiffness remedy: to ``t_end`` (STEER's draw) and, with RNODE's field
        (:class:`study.engine.rnode.RegularisedMLP`, None: the plain network), with its penalties' integrals as
        extra states.  ``(y(t_end) (S, B, d), E (S, B), F (S, B))``, ``E`` and ``F`` None without the field.  The
        hand backends solve on the evaluation-based engine (fixed steps too: the fused solve has neither extra
        states nor an end time), torchdiffeq's on the field's plain-torch forward under autograd."""
        cfg, d = self.cfg, y0.shape[-1]
        y = y0.transpose(1, 2)
        if field is not None:
            y = torch.cat([y, y.new_zeros(y.shape[0], field.rows - d, y.shape[2])], 1)
        field = field or MLP
        y, raw = y.contiguous(), self.func.raw()
        if cfg.backend.startswith("hand"):
            control = Control(cfg.rtol, cfg.atol, cfg.max_num_steps) if cfg.adaptive else None
            spec = hand_ode.Solve(cfg.method, cfg.steps, control, cfg.adjoint_norm == "seminorm", 0.0, float(t_end))
            solve = {"hand": hand_ode.direct, "hand-checkpoint": hand_ode.checkpointed, "hand-adjoint": hand_ode.adjoint}
            out = solve[cfg.backend](y, raw, spec, self.func.counter, field)
        else:
            import torchdiffeq

            rhs = _FieldRHS(field, raw, self.func)
            t = torch.tensor([0.0, float(t_end)], dtype=y.dtype, device=y.device)
            if cfg.backend == "torchdiffeq-adjoint":
                out = torchdiffeq.odeint_adjoint(rhs, y, t, adjoint_params=tuple(p for p in raw if p is not None),
                                                 **self._tdq_kwargs())[-1]
            else:
                out = torchdiffeq.odeint(rhs, y, t, **self._tdq_kwargs())[-1]
        yT = out[:, :d].transpose(1, 2)
        return (yT, None, None) if field is MLP else (yT, out[:, d], out[:, d + 1])

    def _solve(self, y0: torch.Tensor, trajectory_points: int | None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.backend in ("hand", "hand-checkpoint", "hand-adjoint") and not cfg.adaptive:
            if trajectory_points is None:
                return stepper.odeint_fixed(self.func, y0, 0.0, 1.0, cfg.steps, cfg.method)
            traj = stepper.odeint_fixed(self.func, y0, 0.0, 1.0, cfg.steps, cfg.method, trajectory=True)
            return traj[torch.linspace(0, cfg.steps, trajectory_points).round().long()]
        import torchdiffeq

        solve = torchdiffeq.odeint_adjoint if cfg.backend == "torchdiffeq-adjoint" else torchdiffeq.odeint
        if trajectory_points is None:
            t = torch.tensor([0.0, 1.0], device=y0.device, dtype=y0.dtype)
            return solve(self.func, y0, t, **self._tdq_kwargs())[-1]
        if cfg.adaptive:
            t = torch.linspace(0.0, 1.0, trajectory_points, device=y0.device, dtype=y0.dtype)
            return solve(self.func, y0, t, **self._tdq_kwargs())
        t = torch.linspace(0.0, 1.0, cfg.steps + 1, device=y0.device, dtype=y0.dtype)
        out = solve(self.func, y0, t, **self._tdq_kwargs())
        return out[torch.linspace(0, cfg.steps, trajectory_points).round().long()]


class _FieldRHS(nn.Module):
    """torchdiffeq's right-hand side for a field of the hand engine on feature-major states: its plain-torch
    forward under autograd, counted by (and reporting its steps to) the dynamics' counter."""

    def __init__(self, field, raw: tuple, dynamics: Dynamics):
        super().__init__()
        self.field, self.raw, self.dynamics = field, raw, dynamics

    def forward(self, t, y):
        counter = self.dynamics.counter
        counter.counts[counter.phase] += 1
        return self.field.forward(y, t, self.field.fold(self.raw))[0]

    def callback_accept_step(self, t0, y0, dt):
        self.dynamics.callback_accept_step(t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt):
        self.dynamics.callback_reject_step(t0, y0, dt)
