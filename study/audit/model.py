"""The user's model on the study's solve entry: ``lift -> solve the field through the observation times -> head``.

Every solve goes through :func:`study.engine.solve.solve` with the field as a
:class:`study.engine.module_field.ModuleField`: the hand engine (its tableaus on the one stage loop, the VJPs by
``torch.func``) or torchdiffeq, with the gradient method as an independent argument.  Observation times shared by
the batch are solved interval by interval; per-sample times are solved through the union of the batch's times and
each sample reads its own.
"""
from __future__ import annotations

import copy

import torch

from ..engine.module_field import ModuleField
from ..engine.solve import Count, How, solve


class Model:
    """Fresh modules of a problem (``lift``, ``field``, ``head``; ``seed`` seeds torch before each is made), or copies
    of given ones; ``sample_shape`` is the state's shape per sample."""

    def __init__(self, problem, seed: int | None, x_example: torch.Tensor, modules: dict | None = None):
        if modules is None:
            torch.manual_seed(int(seed))
            modules = {"lift": problem.lift() if problem.lift else None, "field": problem.field(),
                       "head": problem.head() if problem.head else None}
        self.problem, self.modules = problem, modules
        for name, m in modules.items():
            if m is not None and not isinstance(m, torch.nn.Module):
                from .problem import ProblemError

                raise ProblemError(f"{name}() must return a torch.nn.Module, got {type(m).__name__}")
            if m is not None:
                m.to(x_example.device)
        self.x_example = x_example[:1]
        with torch.no_grad():
            y0 = self.lift(self.x_example)
        self.sample_shape = tuple(y0.shape[1:])
        self.mf = ModuleField(modules["field"], self.sample_shape)

    @property
    def field(self) -> torch.nn.Module:
        return self.modules["field"]

    def parameters(self) -> list:
        return [p for m in self.modules.values() if m is not None for p in m.parameters()]

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def lift(self, x):
        return self.modules["lift"](x) if self.modules["lift"] is not None else x

    def to(self, dtype) -> "Model":
        """A copy in ``dtype``."""
        mods = {k: None if m is None else copy.deepcopy(m).to(dtype) for k, m in self.modules.items()}
        x = self.x_example.to(dtype) if self.x_example.is_floating_point() else self.x_example
        return Model(self.problem, None, x, mods)

    def states(self, y0: torch.Tensor, times: torch.Tensor, how: How, counter=None) -> torch.Tensor:
        """The states ``(B, T, *shape)`` at each sample's observation times (``times`` ``(T,)`` or ``(B, T)``) from
        ``y0`` ``(B, *shape)`` at the first."""
        counter = Count() if counter is None else counter
        shared = times.dim() == 1
        grid = times if shared else torch.unique(times)  # sorted
        raw = self.mf.raw()
        y = self.mf.to_engine(y0)
        out = [y]
        for t0, t1 in zip(grid[:-1].tolist(), grid[1:].tolist()):
            y = solve(self.mf, raw, y, t0, t1, how, counter)
            out.append(y)
        ys = torch.stack([self.mf.to_user(s) for s in out], 1)  # (B, G, *shape)
        if shared:
            return ys
        idx = torch.searchsorted(grid, times)  # (B, T): each sample's times on the grid
        return torch.gather(ys, 1, idx.view(*idx.shape, *([1] * len(self.sample_shape))).expand(
            -1, -1, *self.sample_shape))

    def predict(self, x: torch.Tensor, times: torch.Tensor, how: How, counter=None) -> torch.Tensor:
        """What the loss reads: the states at the observation times (``readout="trajectory"``), or the head's
        reading of the final state (``"final"``), the head applied where given."""
        ys = self.states(self.lift(x), times, how, counter)
        pred = ys[:, -1] if self.problem.readout == "final" else ys
        head = self.modules["head"]
        return head(pred) if head is not None else pred


def model_for(loaded, seed: int | None = None, modules: dict | None = None) -> Model:
    return Model(loaded.problem, seed, loaded.train[0], modules)


def given_modules(loaded) -> dict | None:
    """The trained modules the problem names (``state_dict``), loaded into fresh ones; None when it names none."""
    sd = loaded.problem.state_dict
    if sd is None:
        return None
    if not isinstance(sd, dict):
        sd = torch.load(str(sd), map_location="cpu", weights_only=True)
    m = model_for(loaded, 0)
    parts = sd if set(sd) <= {"field", "lift", "head"} and sd else {"field": sd}
    for name, state in parts.items():
        module = m.modules.get(name)
        if module is None:
            raise ValueError(f"state_dict has {name!r}, but the problem makes no {name}")
        module.load_state_dict(state)
    return m.modules
