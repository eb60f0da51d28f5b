"""The dynamics task's figures: its fits (true and learned trajectories, phase portraits), metrics against
cost, and training curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import style
from ..results import View
from .common import _need, _plt, seed_scatter

FIT_VARIANTS = ["euler", "rk4", "hand-dopri5", "adjoint-dopri5"]  # the dynamics fits drawn, seed 0 each


def _truth(times):
    from ...tasks import dynamics

    return dynamics.truth(np.asarray(times))


def _fit_panels(axes, d: dict, t_end: float) -> None:
    """One variant's fit: y1 over time (truth, reference rollout, training solver's rollout) and the phase
    portrait with the learned field."""
    t = np.asarray(d["times"])
    fine = np.linspace(0.0, t[-1], 2000)
    true, ref, own = _truth(fine), np.asarray(d["rollout"], float), np.asarray(d["rollout_own"], float)
    top, bottom = axes
    top.plot(fine, true[:, 0], color="#999999", lw=2.2, label="truth")
    top.plot(t, ref[:, 0], color=style.colour(d["variant"]), label="learned, reference solve")
    top.plot(t[: len(own)], own[:, 0], color="k", lw=0.7, ls="--", label="learned, training solver")
    top.axvspan(t_end, t[-1], color="#f0f0f0", zorder=0)
    top.set_title(style.label(d["variant"]))
    top.set_xlabel("t")
    q = np.asarray(d["quiver"], float)
    norm = np.hypot(q[:, 2], q[:, 3])
    norm[norm == 0] = 1.0
    bottom.quiver(q[:, 0], q[:, 1], q[:, 2] / norm, q[:, 3] / norm, color="#c8c8c8", angles="xy", width=0.005,
                  scale=22)
    bottom.plot(true[:, 0], true[:, 1], color="#999999", lw=2.2)
    bottom.plot(ref[:, 0], ref[:, 1], color=style.colour(d["variant"]), lw=1.0)
    bottom.set_xlabel("$y_1$")
    bottom.set_aspect("equal", adjustable="datalim")


def fig_dynamics_fit(view: View, out: Path):
    data = {d["variant"]: d for d in view.figure_data("dynamics/main") if d["seed"] == 0}
    shown = [v for v in FIT_VARIANTS if v in data]
    _need(pd.DataFrame(shown), "dynamics/main")
    runs = view.runs("dynamics/main")
    t_end = float(runs["t_end"].iloc[0])
    plt = _plt()
    fig, axes = plt.subplots(2, len(shown), figsize=(style.TEXT, 3.6), squeeze=False)
    for i, v in enumerate(shown):
        _fit_panels(axes[:, i], data[v], t_end)
    axes[0, 0].set_ylabel("$y_1(t)$")
    axes[1, 0].set_ylabel("$y_2$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels + [], loc="upper center", ncol=3, fontsize=6, bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    return fig


def _medians(df: pd.DataFrame, cols) -> pd.DataFrame:
    g = df.groupby("variant")
    out = g[cols].median()
    out["seeds"] = g.size()
    return out.loc[style.ordered(out.index)]


def fig_dynamics_cost(view: View, out: Path):
    df = _need(view.runs("dynamics/main"), "dynamics/main")
    df = df[df["status"] == "ok"].copy()
    df["nfe"] = (df["nfe_forward"] + df["nfe_backward"]) / df["iterations_completed"]
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(style.TEXT, 2.4))
    for ax, (metric, title) in zip(axes, (("traj_err", "trajectory error (reference solve)"),
                                          ("traj_err_own", "trajectory error (training solver)"),
                                          ("field_err", "vector-field error (relative)"))):
        seed_scatter(ax, df, "nfe", metric)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("NFE per iteration (forward + backward)")
    axes[0].set_ylabel("RMS error (median: large markers)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=5.5, bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    return fig


def fig_dynamics_training(view: View, out: Path):
    c = _need(view.task_curves("dynamics/main"), "dynamics/main")
    c = c[c["status"] == "ok"]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.3))
    for v in style.ordered(c["variant"].unique()):
        d = c[c["variant"] == v]
        med = d.groupby("iteration")[["field_err", "nfe_forward", "nfe_backward"]].median()
        axes[0].plot(med.index, med["field_err"], color=style.colour(v), ls=style.line(v), label=style.label(v))
        per_it = (med["nfe_forward"] + med["nfe_backward"]) / np.diff(np.concatenate([[0], med.index]))
        axes[1].plot(med.index, per_it, color=style.colour(v), ls=style.line(v))
    axes[0].set_yscale("log")
    axes[0].set_title("vector-field error during training (median over seeds)")
    axes[1].set_yscale("log")
    axes[1].set_title("NFE per iteration, forward + backward (median)")
    for ax in axes:
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig16_dynamics_fit": (fig_dynamics_fit, ["dynamics/main"]),
    "fig17_dynamics_cost": (fig_dynamics_cost, ["dynamics/main"]),
    "fig20_dynamics_training": (fig_dynamics_training, ["dynamics/main"]),
}
