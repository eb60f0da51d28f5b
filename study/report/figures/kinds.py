"""The figures of the experiment kinds every task gets, one panel per task: the solver-transfer matrices
and the work-precision diagrams."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import tasks
from .. import style
from ..results import View
from .common import _need, _plt

TRANSFER = {t: tasks.experiment(t, "transfer") for t in tasks.TASKS}  # task -> its transfer experiment
WORK_PRECISION = {t: tasks.experiment(t, "work-precision") for t in tasks.TASKS}


def metric_words(task: str) -> tuple[bool, str]:
    """Whether task's primary metric is shown in percent, and its words (label and unit) for a title."""
    m = tasks.primary(task)
    what = m.label.split(",")[0]  # "held-out NLL, reference solve": here each column's solver evaluates
    return m.percent, what + " under each column's solver" + (" (%)" if m.percent else f" ({m.unit})" if m.unit else "")


def transfer_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of each trained variant's metric under each transfer solver (rows: variants in registry
    order; columns: solvers in the records' order, one that failed on every model a column of NaN)."""
    ok = df[df["status"] == "ok"]
    solvers = list(dict.fromkeys(ok["solver"]))
    table = ok.pivot_table(index="variant", columns="solver", values="value", aggfunc="median")
    return table.reindex(index=style.ordered(table.index), columns=solvers)  # a solver that failed everywhere: NaN


def _ink(im, value: float) -> str:
    """Black or white, whichever reads on the cell's colour (by its luminance)."""
    if not np.isfinite(value):
        return "k"
    r, g, b, _ = im.cmap(im.norm(value))
    return "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"


def _transfer_panel(ax, table: pd.DataFrame, percent: bool, title: str) -> None:
    vals = table.to_numpy(dtype=float)
    shown = 100 * vals if percent else np.log10(vals)
    im = ax.imshow(shown, aspect="auto", cmap="viridis" if percent else "viridis_r")
    for (i, j), v in np.ndenumerate(vals):
        text = "-" if not np.isfinite(v) else (f"{100 * v:.1f}" if percent else f"{v:.3g}")
        ax.text(j, i, text, ha="center", va="center", fontsize=5.5, color=_ink(im, shown[i, j]))
    ax.set_xticks(range(vals.shape[1]), table.columns, rotation=45, ha="right", fontsize=6)
    ax.set_yticks(range(vals.shape[0]), [style.label(v) for v in table.index], fontsize=6)
    ax.set_title(title)
    ax.grid(False)
    return im


def _present(frames: list, experiments) -> list:
    """The ``(task, frame)`` pairs of the tasks that have records (a task added without its runs yet is left
    out); MissingRuns if none has."""
    present = [(task, df) for task, df in frames if df is not None and not df.empty]
    if not present:
        _need(None, ", ".join(experiments))
    return present


def fig_transfer(view: View, out: Path):
    frames = _present([(task, view.transfer(name)) for task, name in TRANSFER.items()], TRANSFER.values())
    panels = [(task, transfer_matrix(df)) for task, df in frames]
    plt = _plt()
    heights = [max(1.0, 0.16 * len(t) + 0.9) for _, t in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(style.TEXT * 0.75, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights})
    for ax, (task, table) in zip(np.atleast_1d(axes), panels):
        percent, what = metric_words(task)
        what += "" if percent else ", colour: log"
        _transfer_panel(ax, table, percent, f"{task}: {what}, median over seeds; rows trained, columns evaluated")
    fig.tight_layout()
    return fig


WP_CLIP = 1e3  # relative errors above this are drawn at it: a blown-up solve's size says nothing more


def _wp_panel(ax, d: pd.DataFrame, what: str, title: str) -> None:
    backends = {"hand": "-", "torchdiffeq": "--", "hand-checkpoint": (0, (5, 1)), "hand-adjoint": ":",
                "torchdiffeq-adjoint": "-."}
    for (backend, method), g in d[d["what"] == what].groupby(["backend", "method"], sort=False):
        g = g.dropna(subset=["error", "nfe"])
        g = g[g["error"] > 0]
        if g.empty:
            continue
        cost = g["nfe"] + (g["nfe_backward"].fillna(0) if what == "gradient" else 0)
        err = g["error"].clip(upper=WP_CLIP)  # a blown-up solve (a stiff field's explicit steps) at the top edge
        ax.plot(cost, err, color=style.method_colour(method), ls=backends.get(backend, "-"), marker="o",
                ms=2.5, label=f"{method} ({backend})")
        over = g["error"] > WP_CLIP
        if over.any():
            ax.scatter(cost[over], err[over], marker="^", s=14, color=style.method_colour(method), zorder=3)
            ax.set_title(title + f" (triangles: above {WP_CLIP:.0e})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if not ax.get_title():
        ax.set_title(title)
    ax.set_xlabel("NFE" if what == "solution" else "NFE, forward + backward")


def fig_work_precision(view: View, out: Path):
    frames = _present([(task, view.workprecision(name)) for task, name in WORK_PRECISION.items()],
                      WORK_PRECISION.values())
    plt = _plt()
    fig, axes = plt.subplots(len(frames), 2, figsize=(style.TEXT, 2.5 * len(frames)), squeeze=False)
    for row, (task, df) in zip(axes, frames):
        trained = df[df["field"] == "trained"]
        _wp_panel(row[0], trained, "solution", f"{task}: end state, relative error")
        _wp_panel(row[1], trained, "gradient", f"{task}: loss gradient, relative error")
        row[0].set_ylabel("error vs float64 reference (1e-12)")
    fig.tight_layout()
    for ax in axes[-1]:  # one legend per column, below the panels: every task has the same methods
        ax.legend(fontsize=5.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig18_transfer": (fig_transfer, list(TRANSFER.values())),
    "fig19_work_precision": (fig_work_precision, list(WORK_PRECISION.values())),
}
