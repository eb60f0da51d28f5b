"""Accuracy figures: the data set with its Bayes boundary, the main results, the training curves, the
sweeps' accuracy against NFE and the ablations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import variants
from ...tasks.spiral import data
from .. import style
from ..reported import ARTICLE
from ..results import View
from .common import _band, _ci95, _clip, _need, _plt, _results


def fig_data(view: View, out: Path):
    """The training set of seed 0 with the Bayes-optimal decision boundary."""
    plt = _plt()
    sp = data.make_split(0, n_test=2)
    g = np.linspace(-1.4, 1.4, 141)
    gx, gy = np.meshgrid(g, g)
    post = data.bayes_posterior(np.stack([gx.ravel(), gy.ravel()], 1), nodes=1000).reshape(gx.shape)
    acc, se = data.bayes_accuracy()
    fig, ax = plt.subplots(figsize=(style.COLUMN, style.COLUMN))
    ax.contourf(gx, gy, post, levels=[0, 0.5, 1], colors=["#cfe3f2", "#f7dcc0"], alpha=0.8)
    ax.contour(gx, gy, post, levels=[0.5], colors="k", linewidths=0.8)
    for c, col, mk in ((0, style.method_colour("euler"), "o"), (1, style.method_colour("rk4-38"), "s")):
        pts = sp.x_train[sp.y_train == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c=col, marker=mk, linewidths=0, label=f"class {c}")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal", xlim=(-1.4, 1.4), ylim=(-1.4, 1.4),
           title=f"1,000 training points; Bayes boundary (acc. {100 * acc:.1f}%)")
    ax.grid(False)
    ax.legend(loc="lower right", markerscale=2)
    return fig


def fig_main(view: View, out: Path):
    """Train and held-out accuracy per variant, mean and 95% CI over seeds; Bayes ceiling; the article's values."""
    df = _results(view.runs("main"), "main")
    plt = _plt()
    order = style.ordered(df["variant"])
    fig, ax = plt.subplots(figsize=(style.TEXT, max(2.6, 0.6 + 0.19 * len(order))))  # rows stay readable
    y = np.arange(len(order))
    for i, v in enumerate(order):
        d = df[df["variant"] == v]
        for key, off, fill in (("train_acc", -0.17, "none"), ("test_acc", 0.17, style.colour(v))):
            m, h = _ci95(100 * d[key])  # a CI over few seeds can pass 100%: clipped
            ax.errorbar(m, i + off, xerr=_clip(m, h) if len(d) > 1 else None, fmt=style.marker(v),
                        color=style.colour(v), mfc=fill, capsize=2, ms=5)
            ax.scatter(100 * d[key], np.full(len(d), i + off), s=5, color=style.colour(v), alpha=0.45, linewidths=0)
            if key == "test_acc" and len(d) > 2:  # results can be bimodal: the median beside the mean
                ax.plot(np.median(100 * d[key]), i + off, marker="|", color="0.15", ms=7, mew=1.3)
        if v in ARTICLE:
            ax.plot(100 * ARTICLE[v]["accuracy"], i - 0.17, "x", color="0.3", ms=6, mew=1.2)
    bayes = 100 * data.bayes_accuracy()[0]
    ax.axvline(bayes, color="0.2", lw=1, ls="--")
    every = view.runs("main")

    def seeds(v):
        div = int(((every["variant"] == v) & (every["status"] == "diverged")).sum())
        return f"[{int((df['variant'] == v).sum())}" + (f"; {div} diverged]" if div else "]")

    ax.set_yticks(y, [f"{style.label(v)} {seeds(v)}" for v in order])
    ax.invert_yaxis()
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="train (1,000 points)"),
               Line2D([], [], ls="", marker="o", color="0.3", label="held-out test (10,000 points)"),
               Line2D([], [], ls="", marker=".", color="0.3", alpha=0.5, label="one seed"),
               Line2D([], [], ls="", marker="x", color="0.3", mew=1.2, label="article (reported)")]
    handles.append(Line2D([], [], ls="", marker="|", color="0.15", ms=7, mew=1.3, label="held-out median"))
    handles.append(Line2D([], [], ls="--", lw=1, color="0.2", label=f"Bayes-optimal ({bayes:.1f}%)"))
    shapes = {"hand": "hand backprop", "torchdiffeq": "torchdiffeq backprop", "torchdiffeq-adjoint": "tdq adjoint",
              "seminorm": "tdq adjoint, seminorm", "hand-adjoint": "hand adjoint", "hand-checkpoint": "checkpointed",
              "resnet": "ResNet", "none": "no flow"}
    for v in order:  # a family added to the registry later is named by its backend
        shapes.setdefault(variants.get(v).family, variants.get(v).family)
    shape_handles = [Line2D([], [], ls="", marker=style.family_marker(k), color="0.3", label=t)
                     for k, t in shapes.items()]
    first = ax.legend(handles=handles, loc="lower center", ncol=6, bbox_to_anchor=(0.5, 1.06), fontsize=6.5,
                      handletextpad=0.3, columnspacing=1.0)
    ax.add_artist(first)
    first.set_clip_on(False)  # add_artist clips to the axes: the legend stands above them
    ax.legend(handles=shape_handles, loc="lower center", ncol=8, bbox_to_anchor=(0.5, 1.0), fontsize=6.5,
              title=None, handletextpad=0.2, columnspacing=1.0)
    ax.set_xlim(right=100)
    ax.set_xlabel(f"accuracy (%): mean and t-based 95% CI over the [seeds], {int(df['epochs'].iloc[0])} epochs; "
                  "colour: solver method; shape: gradient method")
    return fig


CURVE_VARIANTS = ["euler", "rk4", "resnet", "tdq-dopri5", "adjoint-euler", "adjoint-dopri5"]


def fig_curves(view: View, out: Path):
    """Training loss and held-out accuracy against epoch: median over seeds with the interquartile range (a failed
    seed would stretch a mean's band over the whole axis)."""
    cur = _results(view.curves("main"), "main")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.5), layout="constrained")
    for v in [v for v in CURVE_VARIANTS if v in set(cur["variant"])]:
        d = cur[cur["variant"] == v]
        n = d["seed"].nunique()
        _band(axes[0], d, "epoch", "loss", style.colour(v), f"{style.label(v)} [{n}]", style.line(v), spread="iqr")
        t = d.dropna(subset=["test_acc"]).assign(test_acc=lambda x: 100 * x["test_acc"])
        _band(axes[1], t, "epoch", "test_acc", style.colour(v), None, style.line(v), spread="iqr")
    axes[0].set(yscale="log", ylabel="training loss (cross-entropy)", xlabel="epoch",
                title="median over [seeds], band: interquartile range")
    axes[1].set(ylabel="held-out accuracy (%)", xlabel="epoch", ylim=(50, 90))
    axes[0].legend(ncol=2, fontsize=6)
    return fig


def _sweep(ax, df: pd.DataFrame, by: str, fmt: str) -> None:
    """Mean held-out accuracy (t 95% CI over seeds) against mean training NFE, one line per variant joining the
    sweep's points in order, each labelled; the median of the seeds as a black tick (results can be bimodal)."""
    for i, (v, d) in enumerate(df.groupby("variant")):
        d = d.assign(nfe=d["nfe_forward"] + d["nfe_backward"])
        g = d.groupby(by).agg(nfe=("nfe", "mean"), acc=("test_acc", list)).reset_index()
        stats = np.array([_ci95(100 * np.asarray(a)) for a in g["acc"]])
        lo = np.minimum(stats[:, 1], stats[:, 0])
        hi = np.minimum(stats[:, 1], 100 - stats[:, 0])  # a CI over few seeds can pass 100%: clip it
        ax.errorbar(g["nfe"], stats[:, 0], yerr=[lo, hi], color=style.colour(v), marker=style.marker(v),
                    ls=style.line(v), capsize=2, label=style.label(v))
        med = [np.median(100 * np.asarray(a)) for a in g["acc"]]
        ax.plot(g["nfe"], med, ls="", marker="_", color="0.15", ms=7, mew=1.2)
        # Labels: the first line's to the right of its points, the second's to the left (two lines can share a
        # point: 20 Euler and 5 RK4 steps cost the same NFE), alternating above and below along the line.
        side = 1 if i % 2 == 0 else -1
        rank = g["nfe"].rank(method="first").astype(int)
        for key, x, y, r in zip(g[by], g["nfe"], stats[:, 0], rank):
            ax.annotate(fmt.format(key), (x, y), textcoords="offset points", xytext=(5 * side, 3 if r % 2 else -9),
                        fontsize=6, color=style.colour(v), ha="left" if side > 0 else "right")


def _nfe_axis(ax) -> None:
    """One tick style on a log NFE axis: 1, 2 and 5 times a power of ten, written 2e4."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo, hi = ax.get_xlim()
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0e}".replace("e+0", "e")))


def fig_frontier(view: View, out: Path):
    """Held-out accuracy against total training NFE: steps sweep (Euler, RK4) and dopri5 tolerance sweep."""
    steps = _results(view.runs("steps"), "steps")
    tol = _results(view.runs("tolerance"), "tolerance")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.7), layout="constrained")
    _sweep(axes[0], steps, "steps", "{}")
    _sweep(axes[1], tol, "rtol", "{:.0e}")
    e0, e1 = int(steps["epochs"].iloc[0]), int(tol["epochs"].iloc[0])
    n0 = int(steps.groupby(["variant", "steps"]).size().min())
    n1 = int(tol.groupby(["variant", "rtol"]).size().max())
    axes[0].set(xscale="log", xlabel="training NFE (forward + backward)", ylabel="held-out accuracy (%)",
                title=f"fixed steps (labels: N), {e0} epochs, {n0} seeds")
    axes[1].set(xscale="log", xlabel="training NFE (forward + backward)",
                title=f"dopri5 tolerance (labels: rtol = atol), {e1} epochs, {n1} seed" + ("s" if n1 > 1 else ""))
    for ax in axes:
        ax.margins(x=0.08, y=0.12)
        _nfe_axis(ax)
    axes[0].legend(loc="upper left", fontsize=6)
    axes[1].legend(loc="center", fontsize=6)  # the tolerance sweep's points sit at the panel's edges
    return fig


def fig_ablations(view: View, out: Path):
    """Lift dimension, time input and zero initialisation: held-out and training accuracy."""
    runs = _need(view.runs("ablations"), "ablations")
    df = _results(runs, "ablations")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.4), gridspec_kw={"width_ratios": [1, 1.1]}, layout="constrained")
    base = df[(df["variant"] == "euler") & df["time_input"].astype(bool) & df["zero_init"].astype(bool)]
    for key, fill, lab in (("train_acc", "none", "train"), ("test_acc", None, "held-out")):
        g = base.groupby("lift_dim")[key].apply(list)
        st = np.array([_ci95(100 * np.asarray(a)) for a in g])
        err = np.hstack([_clip(m, h) for m, h in st])
        axes[0].errorbar(g.index, st[:, 0], yerr=err, marker="o", color=style.colour("euler"),
                         mfc=fill or style.colour("euler"), capsize=2, label=lab)
    axes[0].set(xlabel="lift dimension d (2 = no lift)", ylabel="accuracy (%)", title="Euler, 20 steps",
                xticks=sorted(set(base["lift_dim"])))
    axes[0].legend()
    on = lambda f, k: f[k].astype(bool)  # noqa: E731
    cases = [("Euler", lambda f: (f["variant"] == "euler") & (f["lift_dim"] == 6) & on(f, "time_input") & on(f, "zero_init")),
             ("Euler, no time input", lambda f: (f["variant"] == "euler") & ~on(f, "time_input")),
             ("Euler, random init", lambda f: (f["variant"] == "euler") & ~on(f, "zero_init")),
             ("ResNet", lambda f: (f["variant"] == "resnet") & on(f, "zero_init")),
             ("ResNet, random init", lambda f: (f["variant"] == "resnet") & ~on(f, "zero_init"))]
    for i, (name, select) in enumerate(cases):
        d, every = df[select(df)], runs[select(runs)]
        v = "resnet" if name.startswith("ResNet") else "euler"
        if not d.empty:
            for key, off, fill in (("train_acc", -0.15, "none"), ("test_acc", 0.15, style.colour(v))):
                m, h = _ci95(100 * d[key])
                axes[1].errorbar(m, i + off, xerr=_clip(m, h), fmt=style.marker(v), color=style.colour(v), mfc=fill, capsize=2)
        div = int((every["status"] == "diverged").sum())
        if div:
            axes[1].annotate(f"{div} of {len(every)} diverged", (0.02, i), xycoords=("axes fraction", "data"),
                             fontsize=6, va="center")
    axes[1].set_yticks(range(len(cases)), [c[0] for c in cases])
    axes[1].invert_yaxis()
    axes[1].set(xlabel="accuracy (%) (open: train, filled: held-out)")
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig01_data": (fig_data, ()), "fig02_main": (fig_main, ("main",)), "fig03_curves": (fig_curves, ("main",)),
    "fig04_frontier": (fig_frontier, ("steps", "tolerance")), "fig11_ablations": (fig_ablations, ("ablations",)),
}
