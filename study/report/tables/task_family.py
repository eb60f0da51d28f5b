"""The table every task gets from its description alone: ``task_<name>.tex``, one row per variant of its
``main`` with the seeds that trained and failed, each metric as its median and the range of its seeds (the
seeds' spread shown, never hidden behind a median), and the training evaluations and wall time per seed."""
from __future__ import annotations

import math

import numpy as np

from ... import tasks
from .. import style
from ..results import View
from .common import _num, _table


def _cell(values, percent: bool) -> str:
    v = np.asarray(values, dtype=float) * (100.0 if percent else 1.0)
    v = v[np.isfinite(v)]
    if not len(v):
        return "--"
    fmt = (lambda x: f"{x:.1f}") if percent else (lambda x: f"{x:.3g}")  # noqa: E731
    if len(v) == 1:
        return fmt(v[0]) + "$^1$"  # one seed
    return f"{fmt(float(np.median(v)))} [{fmt(float(v.min()))}, {fmt(float(v.max()))}]"


def task_table(view: View, task: str) -> str:
    experiment = tasks.experiment(task, "main")
    df = view.runs(experiment, "train")
    metrics = [m for m in tasks.get(task).METRICS if m.name in df]
    extra = [c for c in EXTRA if c[0] in df]  # what only some tasks' records hold (a stiff task's)
    rows = []
    for v in style.ordered(df["variant"].unique()):
        d = df[df["variant"] == v]
        ok = d[d["status"] == "ok"]
        nfe = (ok["nfe_forward"].astype(float) + ok["nfe_backward"].astype(float)).median() if len(ok) else math.nan
        wall = ok["wall_time_s"].astype(float).median() if len(ok) else math.nan
        rows.append([style.label(v), f"{len(ok)}/{len(d)}"] + [_cell(ok[m.name], m.percent) for m in metrics]
                    + [_num(nfe), _num(wall, "{:,.1f}")] + [_cell(ok[c], False) for c, _ in extra])
    header = ["variant", "ok/seeds"] + [m.label + (" (\\%)" if m.percent else "") for m in metrics] + [
        "train NFE", "wall s"] + [label for _, label in extra]
    notes = (" $h\\rho$: the training step times the field's largest Jacobian spectral radius on the data at the "
             "end of training (explicit stability limits: Euler 2, RK4 2.79, dopri5 3.31); Newton: iterations in "
             "training." if extra else "")
    return _table("l" + "r" * (len(header) - 1), header, rows,
                  f"{task}: median [min, max] over the seeds that trained; $^1$: one seed." + notes)


EXTRA = (("stiffness.h_rho_end", "$h\\rho$ end"), ("newton_iterations", "Newton"))


def builders() -> dict:
    """``{file: (builder, the experiments it reads)}`` for every task."""
    return {f"task_{t}": ((lambda view, N, t=t: task_table(view, t)), (tasks.experiment(t, "main"),))
            for t in tasks.TASKS}
