"""The audit's plan as plain data (no torch): the solver x gradient cells each budget trains, and what each trained
model is measured with.

A cell is ``(implementation, method, grid, gradient)``: the hand engine (its VJPs by autograd through ``torch.func``)
or torchdiffeq; fixed-step Euler, midpoint and RK4 at a few steps per observation interval, dopri5 at a few
tolerances; backpropagation through the solve (``direct``), the hand engine's checkpointed adjoint (``checkpoint``)
and the continuous adjoint (``adjoint``: the hand engine's, or torchdiffeq's ``odeint_adjoint``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import METHODS

FIXED = ("euler", "midpoint", "rk4-38")  # RK4 by the 3/8 rule: the one both implementations have
GRADIENTS = {"hand": ("direct", "checkpoint", "adjoint"), "torchdiffeq": ("direct", "adjoint")}
# The explicit methods' stability limits on the negative real axis (|h lambda| at the boundary of the stability
# region; Hairer and Wanner, IV.2), from the method table (config.Method.real_limit, tested against each tableau)
STABILITY = {name: m.real_limit for name, m in METHODS.items() if m.real_limit is not None}


@dataclass(frozen=True)
class Budget:
    """How much an audit does: ``seeds`` per cell, the ``steps`` and ``tolerances`` of its cells, the iterations
    (``None``: the problem's own; else at most this many), the grids of its transfer and work-precision, and which
    trained models work-precision measures (every one; the quick budget: those trained by the hand engine's
    backpropagation, one per solver)."""

    name: str
    seeds: int
    steps: tuple
    tolerances: tuple
    iterations: int | None
    transfer_steps: tuple
    wp_steps: tuple
    wp_tolerances: tuple
    reference_tol: float = 1e-9
    wp_on_every_model: bool = True  # False: work-precision on the hand engine's backpropagation-trained models only


BUDGETS = {
    "quick": Budget("quick", 1, (2,), (1e-3,), 30, (1, 4), (1, 4), (1e-3, 1e-6), wp_on_every_model=False),
    "standard": Budget("standard", 3, (1, 2, 4), (1e-3, 1e-5), None, (1, 2, 4, 8), (1, 2, 4, 8, 16, 32),
                       (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)),
}


def cells(budget: Budget) -> list[dict]:
    """Every cell of ``budget``: ``{implementation, method, steps | tol, gradient}``."""
    out = []
    for impl, grads in GRADIENTS.items():
        for method in FIXED + ("dopri5",):
            grids = [{"tol": t} for t in budget.tolerances] if method == "dopri5" else [{"steps": s} for s in budget.steps]
            for grid in grids:
                for gradient in grads:
                    out.append({"implementation": impl, "method": method, **grid, "gradient": gradient})
    return out


def label(cell: dict) -> str:
    """``hand rk4 x2 direct``, ``torchdiffeq dopri5 1e-05 adjoint``."""
    grid = f"x{cell['steps']}" if "steps" in cell else f"{cell['tol']:g}"
    impl = "tdq" if cell["implementation"] == "torchdiffeq" else "hand"
    return f"{impl} {cell['method']} {grid} {cell['gradient']}"


def solver_label(cell: dict) -> str:
    """The solve alone: ``rk4 x2``, ``dopri5 1e-05``."""
    return f"{cell['method']} " + (f"x{cell['steps']}" if "steps" in cell else f"{cell['tol']:g}")
