"""The variant registry: name -> model configuration (plain data).

A variant is a config entry, never new code.  Every name here is accepted by
``study run`` and listed by ``study variants``.

Adaptive tolerance: ``rtol = atol = 1e-3``.  The ODE state is O(1) and the
classifier only needs the sign of a margin that is O(0.1) or larger, so a
relative local error of 1e-3 is far below anything that changes a prediction
while keeping dopri5 cheap; the ``tolerance`` experiment sweeps 1e-1 .. 1e-5
to show what tighter or looser tolerances do.
"""
from __future__ import annotations

import copy

from .models import ModelConfig

DOPRI5_TOL = 1e-3

VARIANTS: dict[str, dict] = {
    # hand-written fixed-step solvers, 20 steps
    "euler": {"model": "ode", "backend": "hand", "method": "euler", "steps": 20},
    "rk4": {"model": "ode", "backend": "hand", "method": "rk4", "steps": 20},
    "rk4-38": {"model": "ode", "backend": "hand", "method": "rk4-38", "steps": 20},
    # 20 residual blocks with independent weights
    "resnet": {"model": "resnet", "steps": 20},
    # torchdiffeq, direct backpropagation through the solver
    "tdq-euler": {"model": "ode", "backend": "torchdiffeq", "method": "euler", "steps": 20},
    "tdq-rk4": {"model": "ode", "backend": "torchdiffeq", "method": "rk4-38", "steps": 20},
    "tdq-dopri5": {"model": "ode", "backend": "torchdiffeq", "method": "dopri5", "rtol": DOPRI5_TOL, "atol": DOPRI5_TOL},
    # torchdiffeq's odeint_adjoint: O(1) activation memory, recomputation in the backward pass
    "adjoint-euler": {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "euler", "steps": 20},
    "adjoint-rk4": {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "rk4-38", "steps": 20},
    "adjoint-dopri5": {"model": "ode", "backend": "torchdiffeq-adjoint", "method": "dopri5", "rtol": DOPRI5_TOL, "atol": DOPRI5_TOL},
    "adjoint-dopri5-seminorm": {
        "model": "ode", "backend": "torchdiffeq-adjoint", "method": "dopri5",
        "rtol": DOPRI5_TOL, "atol": DOPRI5_TOL, "adjoint_norm": "seminorm",
    },
}


def variant_config(name: str, **overrides) -> ModelConfig:
    """The model config of variant ``name`` with ``overrides`` applied (validated)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}")
    d = copy.deepcopy(VARIANTS[name])
    d.update(overrides)
    cfg = ModelConfig.from_dict(d)
    unknown = set(d) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
    cfg.validate()
    return cfg


def describe(name: str) -> dict:
    """One row of ``study variants``."""
    from .models import Classifier

    cfg = variant_config(name)
    if cfg.model == "resnet":
        solver, grid = "resnet blocks", f"{cfg.steps} blocks"
    elif cfg.adaptive:
        solver, grid = cfg.method, f"rtol=atol={cfg.rtol:g}" + (" seminorm" if cfg.adjoint_norm else "")
    else:
        solver, grid = cfg.method, f"{cfg.steps} steps"
    return {
        "variant": name,
        "model": cfg.model,
        "backend": cfg.backend if cfg.model == "ode" else "-",
        "method": solver,
        "steps/tolerance": grid,
        "params": Classifier(cfg, [0]).param_count(),
    }
