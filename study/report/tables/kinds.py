"""The tables and numbers of the experiment kinds every task gets: the solver-transfer matrices (macros
``Tr<Task><Variant><Solver>``) and the work-precision orders and best gradient errors (``Wp<Task>...``)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ... import variants
from ...config import METHODS
from ..figures.kinds import TRANSFER, WORK_PRECISION, metric_words, transfer_matrix
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _backend_macro, _macro, _num, _table, method_macro


def _solver_word(solver: str) -> str:
    """A transfer solver's name (:func:`study.config.solver_label`) as macro letters, its method's from the method
    table: ``euler-1`` -> ``Euler``, ``dopri5-1e-06`` -> ``DopriTolSix``, the float64 reference
    ``dopri5-1e-08-f64`` -> ``Ref``."""
    if solver.endswith("-f64"):
        return "Ref"
    adaptive = re.fullmatch(r"(.+)-(\d+e[-+]\d+)", solver)  # method-tolerance; else method-steps
    if adaptive:
        method, tol = adaptive.groups()
        return method_macro(method) + "Tol" + {"1e-03": "Three", "1e-06": "Six"}.get(tol, "Other")
    return method_macro(solver.rsplit("-", 1)[0])


def transfer_numbers(view: View, N: Numbers) -> str:
    """Each task's transfer matrix: every trained variant's metric (median over seeds) under every solver."""
    parts = []
    for task, experiment in TRANSFER.items():
        df = view.transfer(experiment)
        if df.empty:
            raise MissingRuns(experiment)
        table = transfer_matrix(df)
        percent, what = metric_words(task)
        prefix = "Tr" + task.capitalize()
        for v, row in table.iterrows():
            for solver, value in row.items():
                N.add(prefix + _macro(v) + _solver_word(solver), 100 * value if percent else value,
                      "{:.1f}" if percent else "{:.3f}")
        cells = [[variants.get(v).label] + [_num(100 * x if percent else x, "{:.1f}" if percent else "{:.3g}")
                                           for x in row] for v, row in table.iterrows()]
        head = ["trained \\textbackslash{} solved by"] + [s.replace("-f64", " f64") for s in table.columns]
        parts.append(f"% {task}: {what}\n"
                     + _table("l" + "r" * len(table.columns), head, cells, f"Transfer, task {task}."))
    return "\n".join(parts)


def _slope(g: pd.DataFrame) -> float | None:
    g = g.dropna(subset=["error", "nfe"])
    g = g[(g["error"] > 0) & (g["error"] < 1e-1)]  # the asymptotic range, above float64's floor
    g = g[g["error"] > 1e-13]
    if len(g) < 3:
        return None
    return float(-np.polyfit(np.log(g["nfe"].astype(float)), np.log(g["error"].astype(float)), 1)[0])


def workprecision_numbers(view: View, N: Numbers) -> None:
    """The observed order of each hand fixed-step method of the method table (the slope of error against NFE) on
    each task's trained field, and the smallest gradient error each gradient method reaches."""
    for task, experiment in WORK_PRECISION.items():
        df = view.workprecision(experiment)
        if df.empty:
            raise MissingRuns(experiment)
        trained = df[df["field"] == "trained"]
        prefix = "Wp" + task.capitalize()
        solutions = trained[(trained["what"] == "solution") & (trained["backend"] == "hand")]
        for method in (m for m in METHODS.values() if m.tableau is not None and not m.adaptive):
            N.add(prefix + method.macro + "Order", _slope(solutions[solutions["method"] == method.name]), "{:.2f}")
        errors = [r.get("trained") for r in view.workprecision_reference_errors(experiment)]
        worst = max((e for e in errors if e is not None), default=None)
        N.add(prefix + "RefGradError", None if worst is None else _sci(worst))
        grads = trained[trained["what"] == "gradient"]
        for (backend, method), g in grads.groupby(["backend", "method"]):
            N.add(prefix + _backend_macro(backend) + method_macro(method) + "BestGrad", g["error"].min(), "{:.1e}")


def _sci(x: float) -> str:
    """``2.1e-09`` as LaTeX writes it, ``$2\\times 10^{-9}$`` (one significant digit)."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"${mantissa}\\times 10^{{{int(exponent)}}}$"
