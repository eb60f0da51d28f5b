"""Gradient figures: adjoint gradients against direct backpropagation on the same weights, and why the
adjoint's gradient is wrong on trained weights (errors over training, steps and tolerances; the flow map)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import variants
from .. import style
from ..results import View
from .common import _need, _plt


def _method_label(variant: str) -> str:
    """The display name of a variant's solver method (``adjoint-rk4`` -> ``RK4 3/8``); other names as they are."""
    return style.method_label(variants.get(variant).method) if variant in variants.VARIANTS else variant


def fig_gradients(view: View, out: Path):
    """Relative error of adjoint gradients against direct backpropagation on the same trained weights."""
    from matplotlib.ticker import LogLocator, NullFormatter

    df = _need(view.gradients(), "gradients")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.6), layout="constrained")
    for m, d in df[df["steps"].notna()].groupby("method"):
        g = d.groupby("steps")[["rel_err_vs_direct", "rel_err_vs_reference", "direct_rel_err_vs_reference"]].mean()
        axes[0].plot(g.index, g["rel_err_vs_direct"], marker=style.marker(m), color=style.colour(m), ls=style.line(m),
                     label=f"{_method_label(m)}: adjoint vs direct")
        axes[0].plot(g.index, g["direct_rel_err_vs_reference"], marker=".", color=style.colour(m), ls="-", alpha=0.6,
                     label=f"{_method_label(m)}: direct vs exact")
    steps = sorted(df["steps"].dropna().astype(int).unique())
    axes[0].set(xscale="log", yscale="log", xlabel="steps N", ylabel="relative gradient error",
                title="fixed steps (weights: Euler, 100 epochs)")
    axes[0].set_xticks(steps, [str(n) for n in steps])
    for m, d in df[df["tol"].notna()].groupby("method"):
        g = d.groupby("tol")[["rel_err_vs_direct", "rel_err_vs_reference"]].mean().dropna()
        if g.empty:
            continue
        same = np.allclose(g["rel_err_vs_direct"], g["rel_err_vs_reference"], rtol=0.03)
        axes[1].plot(g.index, g["rel_err_vs_direct"], marker=style.marker(m), color=style.colour(m), ls=style.line(m),
                     label=f"{style.label(m)}: vs direct" + (" $\\approx$ vs exact" if same else ""))
        if not same:
            axes[1].plot(g.index, g["rel_err_vs_reference"], marker=".", color=style.colour(m), ls="-", alpha=0.5,
                         label=f"{style.label(m)}: vs exact")
    axes[1].set(xscale="log", yscale="log", xlabel="rtol = atol", ylabel="relative gradient error",
                title="dopri5 adjoints (same weights)")
    axes[1].invert_xaxis()
    axes[0].yaxis.set_major_locator(LogLocator(base=10, numticks=12))
    axes[0].minorticks_off()
    lo, hi = axes[1].get_ylim()
    if hi / lo < 100:  # less than two decades: label 1-2-5 values, plainly
        ticks = [v for v in (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20) if lo <= v <= hi]
        axes[1].set_yticks(ticks, [f"{v:g}" for v in ticks])
        axes[1].yaxis.set_minor_formatter(NullFormatter())
    for ax in axes:
        ax.legend(fontsize=5.5)
    fig.suptitle("exact: direct backpropagation through 400 RK4 steps (float32); direct: backpropagation through the "
                 "same solver, grid or tolerance", fontsize=6.5)
    return fig


TRAINED_COLOURS = {"euler": "#0072B2", "adjoint-euler": "#CC79A7", "tdq-dopri5": "#009E73"}


def _adj_median(d: pd.DataFrame, by: str, col: str) -> pd.Series:
    return d.groupby(by)[col].median()


def _epoch_axis(ax, epochs) -> None:
    ax.set_xscale("log")
    ticks = sorted(set(epochs))
    ax.set_xticks([e if e > 0 else 0.5 for e in ticks], [str(int(e)) for e in ticks])
    ax.minorticks_off()
    ax.set_xlabel("epoch (log scale; 0 drawn at 0.5)")


def _styles(ax, styles, loc) -> None:
    """A small legend of line styles (the colours are the figure's legend)."""
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color="0.3", ls=ls, marker=m, ms=3, label=t) for ls, m, t in styles],
              fontsize=5.5, loc=loc)


def _trained_colour(v: str) -> str:
    return TRAINED_COLOURS.get(v, style.colour(v))


def _at(s: pd.Series):
    """A series over epochs drawn on the log epoch axis: epoch 0 at 0.5."""
    return s.index.where(s.index > 0, 0.5)


def _trained_variants(df: pd.DataFrame) -> list[str]:
    """The variants the weights were trained as: the ones with a colour of their own first."""
    return [v for v in TRAINED_COLOURS if v in set(df["train_variant"])] + \
           [v for v in style.ordered(df["train_variant"]) if v not in TRAINED_COLOURS]


def _adjoint_over_training(ax, g: pd.DataFrame, trained: list[str], epochs) -> None:
    """Euler at the fewest steps, float32: the adjoint's and the direct gradient's errors over training."""
    e20 = g[(g["method"] == "euler") & (g["steps"] == g["steps"].min()) & (g["dtype"] == "float32")]
    for v in trained:
        d = e20[e20["train_variant"] == v]
        x = _adj_median(d, "epoch", "adjoint_vs_exact")
        ax.plot(_at(x), x.values, color=_trained_colour(v), marker="o", ms=3, label="_")
        y = _adj_median(d, "epoch", "discrete_vs_exact")
        ax.plot(_at(y), y.values, color=_trained_colour(v), ls="--", marker=".", ms=3, label="_")
    ax.set(yscale="log", ylabel="relative error vs exact gradient",
           title=f"Euler, {int(e20['steps'].min()) if len(e20) else 20} steps, float32, over training")
    _epoch_axis(ax, epochs)
    _styles(ax, [("-", "o", "adjoint"), ("--", ".", "direct, same Euler steps")], "upper left")


def _adjoint_against_steps(ax, g: pd.DataFrame, final) -> None:
    """Fixed steps, float64, Euler-trained weights at the end of training: both errors against N."""
    fx = g[(g["epoch"] == final) & g["steps"].notna() & (g["dtype"] == "float64") & (g["train_variant"] == "euler")]
    for method in ("euler", "rk4-38"):
        d = fx[fx["method"] == method]
        if d.empty:
            continue
        col, name = style.method_colour(method), style.method_label(method)
        a, b = _adj_median(d, "steps", "adjoint_vs_exact"), _adj_median(d, "steps", "discrete_vs_exact")
        ax.plot(a.index, a.values, marker="o", ms=3, color=col, label=f"{name}: adjoint")
        ax.plot(b.index, b.values, marker="s", ms=3, ls="--", color=col, label=f"{name}: direct")
    ax.set(xscale="log", yscale="log", xlabel="steps N",
           title="fixed steps, float64, Euler-trained weights, end of training")
    steps = sorted(fx["steps"].dropna().unique())
    ax.set_xticks(steps, [str(int(n)) for n in steps])
    ax.minorticks_off()
    ax.legend(fontsize=5.5, ncol=2, loc="lower left")


def _adjoint_against_tolerance(ax, g: pd.DataFrame, final, trained: list[str]) -> None:
    """The dopri5 adjoint at the end of training: its error against the tolerance, float32 and float64."""
    tx = g[(g["epoch"] == final) & g["tol"].notna() & (g["method"] == "dopri5")]
    for v in trained:
        for dtype, ls in (("float32", "-"), ("float64", ":")):
            d = tx[(tx["train_variant"] == v) & (tx["dtype"] == dtype)]
            if d.empty or "adjoint_vs_exact" not in d:
                continue
            a = _adj_median(d, "tol", "adjoint_vs_exact").dropna()
            ax.plot(a.index, a.values, ls=ls, marker="o", ms=3, color=_trained_colour(v),
                    label="_")
    ax.set(xscale="log", yscale="log", xlabel="rtol = atol", ylabel="adjoint vs exact gradient",
           title="dopri5 adjoint, end of training")
    ax.invert_xaxis()
    _styles(ax, [("-", "o", "float32"), (":", "o", "float64")], "center right")


def _flow_map(ax, df: pd.DataFrame, trained: list[str], epochs) -> None:
    """The flow map's smallest singular value and the backward solve's reconstruction of y(0), over training."""
    sv = df[df["what"] == "singular_values"]
    rc = df[(df["what"] == "reconstruction") & (df["method"] == "dopri5") & (df["dtype"] == "float32")]
    for v in trained:
        s_ = _adj_median(sv[sv["train_variant"] == v], "epoch", "sv_min_median")
        ax.plot(_at(s_), s_.values, color=_trained_colour(v), marker="o", ms=3, label="_")
        r = _adj_median(rc[rc["train_variant"] == v], "epoch", "recon_rel")
        ax.plot(_at(r), r.values, color=_trained_colour(v), ls="--", marker=".", ms=3, label="_")
    ax.set(yscale="log", title="flow map $\\partial y(T)/\\partial y(0)$; dopri5 $10^{-3}$ backward solve, float32")
    _epoch_axis(ax, epochs)
    _styles(ax, [("-", "o", "smallest singular value"), ("--", ".", "$y(0)$ reconstruction error")], "center left")


def _trained_legend(fig, df: pd.DataFrame, trained: list[str], final) -> None:
    """The figure's legend: one colour per trained variant, with its seeds at the end of training."""
    from matplotlib.lines import Line2D

    seeds = {v: int(df[(df["train_variant"] == v) & (df["epoch"] == final)]["seed"].nunique()) for v in trained}
    fig.legend(handles=[Line2D([], [], color=_trained_colour(v), marker="o", ms=3,
                               label=f"trained as {style.label(v)} [{seeds[v]} seed{'s' if seeds[v] != 1 else ''} at the end]")
                        for v in trained], loc="outside upper center", ncol=len(trained), fontsize=6.5)


def fig_adjoint(view: View, out: Path):
    """Why the adjoint's gradient is wrong: errors against the exact gradient over training and against steps and
    tolerances, and the trained flow's smallest singular value (medians over seeds and batches)."""
    df = _need(view.adjoint(), "adjoint")
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(style.TEXT, 4.1), layout="constrained")
    g = df[df["what"] == "gradient"]
    final = df["epoch"].max()
    epochs = sorted(df["epoch"].unique())
    trained = _trained_variants(df)
    _adjoint_over_training(axes[0, 0], g, trained, epochs)
    _adjoint_against_steps(axes[0, 1], g, final)
    _adjoint_against_tolerance(axes[1, 0], g, final, trained)
    _flow_map(axes[1, 1], df, trained, epochs)
    _trained_legend(fig, df, trained, final)
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig12_gradients": (fig_gradients, ("gradients",)), "fig15_adjoint": (fig_adjoint, ("adjoint",)),
}
