"""The stiffness remedies' figure: for each task with a remedies experiment, the adaptive solves' evaluations per
iteration over training with and without each remedy, and the task's metric per variant and remedy (the table gives
the wall times)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import tasks
from .. import style
from ..remedy_arms import ARM_COLOURS, ARM_LABELS, label_arms, with_remedies
from ..results import View
from .common import _need, _plt

TASKS = with_remedies()
EXPERIMENTS = [tasks.experiment(t, "remedies") for t in TASKS]
ADAPTIVE = ["hand-dopri5", "tdq-dopri5"]


def _nfe_panel(ax, curves: pd.DataFrame, variant: str) -> None:
    """Median forward evaluations per iteration over training, one line per arm."""
    mine = curves[curves["variant"] == variant]
    for arm in [a for a in ARM_LABELS if a in set(mine["arm"])]:
        med = mine[mine["arm"] == arm].groupby("iteration")["nfe_forward"].median()
        per_it = med / np.diff(np.concatenate([[0], med.index]))
        ax.plot(med.index, per_it, color=ARM_COLOURS.get(arm, "k"), lw=1.0, label=ARM_LABELS.get(arm, arm))
    ax.set_title(f"{style.label(variant)}: forward NFE per iteration", fontsize=7)
    ax.set_xlabel("iteration")


def _metric_panel(ax, runs: pd.DataFrame, task: str) -> None:
    """Each run's metric per (variant, arm): dots, median bars; failed runs as crosses at the bottom."""
    metric = tasks.primary(task)
    arms = [a for a in ARM_LABELS if a in set(runs["arm"])]
    variants_ = style.ordered(runs["variant"].unique())
    width = 0.8 / max(len(arms), 1)
    for i, v in enumerate(variants_):
        for j, arm in enumerate(arms):
            d = runs[(runs["variant"] == v) & (runs["arm"] == arm)]
            x = i - 0.4 + width * (j + 0.5)
            ok = d[d["status"] == "ok"][metric.name].astype(float)
            ax.scatter(np.full(len(ok), x), ok, s=6, color=ARM_COLOURS.get(arm, "k"), alpha=0.7, linewidths=0)
            if len(ok):
                ax.plot([x - width / 2.5, x + width / 2.5], [ok.median()] * 2, color=ARM_COLOURS.get(arm, "k"), lw=1.2)
            failed = int((d["status"] != "ok").sum())
            if failed:
                ax.annotate(f"{failed}x", (x, 0.02), xycoords=("data", "axes fraction"), ha="center", fontsize=5,
                            color="#b00000")
    ax.set_xticks(range(len(variants_)), [style.label(v).replace(" (", "\n(") for v in variants_], fontsize=6)
    ax.set_title(f"{metric.label} ({metric.unit})" if metric.unit else metric.label, fontsize=7)


def fig_remedies(view: View, out: Path):
    rows = []
    for task, name in zip(TASKS, EXPERIMENTS):
        runs = view.runs(name)
        if runs is not None and not runs.empty:
            runs = label_arms(runs)
            curves = view.task_curves(name)
            curves["arm"] = curves["hash"].map(runs.set_index("hash")["arm"])
            rows.append((task, runs, curves))
    _need(pd.DataFrame(rows), ", ".join(EXPERIMENTS))
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 3, figsize=(style.TEXT, 2.3 * len(rows)), squeeze=False)
    for (task, runs, curves), row in zip(rows, axes):
        curves = curves[curves["status"] == "ok"]
        for ax, v in zip(row[:2], ADAPTIVE):
            _nfe_panel(ax, curves, v)
        row[0].set_ylabel(f"{task}")
        _metric_panel(row[2], runs, task)
    from matplotlib.lines import Line2D

    present = [a for a in ARM_LABELS if any(a in set(r["arm"]) for _, r, _ in rows)]
    handles = [Line2D([], [], color=ARM_COLOURS[a], lw=1.5) for a in present]
    fig.legend(handles, [ARM_LABELS[a] for a in present], loc="lower center", ncol=len(present), fontsize=6.5,
               bbox_to_anchor=(0.5, -0.03), title="remedy", title_fontsize=6.5)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


FIGURES = {"fig24_remedies": (fig_remedies, EXPERIMENTS)}
