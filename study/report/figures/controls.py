"""Controls: what the flow contributes (with and without a flow, an MLP or a linear head, the linear probes),
and held-out accuracy against the learning rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...tasks.spiral import data
from .. import style
from ..results import View
from .common import _need, _plt, _results


CONTROL_LABELS = {("euler", "mlp"): "ODE, MLP head", ("no-flow", "mlp"): "no flow, MLP head",
                  ("euler", "linear"): "ODE, linear head", ("no-flow", "linear"): "no flow, linear head"}


def _median_and_seeds(ax, values, y, colour, marker, filled=True, size=4):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return
    ax.scatter(v, np.full(len(v), y), s=6, color=colour, alpha=0.45, linewidths=0)
    ax.plot(np.median(v), y, marker=marker, color=colour, mfc=colour if filled else "white", ms=size, ls="")


def fig_controls(view: View, out: Path):
    """What the flow contributes: held-out accuracy with and without a flow, with an MLP or a linear head, at
    lift 2 and 6 (left); the linear probe's held-out accuracy on the input, y(0) and y(T) (right)."""
    df = _results(view.runs("controls"), "controls")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.9), layout="constrained")
    ax = axes[0]
    rows = [(v, h, d) for (v, h) in CONTROL_LABELS for d in sorted(df["lift_dim"].unique())
            if not df[(df["variant"] == v) & (df["head"] == h) & (df["lift_dim"] == d)].empty]
    for i, (v, h, d) in enumerate(rows):
        sel = df[(df["variant"] == v) & (df["head"] == h) & (df["lift_dim"] == d)]
        colour = style.colour(v)
        _median_and_seeds(ax, 100 * sel["test_acc"], i, colour, "o" if h == "mlp" else "s", d == 6)
    ax.set_yticks(range(len(rows)), [f"{CONTROL_LABELS[(v, h)]}, d = {d}" for v, h, d in rows])
    ax.invert_yaxis()
    ax.axvline(100 * data.bayes_accuracy()[0], color="0.2", lw=1, ls="--")
    ax.set(xlabel="held-out accuracy (%): median (marker), seeds (dots)", title="the model with and without the flow")
    ax = axes[1]
    models = [(v, h, d) for v, h, d in rows if v == "euler"]
    models += [(v, "mlp", 6) for v in style.ordered(df["variant"]) if v not in ("euler", "no-flow")]
    shades = {"input": ("0.6", "x input"), "y0_test": ("#56B4E9", "$y(0)$ (lifted)"), "yT_test": ("#0072B2", "$y(T)$ (flow output)")}
    for i, (v, h, d) in enumerate(models):
        sel = df[(df["variant"] == v) & (df["head"] == h) & (df["lift_dim"] == d)]
        for j, (key, (colour, _)) in enumerate(shades.items()):
            col = "probe.input_test" if key == "input" else f"probe.{key}"
            _median_and_seeds(ax, 100 * sel[col], i + (j - 1) * 0.22, colour, "o")
    names = [f"{CONTROL_LABELS[(v, h)]}, d = {d}" if v == "euler" else style.label(v) for v, h, d in models]
    ax.set_yticks(range(len(models)), names)
    ax.invert_yaxis()
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], ls="", marker="o", color=c, label=t) for c, t in shades.values()],
              loc="upper right", fontsize=6)
    ax.set(xlabel="linear-probe held-out accuracy (%)", title="is the flow's output linearly separable?")
    return fig


def fig_learning_rate(view: View, out: Path):
    """Held-out accuracy against the learning rate, one panel per variant: seeds (dots), median (line), failed
    runs (red crosses: diverged, or an unrecovered loss spike)."""
    from ..stats import SPIKE_RATIO, failed

    df = _need(view.runs("learning-rate"), "learning-rate")
    df = df[df["status"].isin(["ok", "diverged"])].assign(failed=lambda d: failed(d))
    order = style.ordered(df["variant"])
    plt = _plt()
    cols = 3
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(style.TEXT, 1.45 * rows + 0.4), sharex=True, sharey=True, squeeze=False,
                             layout="constrained")
    lrs = sorted(df["lr"].unique())
    for ax, v in zip(axes.ravel(), order):
        d = df[df["variant"] == v]
        cells = [100 * d[(d["lr"] == lr) & (d["status"] == "ok")]["test_acc"].to_numpy(float) for lr in lrs]
        have = [(lr, float(np.median(c))) for lr, c in zip(lrs, cells) if len(c)]
        ax.plot([a for a, _ in have], [b for _, b in have], color=style.colour(v), marker=style.marker(v),
                ls=style.line(v), ms=4)
        ok = d[(d["status"] == "ok") & ~d["failed"]]
        bad = d[(d["status"] == "ok") & d["failed"]]
        ax.scatter(ok["lr"], 100 * ok["test_acc"], s=7, color=style.colour(v), alpha=0.5, linewidths=0)
        ax.scatter(bad["lr"], 100 * bad["test_acc"], s=14, color="#C00000", marker="x", linewidths=0.9)
        div = d[d["status"] == "diverged"].groupby("lr").size()
        for lr, n in div.items():
            ax.annotate(f"{n} div.", (lr, 0.04), xycoords=("data", "axes fraction"), fontsize=6, color="#C00000",
                        ha="center")
        ax.set_title(f"{style.label(v)} [{d.groupby('lr').size().max()}]", fontsize=7)
        ax.axhline(100 * data.bayes_accuracy()[0], color="0.2", lw=0.8, ls="--")
    for ax in axes.ravel()[len(order):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
        ax.set_xlabel("learning rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out acc. (%)")
    low = 100 * df.loc[df["status"] == "ok", "test_acc"].min()
    axes[0, 0].set_ylim(min(60.0, 5 * np.floor(low / 5) - 2), 90)  # every seed in view
    fig.suptitle(f"dots: seeds; line: median; red x: failed (diverged, or last loss > {SPIKE_RATIO:g}x lowest); "
                 "dashed: Bayes-optimal", fontsize=7)
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig13_controls": (fig_controls, ("controls",)), "fig14_learning_rate": (fig_learning_rate, ("learning-rate",)),
}
