"""The stiffness remedies' table and numbers: per task with a remedies experiment, each (variant, remedy) with its
seeds, failures, metric, evaluations per iteration at the start and end of training, and wall time."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import tasks, variants
from ..numbers import Numbers
from ..remedy_arms import ARM_LABELS, ARM_MACROS, label_arms, with_remedies
from ..results import MissingRuns, View
from ..stats import task_failed
from .common import _macro, _median_iqr, _num, _table

TASKS = with_remedies()
EXPERIMENTS = tuple(tasks.experiment(t, "remedies") for t in TASKS)
TASK_MACROS = {"spiral": "Spi", "dynamics": "Dyn", "density": "Den", "digits": "Dig"}


def _nfe_at(curves: pd.DataFrame, first: bool) -> float | None:
    """Median over runs of the forward evaluations per iteration over the first (or last) curve interval."""
    vals = []
    for _, d in curves.groupby("hash"):
        d = d.sort_values("iteration")
        its = np.diff(np.concatenate([[0], d["iteration"].to_numpy()]))
        nfe = d["nfe_forward"].to_numpy() / its
        if len(nfe):
            vals.append(nfe[0] if first else nfe[-1])
    return float(np.median(vals)) if vals else None


def _row(task: str, v: str, arm: str, d: pd.DataFrame, curves: pd.DataFrame, N: Numbers) -> list[str]:
    metric = tasks.primary(task)
    ok = d[d["status"] == "ok"]
    m = f"Rem{TASK_MACROS.get(task, task.title())}{_macro(v)}{ARM_MACROS[arm]}"
    med, text = _median_iqr(ok[metric.name], "{:.3f}")
    start, end = _nfe_at(curves, True), _nfe_at(curves, False)
    wall = float(ok["wall_time_s"].median()) if len(ok) else None
    failed = int(task_failed(task, d).sum())
    for name, value, fmt in (("Metric", med, "{:.3f}"), ("NfeStart", start, "{:.0f}"), ("NfeEnd", end, "{:.0f}"),
                             ("Wall", wall, "{:.0f}"), ("Failed", failed, "{:d}"), ("Seeds", len(d), "{:d}")):
        N.add(m + name, value, fmt)
    return [variants.get(v).label, ARM_LABELS[arm], str(len(d)), str(failed), text, _num(start), _num(end),
            _num(wall)]


def _fisher(task: str, a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Fisher's exact test, two-sided: are the failures (:func:`study.report.stats.task_failed`) of ``a`` and
    ``b`` different?"""
    from scipy.stats import fisher_exact

    fa, fb = int(task_failed(task, a).sum()), int(task_failed(task, b).sum())
    return float(fisher_exact([[fa, len(a) - fa], [fb, len(b) - fb]]).pvalue)


def _arm_numbers(N: Numbers) -> None:
    """The remedies' settings (RemKinetic, RemJacobian, RemSteer, RemWeightDecay)."""
    from ...experiments import REMEDY_ARMS

    for field, name in (("kinetic", "Kinetic"), ("jacobian", "Jacobian"), ("steer", "Steer"),
                        ("weight_decay", "WeightDecay")):
        value = next(arm[field] for arm in REMEDY_ARMS.values() if field in arm)
        N.add("Rem" + name, value, "{:g}")


def remedies_numbers(view: View, N: Numbers) -> str:
    _arm_numbers(N)
    rows = []
    for task, name in zip(TASKS, EXPERIMENTS):
        runs = view.runs(name)
        if runs.empty:
            raise MissingRuns(name)
        runs, curves = label_arms(runs), view.task_curves(name)
        for v in variants.VARIANTS:
            for arm in ARM_LABELS:
                d = runs[(runs["variant"] == v) & (runs["arm"] == arm)]
                if len(d):
                    c = curves[curves["hash"].isin(set(d[d["status"] == "ok"]["hash"]))]
                    rows.append([task] + _row(task, v, arm, d, c, N))
                    none = runs[(runs["variant"] == v) & (runs["arm"] == "none")]
                    if arm != "none" and len(none):
                        N.add(f"Rem{TASK_MACROS.get(task, task.title())}{_macro(v)}{ARM_MACROS[arm]}FailP",
                              _fisher(task, d, none), "{:.2f}")
    return _table("l l l r r l r r r", ["task", "variant", "remedy", "seeds", "failed", "metric", "NFE/it start",
                                        "NFE/it end", "wall s"], rows,
                  "Metric: the task's primary one, median [quartiles]; NFE/it: forward evaluations per iteration over "
                  "the first and last curve interval (median over runs).")
