"""Models of the study: the ODE classifier and the ResNet MLP.

Every model is an *ensemble* of ``S`` independent members with stacked
weights (``S = 1`` is a plain model).  Inputs have shape ``(S, B, features)``;
each layer is one batched matrix multiply over the members.  Members never
interact: member ``s`` computes exactly what a single model with its weights
computes, so several seeds of a fixed-step variant can be trained as one model
(the training protocol uses this to amortise per-op dispatch cost).

Initialisation is PyTorch's ``nn.Linear`` default (``U(-1/sqrt(fan_in),
1/sqrt(fan_in))`` for weights and biases), drawn for each member from a
generator seeded by that member's seed, in a fixed layer order, so a member's
initial weights do not depend on which other members share its ensemble.
The last layer of the ODE dynamics and of every ResNet block is zero (identity
map at the start of training) unless ``zero_init`` is off.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..config import METHODS, ModelConfig
from . import hand_ode, hand_solve, solvers, stepper
from .field import MLP
from .stepper import Control
from .instrument import note_derived


class ELinear(nn.Module):
    """``S`` independent linear layers applied member-wise: ``(S, B, i) -> (S, B, o)``."""

    def __init__(self, members: int, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(members, fan_out))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.bias if bias is None else bias
        return torch.baddbmm(b.unsqueeze(1), x, self.weight.transpose(1, 2))


class _Prepared:
    def __init__(self, f: "Dynamics"):
        self.f = f

    def __enter__(self):
        self.f.hold_prepared()

    def __exit__(self, *exc):
        self.f.release_prepared()


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


class Counter:
    """Function-evaluation counter with phases (forward / backward / eval).

    ``counts``, ``accepted`` and ``rejected`` count calls of the (batched) network and steps of its solves.
    Solves with per-member step control (several seeds of an adaptive variant batched) also count per
    member (:meth:`add_members`): ``member_counts[phase]``, ``member_accepted``, ``member_rejected``
    (``(S,)`` tensors; None until such a solve ran), and the members whose solve failed, with why, in
    ``failures``."""

    def __init__(self) -> None:
        self.phase = "forward"
        self.counts = {"forward": 0, "backward": 0, "eval": 0}
        self.accepted = 0
        self.rejected = 0
        self.member_counts: dict | None = None
        self.member_accepted = self.member_rejected = None
        self.failures: dict[int, str] = {}

    def reset(self) -> None:
        self.counts = dict.fromkeys(self.counts, 0)
        self.accepted = self.rejected = 0
        self.member_counts, self.member_accepted, self.member_rejected = None, None, None
        self.failures = {}

    def add_members(self, evaluations, accepted=None, rejected=None) -> None:
        """One per-member solve's evaluations (in the current phase) and, outside backward passes, its steps."""
        if self.member_counts is None:
            zero = torch.zeros_like(evaluations)
            self.member_counts = {k: zero.clone() for k in self.counts}
            self.member_accepted, self.member_rejected = zero.clone(), zero.clone()
        self.member_counts[self.phase] += evaluations
        if self.phase == "forward" and accepted is not None:  # training steps only
            self.member_accepted += accepted
            self.member_rejected += rejected

    def snapshot(self, members: int) -> dict:
        """Per-member totals so far (``members`` long lists): evaluations by phase, accepted, rejected steps; the
        batched counts for every member where no per-member solve ran."""
        if self.member_counts is None:
            out = {k: [v] * members for k, v in self.counts.items()}
            return {**out, "accepted": [self.accepted] * members, "rejected": [self.rejected] * members}
        out = {k: v.tolist() for k, v in self.member_counts.items()}
        return {**out, "accepted": self.member_accepted.tolist(), "rejected": self.member_rejected.tolist()}


class Dynamics(nn.Module):
    """``f(t, y)``: Linear(d+1, H) - Tanh - Linear(H, H) - Tanh - Linear(H, d) on ``[t ; y]``.

    The first layer's weight is stored as its time column ``w_t`` and its state
    columns ``l1.weight``: ``W [t; y] + b = W_y y + (b + t w_t)`` is the same map
    with the same parameter count.  Each call on a batch counts as one function
    evaluation (NFE) per member.

    Evaluation uses ``tanh(z) = 2 sigmoid(2 z) - 1`` with the affine parts folded
    into the neighbouring matrix multiplies: with ``h = 2 s - 1``,
    ``W h + b = 2 W s + (b - W 1)``; the scaled weights are prepared
    once per solve (:meth:`prepared`), not once per evaluation.  It is the same function up to float
    rounding (about 1e-7), and on CPU it is much faster: this torch build's
    float32 ``tanh`` kernel is about 5x slower than ``sigmoid`` (42 us against
    7.6 us on a 128 x 128 tile here, as slow as the 128 x 128 x 128 matrix
    multiply), which made tanh a third of a training step.  The saved tensors
    are the same as with ``tanh`` (each layer's input and its two activations).
    """

    def __init__(self, members: int, dim: int, hidden: int = 128, time_input: bool = True):
        super().__init__()
        self.time_input = time_input
        self.l1 = ELinear(members, dim, hidden)
        self.w_t = nn.Parameter(torch.empty(members, hidden)) if time_input else None
        self.l2 = ELinear(members, hidden, hidden)
        self.l3 = ELinear(members, hidden, dim)
        self.counter = Counter()
        self._prepared = None  # held by `prepared()` / `hold_prepared()` for the evaluations of one solve
        self.workspace = None  # study.engine.hand_solve's buffers, reused from one solve to the next

    def raw(self) -> tuple:
        """The raw parameters in the hand engine's field order, ``(W1, b1, w_t, W2, b2, W3, b3)``
        (:class:`study.engine.field.MLPField`; ``w_t`` None without a time input)."""
        return (self.l1.weight, self.l1.bias, self.w_t, self.l2.weight, self.l2.bias, self.l3.weight, self.l3.bias)

    def _prepare(self) -> tuple:
        """The weights in the form the evaluation uses: scaled, biases folded, as columns.

        Feature-major (``(S, features, B)``): ``2 z1 = (2 W1) y + 2 (b1 + t w_t)``,
        ``s1 = sigmoid(2 z1)``; ``2 z2 = (4 W2) s1 + 2 (b2 - W2 1)``, ``s2 = sigmoid(2 z2)``;
        ``f = (2 W3) s2 + (b3 - W3 1)``.
        """
        l1, l2, l3 = self.l1, self.l2, self.l3
        a1, a2, a3, b1, wt, c2, c3 = hand_solve.fold(l1.weight, l1.bias, self.w_t, l2.weight, l2.bias, l3.weight, l3.bias)
        out = (b1, wt, a1, c2, a2, c3, a3)
        note_derived(out)  # functions of the parameters alone, not activations
        return out

    def prepared(self):
        """Context manager: prepare the weights once for every evaluation of one solve."""
        return _Prepared(self)

    def hold_prepared(self) -> None:
        """Prepare the weights and keep them (with their graph) until :meth:`release_prepared`."""
        self._prepared = self._prepare()

    def release_prepared(self) -> None:
        self._prepared = None

    @property
    def holds_prepared(self) -> bool:
        return self._prepared is not None

    def forward(self, t, y: torch.Tensor) -> torch.Tensor:
        self.counter.counts[self.counter.phase] += 1
        b1, wt, a1, c2, a2, c3, a3 = self._prepared if self._prepared is not None else self._prepare()
        if wt is not None:
            b1 = b1 + t.to(y.dtype) * wt if isinstance(t, torch.Tensor) else torch.add(b1, wt, alpha=float(t))
        # Feature-major inside: the products with a width-d side then have d as their row count
        # (4.6 us instead of 20 us at d = 6, B = 128 here), forward and in autograd's backward.
        s1 = torch.sigmoid(torch.baddbmm(b1, a1, y.transpose(1, 2)))
        s2 = torch.sigmoid(torch.baddbmm(c2, a2, s1))
        return torch.baddbmm(c3, a3, s2).transpose(1, 2)

    def reference(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """The textbook evaluation with ``tanh`` (for tests; not counted)."""
        b1 = self.l1.bias + (t * self.w_t if self.w_t is not None else 0.0)
        h = torch.tanh(self.l1(y, b1))
        h = torch.tanh(self.l2(h))
        return self.l3(h)

    # torchdiffeq callbacks (adaptive solvers): accepted / rejected steps.
    def callback_accept_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.accepted += 1

    def callback_reject_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.rejected += 1


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
        if self.cfg.backend == "hand" and trajectory_points is None and not self.cfg.adaptive:
            return hand_solve.solve(self.func, y0, solvers.get_tableau(self.cfg.method), self.cfg.steps)
        if self.cfg.backend.startswith("hand") and trajectory_points is None:
            return self._hand_solve(y0)
        with self.func.prepared():
            return self._solve(y0, trajectory_points)

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


class ResNetStack(nn.Module):
    """``N`` residual blocks with their own weights: ``h <- h + (1/N) block_i(h)``.

    Each block is Linear(d, H) - Tanh - Linear(H, H) - Tanh - Linear(H, d), i.e.
    the ODE's dynamics without the time input.  It is forward Euler with step
    ``1/N`` on a depth-dependent vector field, and it runs on the hand backend's
    engine as such (:func:`study.engine.hand_solve.solve_blocks`), so that its costs compare
    with the ODE's on equal terms; trajectories call the blocks one by one.
    """

    def __init__(self, cfg: ModelConfig, members: int):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Dynamics(members, cfg.lift_dim, cfg.hidden, time_input=False) for _ in range(cfg.steps))
        for b in self.blocks[1:]:  # one counter: a block evaluation counts like one NFE of Euler
            b.counter = self.blocks[0].counter

    def forward(self, h: torch.Tensor, trajectory_points: int | None = None) -> torch.Tensor:
        if trajectory_points is None:
            return hand_solve.solve_blocks(list(self.blocks), h)
        n = len(self.blocks)
        grid = solvers.time_grid(0.0, 1.0, n)
        states = [h]
        for t, block in zip(grid, self.blocks):  # block i sits at time t_i (its input ignores it)
            h = torch.add(h, block(t, h), alpha=1.0 / n)
            states.append(h)
        idx = torch.linspace(0, n, trajectory_points).round().long()
        return torch.stack(states)[idx]

    @property
    def counter(self) -> Counter:
        return self.blocks[0].counter


class NoFlow(nn.Module):
    """The control without a flow: ``y(T) = y(0)``, no evaluations (its counter stays at zero)."""

    def __init__(self):
        super().__init__()
        self.counter = Counter()

    def forward(self, h: torch.Tensor, trajectory_points: int | None = None) -> torch.Tensor:
        return h if trajectory_points is None else h.unsqueeze(0).expand(trajectory_points, *h.shape)


class Classifier(nn.Module):
    """Lift Linear(in_dim, d) -> core (ODE block, ResNet stack, or none) -> head: Linear(d, 64) - ReLU -
    Linear(64, classes), or with ``head="linear"`` Linear(d, classes) alone (then the flow must separate the
    classes); the spiral's ``in_dim`` and ``classes`` are 2."""

    def __init__(self, cfg: ModelConfig, seeds: Sequence[int]):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.seeds = list(seeds)
        m = len(self.seeds)
        self.lift = ELinear(m, cfg.in_dim, cfg.lift_dim)
        self.core = {"ode": ODEBlock, "resnet": ResNetStack}[cfg.model](cfg, m) if cfg.model != "none" else NoFlow()
        if cfg.head == "mlp":
            self.head1 = ELinear(m, cfg.lift_dim, cfg.head_hidden)
            self.head2 = ELinear(m, cfg.head_hidden, cfg.classes)
        else:
            self.head1 = ELinear(m, cfg.lift_dim, cfg.classes)
            self.head2 = None
        self.reset_parameters()

    @property
    def members(self) -> int:
        return len(self.seeds)

    @property
    def counter(self) -> Counter:
        return self.core.func.counter if self.cfg.model == "ode" else self.core.counter

    def _last_layers(self) -> set[int]:
        if self.cfg.model == "ode":
            return {id(self.core.func.l3)}
        if self.cfg.model == "resnet":
            return {id(b.l3) for b in self.core.blocks}
        return set()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        gens = [torch.Generator().manual_seed(int(s) * 7919 + 17) for s in self.seeds]
        zero = self._last_layers() if self.cfg.zero_init else set()
        for mod in self.modules():
            if isinstance(mod, ELinear):
                owner_time = isinstance(self.core, ODEBlock) and mod is self.core.func.l1 and self.cfg.time_input
                fan_in = mod.weight.shape[-1] + (1 if owner_time else 0)
                if id(mod) in zero:
                    mod.weight.zero_()
                    mod.bias.zero_()
                    continue
                bound = 1.0 / math.sqrt(fan_in)
                for s, g in enumerate(gens):
                    if owner_time:  # draw the d+1 columns of Linear(d+1, H) in their natural order
                        full = torch.empty(mod.weight.shape[1], fan_in).uniform_(-bound, bound, generator=g)
                        self.core.func.w_t[s].copy_(full[:, 0])
                        mod.weight[s].copy_(full[:, 1:])
                    else:
                        mod.weight[s].uniform_(-bound, bound, generator=g)
                    mod.bias[s].uniform_(-bound, bound, generator=g)

    def forward(self, x: torch.Tensor, trajectory_points: int | None = None) -> torch.Tensor:
        h = self.core(self.lift(x), trajectory_points)
        if trajectory_points is not None:
            return h
        return self.head(h)

    def remedied(self, x: torch.Tensor, t_end: float = 1.0, field=None):
        """Logits of a training step under a stiffness remedy, with RNODE's integrals: ``(logits, E, F)`` (see
        :meth:`ODEBlock.remedied`)."""
        if self.cfg.model != "ode":
            raise ValueError("RNODE and STEER act on a flow: this model has none")
        yT, E, F = self.core.remedied(self.lift(x), t_end, field)
        return self.head(yT), E, F

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The classifier on the flow's output ``y(T)``."""
        return self.head1(h) if self.head2 is None else self.head2(torch.relu(self.head1(h)))

    def reconstruct(self, yT: torch.Tensor) -> torch.Tensor | None:
        """``y(0)`` recovered from ``y(T)`` by the same fixed-step solver run backward from t = 1 to 0
        (what a continuous adjoint's backward solve does); None for models without a fixed-step flow."""
        cfg = self.cfg
        if cfg.model != "ode" or cfg.adaptive:
            return None
        with self.core.func.prepared():
            return stepper.odeint_fixed(self.core.func, yT, 1.0, 0.0, cfg.steps, cfg.method)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y(0), y(T))``: the lifted input and the flow's output (what the linear probe reads)."""
        y0 = self.lift(x)
        return y0, self.core(y0)

    def drop_workspaces(self) -> None:
        """Free the buffers the hand backend keeps between solves (the next solve allocates them)."""
        for m in self.modules():
            if isinstance(m, Dynamics):
                m.workspace = None

    def param_count(self) -> int:
        """Parameters of one member."""
        return sum(p.numel() for p in self.parameters()) // self.members

    @torch.no_grad()
    def member(self, s: int) -> "Classifier":
        """A single-member copy of member ``s`` (same weights)."""
        single = Classifier(ModelConfig.from_dict(self.cfg.__dict__), [self.seeds[s]]).to(next(self.parameters()).device)
        for p_one, p_all in zip(single.parameters(), self.parameters()):
            p_one.copy_(p_all[s : s + 1])
        return single
