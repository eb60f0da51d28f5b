"""The order in which tables and legends show the parts of the kinds that every task gets: transfer solvers and
work-precision parts, by the method table."""
from __future__ import annotations

from ..config import METHODS


def solver_order(solver: dict) -> tuple:
    """Transfer solvers in the order tables show them: the method registry's order, fixed grids before tolerances,
    coarser first, the float64 reference last."""
    names = list(METHODS)
    index = names.index(solver["method"]) if solver["method"] in names else len(names)
    return (solver.get("dtype") == "float64", index, solver.get("steps", 0), -solver.get("tol", 0.0))


_GRADIENT_ORDER = ("hand", "hand-checkpoint", "hand-adjoint", "torchdiffeq", "torchdiffeq-adjoint")


def part_order(measure: dict) -> tuple:
    """Work-precision parts in the order tables and legends show them: solutions before gradients, the hand engine
    before torchdiffeq, then the method table's order, then the gradient methods' (direct, checkpointed, adjoint)."""
    names, backend = list(METHODS), str(measure.get("backend"))
    return (measure.get("what") != "solution", not backend.startswith("hand"),
            names.index(measure["method"]) if measure.get("method") in names else len(names),
            _GRADIENT_ORDER.index(backend) if backend in _GRADIENT_ORDER else len(_GRADIENT_ORDER), backend)
