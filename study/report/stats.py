"""The study's statistics, in one place: t-based intervals, medians and the failure rule.

* Intervals are Student-t 95% confidence intervals of the mean (no bootstrap: with
  n <= 10 seeds a percentile bootstrap under-covers);
* results that can be bimodal (a seed that trains well or fails) are summarised by
  their median and a failure count beside the mean;
* a training run **failed** when it diverged (non-finite loss or solver failure)
  or ended in an unrecovered loss spike: its last-epoch loss above
  :data:`SPIKE_RATIO` times the lowest epoch loss it reached.  The count is
  reported at :data:`SPIKE_RATIOS` too, so that a reader sees how much it hangs on
  the threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SPIKE_RATIO = 1.5
SPIKE_RATIOS = (1.25, 1.5, 2.0)


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the Student-t interval; half-width NaN for fewer than two values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


@dataclass(frozen=True)
class Summary:
    """One cell: seeds planned, failures under the rule, and the finished runs' accuracy (%)."""

    n: int
    failed: int
    median: float
    mean: float
    half: float  # t 95% half-width
    values: tuple

    def text(self, digits: int = 1) -> str:
        """``median (mean +- half)`` for tables (the median alone from one run)."""
        if not self.values:
            return "--"
        ci = f" ({self.mean:.{digits}f} $\\pm$ {self.half:.{digits}f})" if math.isfinite(self.half) else ""
        return f"{self.median:.{digits}f}{ci}"

    def mean_text(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} $\\pm$ {self.half:.{digits}f}" if math.isfinite(self.half) else "--"


def failed(runs: pd.DataFrame, ratio: float = SPIKE_RATIO) -> pd.Series:
    """Per run (aligned with ``runs``): diverged, or last-epoch loss above ``ratio`` x its lowest."""
    spiked = runs["loss_last"] > ratio * runs["loss_min"]
    return (runs["status"] == "diverged") | spiked.fillna(False)


def task_failed(task: str, runs: pd.DataFrame) -> pd.Series:
    """The study's rule for a failed run on any task: it did not finish (diverged, or an error), or, on a task whose
    metric is an accuracy, it ended in an unrecovered loss spike (:func:`failed`).  An NLL or a trajectory error
    near its floor makes a loss ratio meaningless, so the spike rule applies to classification only."""
    from .. import tasks

    m = tasks.primary(task)
    if m.percent and m.higher_is_better and m.target is None and {"loss_last", "loss_min"} <= set(runs.columns):
        return failed(runs) | (runs["status"] != "ok")
    return runs["status"] != "ok"


def summarise(runs: pd.DataFrame, key: str = "test_acc", ratio: float = SPIKE_RATIO) -> Summary:
    """``runs``' accuracies (%) of the runs that finished (ok, whether or not they spiked); failures counted."""
    runs = runs[runs["status"].isin(["ok", "diverged"])]
    ok = runs[runs["status"] == "ok"]
    v = 100 * ok[key].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    mean, half = t_interval(v)
    return Summary(len(runs), int(failed(runs, ratio).sum()) if len(runs) else 0,
                   float(np.median(v)) if len(v) else float("nan"), mean, half, tuple(v))


def reference_scaled(df, column: str = "step_time_s"):
    """Times measured one job after another, on one scale: each row's ``ratio_to_reference`` (its median ratio to
    a reference step timed in alternation with it) times the reference's median over the rows.  A drifting
    machine moves the jobs' absolute times apart while each ratio stays put.  Rows without a reference (older
    records) keep ``column``."""
    if "ratio_to_reference" not in df or df["ratio_to_reference"].isna().any():
        return df[column]
    return df["ratio_to_reference"] * df["reference_step_time_s"].median()
