"""The density task's figures: the learned densities and the flows' samples, the likelihood against cost (and
what the training solver reports against what the density is), and training curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import tasks
from .. import style
from ..results import View
from .common import _need, _plt, seed_scatter

MAIN = tasks.experiment("density", "main")
SHOWN = ["euler", "rk4", "hand-dopri5", "adjoint-dopri5", "checkpoint-dopri5"]  # the densities drawn, seed 0 each


def _data_panel(ax, density: str, box: float) -> None:
    from ...tasks import density as D

    pts = D.sample(density, 4000, np.random.default_rng(0))
    ax.hist2d(pts[:, 0], pts[:, 1], bins=60, range=[[-box, box], [-box, box]], cmap="Greys")
    ax.set_title(f"data ({density})")


def _density_panel(ax, d: dict, top) -> None:
    """A variant's density as its training solver reports it on the lattice (one linear colour scale for all)."""
    lp = np.asarray([np.nan if v is None else v for v in d["grid_log_density"]], float)
    n = int(round(np.sqrt(len(lp))))
    box = float(d["box"])
    ax.imshow(np.exp(lp.reshape(n, n)), origin="lower", extent=(-box, box, -box, box), cmap="magma", vmin=0,
              vmax=top, interpolation="nearest")
    ax.set_title(style.label(d["variant"]))


def _samples_panel(ax, d: dict) -> None:
    s = np.asarray([[np.nan if v is None else v for v in row] for row in d["samples"]], float)
    ax.scatter(s[:, 0], s[:, 1], s=1.5, color=style.colour(d["variant"]), alpha=0.6, linewidths=0)


def fig_density(view: View, out: Path):
    data = {d["variant"]: d for d in view.figure_data(MAIN) if d["seed"] == 0 and d["status"] == "ok"}
    shown = [v for v in SHOWN if v in data]
    _need(pd.DataFrame(shown), MAIN)
    runs = view.runs(MAIN)
    density, box = str(runs["density"].iloc[0]), float(data[shown[0]]["box"])
    top = max(float(np.nanmax(np.exp(np.asarray([np.nan if v is None else v for v in data[v]["grid_log_density"]],
                                                 float)))) for v in shown)
    plt = _plt()
    fig, axes = plt.subplots(2, len(shown) + 1, figsize=(style.TEXT, 2.6), squeeze=False)
    _data_panel(axes[0, 0], density, box)
    axes[1, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, "top: density the training\nsolver reports (lattice)\n\nbottom: samples of the flow\n"
                    "(reference solve from N(0, I))", ha="center", va="center", fontsize=6, transform=axes[1, 0].transAxes)
    for i, v in enumerate(shown, start=1):
        _density_panel(axes[0, i], data[v], top)
        _samples_panel(axes[1, i], data[v])
    for ax in axes.ravel():
        ax.set_xlim(-box, box)
        ax.set_ylim(-box, box)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for side in ax.spines.values():
            side.set_visible(True)
            side.set_color("#bbbbbb")
            side.set_linewidth(0.5)
    fig.tight_layout(pad=0.3)
    return fig


def _ok_runs(view: View) -> pd.DataFrame:
    df = _need(view.runs(MAIN), MAIN)
    df = df[df["status"] == "ok"].copy()
    df["nfe"] = (df["nfe_forward"] + df["nfe_backward"]) / df["iterations_completed"]
    return df


def fig_density_cost(view: View, out: Path):
    df = _ok_runs(view)
    entropy = float(df["entropy"].iloc[0])
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(style.TEXT, 2.4))
    seed_scatter(axes[0], df, "nfe", "nll")
    axes[0].axhline(entropy, color="#999999", lw=0.8, ls="--")
    axes[0].set_title("held-out NLL (reference solve)")
    axes[0].set_ylabel("nats (dashed: data entropy; log scale)")
    axes[2].set_ylabel("mass on the lattice (log scale)")
    seed_scatter(axes[1], df, "nll", "nll_own")
    lo, hi = np.nanmin(df[["nll", "nll_own"]].to_numpy()), np.nanmax(df[["nll", "nll_own"]].to_numpy())
    axes[1].plot([lo, hi], [lo, hi], color="#999999", lw=0.8)
    axes[1].axhline(entropy, color="#999999", lw=0.8, ls="--")
    axes[1].set_title("NLL the training solver reports")
    axes[1].set_xlabel("held-out NLL, reference solve (nats)")
    seed_scatter(axes[2], df, "nfe", "mass_own")
    axes[2].axhline(1.0, color="#999999", lw=0.8)
    axes[2].set_title("mass of the reported density")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in (axes[0], axes[2]):
        ax.set_xscale("log")
        ax.set_xticks([t for t in (4, 8, 16, 32, 64, 128, 256) if df["nfe"].min() / 1.5 <= t <= df["nfe"].max() * 1.5])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("NFE per iteration (forward + backward)")
    for ax in axes:  # a run the continuous adjoint's gradient broke sits far out: log scales keep the rest readable
        ax.set_yscale("log")
    axes[1].set_xscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=5.5, bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    return fig


def fig_density_training(view: View, out: Path):
    c = _need(view.task_curves(MAIN), MAIN)
    c = c[c["status"] == "ok"]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.3))
    for v in style.ordered(c["variant"].unique()):
        d = c[c["variant"] == v].assign(nfe=lambda x: x["nfe_forward"] + x["nfe_backward"])
        med = d.groupby("iteration")[["val_nll", "nfe"]].median()  # the median of each run's total
        kw = dict(color=style.colour(v), ls=style.line(v), lw=1.0)
        axes[0].plot(med.index, med["val_nll"], label=style.label(v), **kw)
        per_it = med["nfe"] / np.diff(np.concatenate([[0], med.index]))
        axes[1].plot(med.index, per_it, **kw)
    entropy = float(_need(view.runs(MAIN), MAIN)["entropy"].iloc[0])
    axes[0].axhline(entropy, color="#999999", lw=0.8, ls="--")
    axes[0].set_title("validation NLL, training solver (median; dashed: entropy)")
    axes[0].set_ylabel("nats")
    axes[1].set_title("NFE per iteration, forward + backward (median)")
    axes[1].set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].yaxis.set_minor_formatter(NullFormatter())
    axes[1].set_yticks([t for t in (8, 16, 32, 64, 128, 256) if c["nfe_forward"].min() / 60 <= t <= c["nfe_forward"].max()])
    for ax in axes:
        ax.set_xlabel("iteration")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=5.5, ncol=6, loc="lower center",
               bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig21_density": (fig_density, [MAIN]),
    "fig22_density_cost": (fig_density_cost, [MAIN]),
    "fig23_density_training": (fig_density_training, [MAIN]),
}
