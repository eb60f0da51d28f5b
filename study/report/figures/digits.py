"""The digits task's figure: held-out accuracy of every variant against its cost, with the controls on the same
split as lines (the logistic regression, the parameter-matched MLP and the model without a flow)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import style
from ..results import View
from .common import _need, _plt, seed_scatter

MAIN, CONTROLS = "digits/main", "digits/controls"
CONTROL_LINES = (("logistic regression", "#999999", "--"), ("MLP, same parameters", "#666666", ":"),
                 ("no flow", "#BBBBBB", "-."))


def _controls(df: pd.DataFrame, controls: pd.DataFrame) -> list[float]:
    ok = lambda d: d[d["status"] == "ok"]["test_acc"]  # noqa: E731
    return [100 * float(df["logistic_regression"].iloc[0]), 100 * float(ok(controls).median()),
            100 * float(ok(df[df["variant"] == "no-flow"]).median())]


def fig_digits(view: View, out: Path):
    df, controls = _need(view.runs(MAIN), MAIN), _need(view.runs(CONTROLS), CONTROLS)
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    lines = _controls(df, controls)
    ok = df[(df["status"] == "ok") & (df["nfe_forward"] > 0)].copy()  # the flows (the controls are lines)
    ok["acc"] = 100 * ok["test_acc"]
    ok["nfe"] = (ok["nfe_forward"] + ok["nfe_backward"]) / ok["epochs_completed"]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.5), sharey=True)
    seed_scatter(axes[0], ok, "nfe", "acc")
    seed_scatter(axes[1], ok, "wall_time_s", "acc")
    for ax in axes:
        for (label, colour, ls), y in zip(CONTROL_LINES, lines):
            ax.axhline(y, color=colour, ls=ls, lw=0.9, label=label if ax is axes[0] else None)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis collide
    axes[0].set_xlabel("NFE per epoch (forward + backward)")
    axes[1].set_xlabel("training wall time per run (s)")
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[0].set_title("accuracy against evaluations")
    axes[1].set_title("accuracy against time")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=5.5, bbox_to_anchor=(0.5, -0.27))
    fig.tight_layout()
    return fig


FIGURES = {"fig25_digits": (fig_digits, [MAIN, CONTROLS])}
