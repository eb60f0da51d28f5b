"""The tables and numbers of the tasks beyond the spiral and of the kinds every task gets: the dynamics task's
variant matrix, the solver-transfer matrices and the work-precision slopes."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import variants
from ..figures.tasks import TRANSFER, WORK_PRECISION, transfer_matrix
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _macro, _num, _table


def _median_iqr(v: pd.Series, fmt: str = "{:.3f}") -> tuple[float, str]:
    v = v.dropna().astype(float)
    if v.empty:
        return float("nan"), "--"
    med = float(v.median())
    if len(v) < 3:
        return med, fmt.format(med)
    return med, f"{fmt.format(med)} [{fmt.format(v.quantile(0.25))}, {fmt.format(v.quantile(0.75))}]"


def _dynamics_row(v: str, d: pd.DataFrame, N: Numbers) -> list[str]:
    ok = d[d["status"] == "ok"]
    m = "Dyn" + _macro(v)
    cells = [variants.get(v).label, str(len(d))]
    for col, name in (("traj_err", "Traj"), ("traj_err_own", "Own"), ("extrap_err", "Extrap"), ("field_err", "Field")):
        med, text = _median_iqr(ok[col], "{:.3f}" if col != "field_err" else "{:.3f}")
        N.add(m + name, med, "{:.3f}")
        cells.append(text)
    nfe = float(((ok["nfe_forward"] + ok["nfe_backward"]) / ok["iterations_completed"]).median()) if len(ok) else None
    N.add(m + "Nfe", nfe, "{:.0f}")
    N.add(m + "Seeds", len(d), "{:d}")
    N.add(m + "Failed", int((d["status"] != "ok").sum()), "{:d}")
    wall = float(ok["wall_time_s"].median()) if len(ok) else None
    return cells + [_num(nfe), _num(wall, "{:.0f}"), str(int((d["status"] != "ok").sum()))]


def dynamics_numbers(view: View, N: Numbers) -> str:
    """The dynamics task's variant matrix (medians over seeds with their interquartile range)."""
    df = view.runs("dynamics/main")
    if df.empty:
        raise MissingRuns("dynamics/main")
    rows = [_dynamics_row(v, df[df["variant"] == v], N) for v in variants.VARIANTS if v in set(df["variant"])]
    n = df.groupby("variant").size()
    N.add("DynSeeds", int(n.min()), "{:d}")
    N.add("DynVariants", len(n), "{:d}")
    first = df.iloc[0]
    for col, name, fmt in (("iterations", "Iterations", "{:d}"), ("batch_time", "BatchTime", "{:d}"),
                           ("batch_size", "BatchSize", "{:d}"), ("n_points", "Points", "{:d}"),
                           ("field_hidden", "Hidden", "{:d}"), ("t_end", "TEnd", "{:g}"),
                           ("t_extrapolate", "TExtra", "{:g}"), ("lr", "Lr", "{:g}")):
        N.add("Dyn" + name, int(first[col]) if fmt == "{:d}" else float(first[col]), fmt)
    N.add("DynParams", int(first["params"]), "{:d}")
    _ratio(N, "DynEulerOverRKfour", N.items.get("DynEulerTraj"), N.items.get("DynRKfourTraj"))
    return _table("l r l l l l r r r", ["variant", "seeds", "trajectory error", "own solver", "extrapolation",
                                        "field error", "NFE/it", "wall s", "failed"], rows,
                  "Medians [quartiles] over seeds; errors are RMS distances (field: relative RMS).")


def _ratio(N: Numbers, name: str, a, b) -> None:
    try:
        N.add(name, float(a) / float(b), "{:.1f}")
    except (TypeError, ValueError, ZeroDivisionError):
        N.add(name, None)


def _solver_word(solver: str) -> str:
    """A transfer solver's name as macro letters: ``euler-1`` -> ``Euler``, ``dopri5-1e-06`` -> ``DopriTolSix``,
    the float64 reference ``dopri5-1e-08-f64`` -> ``Ref``."""
    if solver.endswith("-f64"):
        return "Ref"
    method, grid = solver.rsplit("-", 1) if not solver.startswith("dopri5-") else ("dopri5", solver[7:])
    if method == "dopri5":
        return "DopriTol" + {"1e-03": "Three", "1e-06": "Six"}.get(grid, "Other")
    return {"euler": "Euler", "midpoint": "Midpoint", "rk4": "RKfour", "rk4-38": "RKtte"}[method]


def transfer_numbers(view: View, N: Numbers) -> str:
    """Each task's transfer matrix: every trained variant's metric (median over seeds) under every solver."""
    parts = []
    for task, experiment in TRANSFER.items():
        df = view.transfer(experiment)
        if df.empty:
            raise MissingRuns(experiment)
        table = transfer_matrix(df)
        percent = task == "spiral"
        prefix = "Tr" + task.capitalize()
        for v, row in table.iterrows():
            for solver, value in row.items():
                N.add(prefix + _macro(v) + _solver_word(solver), 100 * value if percent else value,
                      "{:.1f}" if percent else "{:.3f}")
        cells = [[variants.get(v).label] + [_num(100 * x if percent else x, "{:.1f}" if percent else "{:.3g}")
                                           for x in row] for v, row in table.iterrows()]
        head = ["trained \\textbackslash{} solved by"] + [s.replace("-f64", " f64") for s in table.columns]
        parts.append(f"% {task}: " + ("held-out accuracy (%)" if percent else "trajectory error (RMS)") + "\n"
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
    """The observed order of each hand fixed-step method (the slope of error against NFE) on each task's trained
    field, and the smallest gradient error each gradient method reaches."""
    for task, experiment in WORK_PRECISION.items():
        df = view.workprecision(experiment)
        if df.empty:
            raise MissingRuns(experiment)
        trained = df[df["field"] == "trained"]
        prefix = "Wp" + task.capitalize()
        for method, word in (("euler", "Euler"), ("midpoint", "Midpoint"), ("rk4", "RKfour"), ("rk4-38", "RKtte")):
            g = trained[(trained["what"] == "solution") & (trained["backend"] == "hand") & (trained["method"] == method)]
            N.add(prefix + word + "Order", _slope(g), "{:.2f}")
        grads = trained[trained["what"] == "gradient"]
        for (backend, method), g in grads.groupby(["backend", "method"]):
            word = {"hand": "Direct", "hand-checkpoint": "Ckpt", "hand-adjoint": "Adj", "torchdiffeq": "Tdq",
                    "torchdiffeq-adjoint": "TdqAdj"}[backend] + {"euler": "Euler", "rk4": "RKfour", "rk4-38": "RKtte",
                                                                "dopri5": "Dopri"}[method]
            N.add(prefix + word + "BestGrad", g["error"].min(), "{:.1e}")
