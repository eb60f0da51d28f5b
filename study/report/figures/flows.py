"""The trained flows: the training points' lifted states along the direction that separates the classes,
from t = 0 to t = 1, and the trained models' decision regions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...tasks.spiral import data
from .. import style
from ..results import View
from .common import _need, _plt


TRAJ_VARIANTS = ["euler", "rk4", "resnet", "tdq-dopri5"]


def _variant_row(df: pd.DataFrame):
    """One square-ish panel per trained model present in ``df``, side by side at text width."""
    plt = _plt()
    variants = [v for v in TRAJ_VARIANTS if v in set(df["variant"])]
    fig, axes = plt.subplots(1, len(variants), figsize=(style.TEXT, 0.85 * style.TEXT / len(variants) + 0.5),
                             layout="constrained")
    return fig, np.atleast_1d(axes), variants


def _separating_axes(X_end: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two orthonormal directions of the state space: Fisher's discriminant of the final states (the direction
    that separates the classes best, linearly) and the first principal direction orthogonal to it."""
    m0, m1 = X_end[labels == 0].mean(0), X_end[labels == 1].mean(0)
    sw = np.cov(X_end[labels == 0].T) + np.cov(X_end[labels == 1].T) + 1e-6 * np.eye(X_end.shape[1])
    w = np.linalg.solve(sw, m1 - m0)
    w /= np.linalg.norm(w)
    rest = X_end - X_end.mean(0)
    rest = rest - np.outer(rest @ w, w)
    _, _, vt = np.linalg.svd(rest, full_matrices=False)
    return np.stack([w, vt[0]])


def fig_trajectories(view: View, out: Path):
    """Each training point's position along the direction that separates the classes at t = 1 (Fisher's
    discriminant of the final states), standardised at each time, from t = 0 (bottom) to t = 1 (top): the
    classes overlap at t = 0; a flow that untangles them splits them by t = 1."""
    from matplotlib.lines import Line2D

    tr = _need(view.trajectories(), "trajectories")
    fig, axes, variants = _variant_row(tr)
    cols = {0: style.method_colour("euler"), 1: style.method_colour("rk4-38")}
    for ax, v in zip(axes, variants):
        d = tr[tr["variant"] == v]
        scols = [c for c in d.columns if c.startswith("s") and c[1:].isdigit()]
        end = d[d["time"] == d["time"].max()]
        w = _separating_axes(end[scols].to_numpy(), end["label"].to_numpy())[0]
        d = d.assign(a=d[scols].to_numpy() @ w)
        d["a"] = d.groupby("time")["a"].transform(lambda x: (x - x.mean()) / x.std())
        for p in sorted(set(d["point"]))[:80]:
            q = d[d["point"] == p].sort_values("time")
            ax.plot(q["a"], q["time"], color=cols[int(q["label"].iloc[0])], lw=0.5, alpha=0.35)
        acc = d["test_acc"].iloc[0]
        ax.set_title(f"{style.label(v)} (held-out {100 * acc:.1f}%)", fontsize=7)
        ax.set(xlim=(-3, 3), ylim=(0, 1), xlabel="separating direction (sd at each t)")
        ax.axvline(0, color="0.5", lw=0.6, ls=":")
    axes[0].set_ylabel("t (ResNet: block / 20)")
    handles = [Line2D([], [], color=cols[c], label=f"class {c}") for c in (0, 1)]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6.5)
    fig.suptitle("80 training points' lifted states projected on the direction that best separates the classes at "
                 "t = 1 (Fisher); seed 0 of each model, trained alone", fontsize=7)
    return fig


def fig_regions(view: View, out: Path):
    """Decision regions of the trained models, with the Bayes-optimal boundary."""
    rg = _need(view.regions(), "trajectories")
    fig, axes, variants = _variant_row(rg)
    g = np.linspace(-1.4, 1.4, 101)
    gx, gy = np.meshgrid(g, g)
    bayes = data.bayes_posterior(np.stack([gx.ravel(), gy.ravel()], 1), nodes=1000).reshape(gx.shape)
    sp = data.make_split(0, n_test=2)
    for ax, v in zip(axes, variants):
        d = rg[rg["variant"] == v]
        n = int(np.sqrt(len(d)))
        X, Y, P = (d[c].to_numpy().reshape(n, n) for c in ("x", "y", "prob_class1"))
        ax.contourf(X, Y, P, levels=[0, 0.5, 1], colors=["#cfe3f2", "#f7dcc0"])
        ax.contour(X, Y, P, levels=[0.5], colors=style.colour(v), linewidths=0.9)
        ax.contour(gx, gy, bayes, levels=[0.5], colors="k", linewidths=0.6, linestyles="--")
        ax.scatter(sp.x_train[:, 0], sp.x_train[:, 1], s=0.6, c=np.where(sp.y_train == 0, "#0072B2", "#D55E00"), linewidths=0)
        ax.set(aspect="equal", xlim=(-1.4, 1.4), ylim=(-1.4, 1.4), xticks=[-1, 0, 1], yticks=[-1, 0, 1])
        ax.set_title(f"{style.label(v)}: test {100 * d['test_acc'].iloc[0]:.1f}%", fontsize=7)
        ax.grid(False)
    fig.suptitle("decision regions (seed 0); dashed: Bayes-optimal boundary", fontsize=7, y=1.02)
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig09_trajectories": (fig_trajectories, ("trajectories",)), "fig10_regions": (fig_regions, ("trajectories",)),
}
