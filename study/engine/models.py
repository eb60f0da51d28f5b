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

from ..config import ModelConfig
from . import hand_solve, solvers, stepper
from .dynamics import Counter, Dynamics, ELinear  # noqa: F401 - the models' building blocks, re-exported
from .ode_block import ODEBlock


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
