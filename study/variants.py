"""The variant registry: every model the study trains, as plain data.

A variant is one entry of :data:`VARIANTS`: its name, its display label, the
LaTeX macro stem the paper's numbers use, and its model configuration.  Its
place in the list is its place in every figure and table.  Adding a variant
is adding one entry here; nothing else needs to know about it (figures take
colour and marker from its method and backend, tables its label and macro).

Adaptive tolerance: ``rtol = atol = 1e-3``.  The ODE state is O(1) and the
classifier only needs the sign of a margin that is O(0.1) or larger, so a
relative local error of 1e-3 is far below anything that changes a prediction
while keeping dopri5 cheap; the ``tolerance`` experiment sweeps looser and
tighter tolerances to show what they do.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from .config import METHODS, ModelConfig

DOPRI5_TOL = 1e-3


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # display name in figures and tables
    macro: str  # stem of its macros in paper/generated/numbers.tex (letters only)
    config: dict  # ModelConfig fields that differ from the defaults

    @property
    def model_config(self) -> ModelConfig:
        return variant_config(self.name)

    @property
    def family(self) -> str:
        """How it is solved and differentiated: hand, torchdiffeq, torchdiffeq-adjoint, seminorm, resnet or
        none (the control without a flow)."""
        c = self.model_config
        if c.model != "ode":
            return c.model
        return "seminorm" if c.adjoint_norm == "seminorm" else c.backend

    @property
    def method(self) -> str:
        """The solver method (``resnet`` for the ResNet, ``none`` without a flow), which picks its colour."""
        c = self.model_config
        return c.method if c.model == "ode" else c.model


def _entries(*variants: Variant) -> dict[str, Variant]:
    """The registry, checked at import: a variant without a label or macro, or with a config that
    does not validate, stops the package from loading instead of vanishing from a figure."""
    out: dict[str, Variant] = {}
    for v in variants:
        if not isinstance(v, Variant):
            raise TypeError(f"registry entries must be Variant, got {v!r}")
        if not v.label or not v.label.strip():
            raise ValueError(f"variant {v.name!r} has no label")
        if not re.fullmatch(r"[A-Za-z]+", v.macro or ""):
            raise ValueError(f"variant {v.name!r}: macro {v.macro!r} must be letters only")
        for field, value in (("name", v.name), ("label", v.label), ("macro", v.macro)):
            if any(getattr(o, field) == value for o in out.values()):
                raise ValueError(f"variant {v.name!r}: {field} {value!r} is used twice")
        cfg = ModelConfig.from_dict(v.config)
        unknown = set(v.config) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"variant {v.name!r}: unknown model option(s) {', '.join(sorted(unknown))}")
        cfg.validate()
        out[v.name] = v
    return out


_TOL = {"rtol": DOPRI5_TOL, "atol": DOPRI5_TOL}
VARIANTS: dict[str, Variant] = _entries(
    # hand-written fixed-step solvers, 20 steps
    Variant("euler", "Euler (hand)", "Euler", {"model": "ode", "backend": "hand", "method": "euler", "steps": 20}),
    Variant("rk4", "RK4 (hand)", "RKfour", {"model": "ode", "backend": "hand", "method": "rk4", "steps": 20}),
    Variant("rk4-38", "RK4 3/8 (hand)", "RKtte", {"model": "ode", "backend": "hand", "method": "rk4-38", "steps": 20}),
    # 20 residual blocks with independent weights
    Variant("resnet", "ResNet", "ResNet", {"model": "resnet", "steps": 20}),
    # the control: lift and head with no flow between them (what the flow adds is measured against it)
    Variant("no-flow", "No flow (control)", "NoFlow", {"model": "none"}),
    # torchdiffeq, direct backpropagation through the solver
    Variant("tdq-euler", "Euler (tdq)", "TdqEuler", {"model": "ode", "backend": "torchdiffeq", "method": "euler", "steps": 20}),
    Variant("tdq-rk4", "RK4 3/8 (tdq)", "TdqRKfour", {"model": "ode", "backend": "torchdiffeq", "method": "rk4-38", "steps": 20}),
    Variant("tdq-dopri5", "dopri5 (tdq)", "TdqDopri", {"model": "ode", "backend": "torchdiffeq", "method": "dopri5", **_TOL}),
    # torchdiffeq's odeint_adjoint: O(1) activation memory, recomputation in the backward pass
    Variant("adjoint-euler", "Euler (adjoint)", "AdjEuler",
            {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "euler", "steps": 20}),
    Variant("adjoint-rk4", "RK4 3/8 (adjoint)", "AdjRKfour",
            {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "rk4-38", "steps": 20}),
    Variant("adjoint-dopri5", "dopri5 (adjoint)", "AdjDopri",
            {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "dopri5", **_TOL}),
    Variant("adjoint-dopri5-seminorm", "dopri5 (adj., seminorm)", "AdjDopriSemi",
            {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "dopri5", **_TOL, "adjoint_norm": "seminorm"}),
    # the hand engine on one evaluation: adaptive dopri5 (direct backpropagation through the accepted steps),
    # the continuous adjoint, and the checkpointed adjoint (exact gradient of the discretisation, one state a step)
    Variant("hand-dopri5", "dopri5 (hand)", "HandDopri", {"model": "ode", "backend": "hand", "method": "dopri5", **_TOL}),
    Variant("hand-adjoint-euler", "Euler (hand adjoint)", "HandAdjEuler",
            {"model": "ode", "backend": "hand-adjoint", "method": "euler", "steps": 20}),
    Variant("hand-adjoint-rk4", "RK4 (hand adjoint)", "HandAdjRKfour",
            {"model": "ode", "backend": "hand-adjoint", "method": "rk4", "steps": 20}),
    Variant("hand-adjoint-dopri5", "dopri5 (hand adjoint)", "HandAdjDopri",
            {"model": "ode", "backend": "hand-adjoint", "method": "dopri5", **_TOL}),
    Variant("checkpoint-euler", "Euler (checkpointed)", "CkptEuler",
            {"model": "ode", "backend": "hand-checkpoint", "method": "euler", "steps": 20}),
    Variant("checkpoint-rk4", "RK4 (checkpointed)", "CkptRKfour",
            {"model": "ode", "backend": "hand-checkpoint", "method": "rk4", "steps": 20}),
    Variant("checkpoint-dopri5", "dopri5 (checkpointed)", "CkptDopri",
            {"model": "ode", "backend": "hand-checkpoint", "method": "dopri5", **_TOL}),
    # the implicit methods (stiff tasks only): Newton on each stage, exact gradients by the implicit function
    # theorem, directly through the accepted steps or checkpointed
    Variant("backward-euler", "backward Euler (hand)", "BackEuler",
            {"model": "ode", "backend": "hand", "method": "backward-euler", "steps": 20}),
    Variant("trapezoid", "trapezoid (hand)", "Trapezoid",
            {"model": "ode", "backend": "hand", "method": "trapezoid", "steps": 20}),
    Variant("kvaerno3", "Kvaerno 3(2) (hand)", "Kvaerno", {"model": "ode", "backend": "hand", "method": "kvaerno3", **_TOL}),
    Variant("checkpoint-kvaerno3", "Kvaerno 3(2) (checkpointed)", "CkptKvaerno",
            {"model": "ode", "backend": "hand-checkpoint", "method": "kvaerno3", **_TOL}),
)


# Other names a user may type for a variant: the hand-written fixed-step variants by their backend, as the
# adaptive and adjoint ones are named (records always carry the registry's name).
ALIASES = {"hand-euler": "euler", "hand-rk4": "rk4", "hand-rk4-38": "rk4-38"}


def canonical(name: str) -> str:
    """The registry's name of ``name`` (itself, or the variant an alias stands for)."""
    return ALIASES.get(name, name)


def get(name: str) -> Variant:
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def variant_config(name: str, **overrides) -> ModelConfig:
    """The model config of variant ``name`` with ``overrides`` applied (validated)."""
    d = copy.deepcopy(get(name).config)
    d.update(overrides)
    unknown = set(d) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
    cfg = ModelConfig.from_dict(d)
    cfg.validate()
    return cfg


def describe(name: str) -> dict:
    """One row of ``study variants``."""
    cfg = variant_config(name)
    if cfg.model == "resnet":
        solver, grid = "resnet blocks", f"{cfg.steps} blocks"
    elif cfg.model == "none":
        solver, grid = "-", "no flow"
    elif cfg.adaptive:
        solver, grid = cfg.method, f"rtol=atol={cfg.rtol:g}" + (" seminorm" if cfg.adjoint_norm else "")
    else:
        solver, grid = cfg.method, f"{cfg.steps} steps"
    return {
        "variant": name,
        "model": cfg.model,
        "backend": cfg.backend if cfg.model == "ode" else "-",
        "method": solver,
        "order": str(METHODS[cfg.method].order) if cfg.model == "ode" else "-",
        "stability": METHODS[cfg.method].stability if cfg.model == "ode" else "-",
        "steps/tolerance": grid,
        "params": cfg.param_count(),
    }

