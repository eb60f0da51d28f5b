"""The ``convergence`` runner: global error against step size on an exact solution; the slope is the order.

The problem is ``y' = cos(t) y``, ``y(0) = y0``, whose solution is
``y0 exp(sin t)``, in float64.  Solvers are named ``hand-<method>`` (our
tableaus) or ``tdq-<method>`` (torchdiffeq's method of that name).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchdiffeq

from .. import records
from ..config import solver_method
from ..engine import solvers, stepper
from ..provenance import environment

KIND = "convergence"
ALONE = False
BATCHED = False


def cost(config: dict, members: int) -> float:
    return 1.0


def _exact_problem(name: str):
    if name != "cos":
        raise ValueError(f"unknown convergence problem {name!r}")
    # y' = cos(t) y, y(0) = y0  ->  y(t) = y0 exp(sin t); float64 throughout.
    y0 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    return (lambda t, y: torch.cos(torch.as_tensor(t, dtype=torch.float64)) * y), y0, (lambda t: y0 * math.exp(math.sin(t)))


def measure(config: dict) -> dict:
    """Global error at ``t1`` against step size for one solver; the fitted log-log slope is its order."""
    backend, method = solver_method(config["solver"])
    f, y0, exact = _exact_problem(config["problem"])
    t1 = float(config["t1"])
    errors = []
    for n in config["steps"]:
        if backend == "hand":
            y1 = stepper.odeint_fixed(f, y0, 0.0, t1, n, method.tableau)
        else:
            grid = torch.linspace(0.0, t1, n + 1, dtype=torch.float64)
            y1 = torchdiffeq.odeint(f, y0, grid, method=method.torchdiffeq)[-1]
        errors.append(float((y1 - exact(t1)).abs().max()))
    h = [t1 / n for n in config["steps"]]
    # The order is the slope over the four finest step sizes whose error is above float64 rounding.
    usable = [(hh, e) for hh, e in zip(h, errors) if e > 1e-13][-4:]
    slope = float(np.polyfit(np.log([u[0] for u in usable]), np.log([u[1] for u in usable]), 1)[0]) if len(usable) >= 2 else None
    tab = solvers.get_tableau(method.tableau)
    return records.make(config, {"steps": list(config["steps"]), "h": h, "error": errors, "slope": slope,
                                 "order": tab.order, "tableau": tab.name}, environment(config.get("device", "cpu")))


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]
