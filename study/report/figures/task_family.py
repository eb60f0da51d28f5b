"""The figures every task gets from its description alone (:mod:`study.tasks`: its metrics, their direction and
unit, its primary metric), whatever else it draws: a new task has them without a line of report code.

* ``task_<name>_results``: each metric of each variant of the task's ``main``, every seed a dot, the median a mark;
* ``task_<name>_curves``: the training loss over iterations, the median over seeds per variant;
* ``task_<name>_cost``: the primary metric against the training evaluations (forward and backward) and against the
  training wall time, every seed.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ... import tasks
from .. import style
from ..results import View
from .common import _need, _plt, seed_scatter


def _main(view: View, task: str, every: bool = False) -> pd.DataFrame:
    """The task's ``main`` runs that trained (``every``: failed ones too)."""
    experiment = tasks.experiment(task, "main")
    df = _need(view.runs(experiment, "train"), experiment)
    return df.copy() if every else df[df["status"] == "ok"].copy()


def _failures(ax, every: pd.DataFrame, order: list) -> None:
    """Each variant's failed seeds, written where its dots would be (a variant that failed on every seed has
    none)."""
    if (every["status"] != "ok").any():
        ax.set_xlim(-0.7, len(order) - 0.3)  # the first and the last label inside
    for i, v in enumerate(order):
        d = every[every["variant"] == v]
        failed = int((d["status"] != "ok").sum())
        if failed:
            ax.text(i, 0.03, f"{failed}/{len(d)} failed", transform=ax.get_xaxis_transform(), rotation=90,
                    ha="center", va="bottom", fontsize=5, color="#b2182b")


def _values(df: pd.DataFrame, metric) -> pd.Series:
    return df[metric.name].astype(float) * (100.0 if metric.percent else 1.0)


def _label(metric) -> str:
    return metric.label + (" (%)" if metric.percent else f" ({metric.unit})" if metric.unit else "")


def fig_results(view: View, out: Path, task: str):
    every = _main(view, task, every=True)
    df = every[every["status"] == "ok"]
    metrics = [m for m in tasks.get(task).METRICS if m.name in every]
    order = style.ordered(every["variant"].unique())
    plt = _plt()
    fig, axes = plt.subplots(len(metrics), 1, figsize=(style.TEXT, 1.5 * len(metrics) + 0.9), squeeze=False,
                             sharex=True)
    for ax, m in zip(axes[:, 0], metrics):
        for i, v in enumerate(order):
            y = _values(df[df["variant"] == v], m).to_numpy()
            y = y[np.isfinite(y)]
            ax.scatter(np.full(len(y), i), y, s=9, color=style.colour(v), alpha=0.45, linewidths=0)
            if len(y):
                ax.scatter([i], [np.median(y)], s=30, color=style.colour(v), marker=style.marker(v),
                           edgecolors="k", linewidths=0.4)
        positive = bool((_values(df, m) > 0).all())
        if positive and not m.percent and _values(df, m).max() > 20 * _values(df, m).min():
            ax.set_yscale("log")
        ax.set_ylabel("%" if m.percent else (m.unit or "value"), fontsize=6)
        ax.set_title(f"{m.label}: {m.direction}" + ("  [primary]" if m.name == tasks.get(task).PRIMARY else ""),
                     fontsize=7)
        _failures(ax, every, order)
    axes[-1, 0].set_xticks(range(len(order)), [style.label(v) for v in order], rotation=60, ha="right", fontsize=6)
    failed = " (red: seeds whose training failed)" if (every["status"] != "ok").any() else ""
    fig.suptitle(f"{task}: every metric of every variant (dots: seeds; marks: medians){failed}", fontsize=8)
    fig.tight_layout()
    return fig


def fig_curves(view: View, out: Path, task: str):
    experiment = tasks.experiment(task, "main")
    c = _need(view.task_curves(experiment), experiment)
    c = c[(c["status"] == "ok") & c["loss"].notna()]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(style.TEXT, 2.8))
    for v in style.ordered(c["variant"].unique()):
        med = c[c["variant"] == v].groupby("iteration")["loss"].median()
        ax.plot(med.index, med.to_numpy(), color=style.colour(v), ls=style.line(v), label=style.label(v), lw=1.0)
    if (c["loss"] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("training loss (median over seeds)")
    ax.set_title(f"{task}: training loss")
    ax.legend(fontsize=5, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.02))
    fig.tight_layout()
    return fig


def fig_cost(view: View, out: Path, task: str):
    df = _main(view, task)
    primary = tasks.primary(task)
    df["y"] = _values(df, primary)
    df["nfe"] = df["nfe_forward"].astype(float) + df["nfe_backward"].astype(float)
    df = df[np.isfinite(df["y"]) & (df["nfe"] > 0)]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.5), sharey=True)
    for ax, (x, word) in zip(axes, (("nfe", "training evaluations, forward + backward"),
                                    ("wall_time_s", "training wall time per seed (s, contended)"))):
        seed_scatter(ax, df, x, "y")
        ax.set_xscale("log")
        ax.tick_params(axis="x", which="both", labelsize=5, labelrotation=35)  # minor labels within a decade
        ax.set_xlabel(word)
    if (df["y"] > 0).all() and df["y"].max() > 20 * df["y"].min():  # a broken seed far off: every seed in view
        axes[0].set_yscale("log")
    axes[0].set_ylabel(_label(primary))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=5.5, bbox_to_anchor=(0.5, -0.22))
    fig.suptitle(f"{task}: {primary.label} against cost ({primary.direction})", fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {  # name -> (function, the experiments it reads): three per task
    f"task_{t}_{kind}": (partial(fn, task=t), [tasks.experiment(t, "main")])
    for t in tasks.TASKS for kind, fn in (("results", fig_results), ("curves", fig_curves), ("cost", fig_cost))
}
