"""Every figure of the study, one function each, drawn from the pandas view (``study.results``).

``draw_all(view, out)`` draws every figure whose experiments are complete; a
figure whose runs are incomplete is skipped with one line naming the
experiment and the command that completes it (``partial=True`` draws it,
marked as partial).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import data
from . import style
from .reported import ARTICLE
from .results import MissingRuns, Outcome, View, attempt


def _need(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    if df is None or df.empty:
        raise MissingRuns(experiment)
    return df


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


def _results(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The ``ok`` runs of an experiment; MissingRuns if there are none."""
    return _need(_ok(df), experiment)


def _plt():
    import matplotlib.pyplot as plt

    style.apply()
    return plt


def _ci95(values) -> tuple[float, float]:
    """Mean and half-width of the t-based 95% confidence interval."""
    from scipy import stats  # noqa: F401  (optional: fall back below)

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


# 1 --------------------------------------------------------------------------------------------------
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
    for c, col, mk in ((0, style.METHOD_COLOURS["euler"], "o"), (1, style.METHOD_COLOURS["rk4-38"], "s")):
        pts = sp.x_train[sp.y_train == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c=col, marker=mk, linewidths=0, label=f"class {c}")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal", xlim=(-1.4, 1.4), ylim=(-1.4, 1.4),
           title=f"1,000 training points; Bayes boundary (acc. {100 * acc:.1f}%)")
    ax.grid(False)
    ax.legend(loc="lower right", markerscale=2)
    return fig


# 2 --------------------------------------------------------------------------------------------------
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
    shape_handles = [Line2D([], [], ls="", marker=style.BACKEND_MARKERS[k], color="0.3", label=t) for k, t in shapes.items()]
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


def _band(ax, d: pd.DataFrame, x: str, y: str, colour, label=None, linestyle="-", spread: str = "ci"):
    """Mean over seeds with its t-based 95% band (``spread="ci"``), or, for quantities that vary over orders of
    magnitude between seeds or split into groups (failed runs), the median with the seeds' range (``"range"``) or
    interquartile range (``"iqr"``); no band from one seed."""
    g = d.dropna(subset=[y]).groupby(x)[y]
    if spread in ("range", "iqr"):
        lo, hi = ("min", "max") if spread == "range" else (lambda v: v.quantile(0.25), lambda v: v.quantile(0.75))
        stats = g.agg(["median", lo, hi]).reset_index()
        stats.columns = [x, "median", "min", "max"]
        ax.plot(stats[x], stats["median"], color=colour, ls=linestyle, label=label)
        if (stats["max"] > stats["min"]).any():
            ax.fill_between(stats[x], stats["min"], stats["max"], color=colour, alpha=0.15, linewidth=0)
        return
    stats = pd.DataFrame([(k, *_ci95(v)) for k, v in g], columns=[x, "mean", "half"])
    ax.plot(stats[x], stats["mean"], color=colour, ls=linestyle, label=label)
    if (stats["half"] > 0).any():
        ax.fill_between(stats[x], stats["mean"] - stats["half"], stats["mean"] + stats["half"], color=colour,
                        alpha=0.15, linewidth=0)


# 3 --------------------------------------------------------------------------------------------------
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


# 4 --------------------------------------------------------------------------------------------------
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


def _memory(view: View) -> pd.DataFrame:
    return _results(view.runs("memory"), "memory")


MERGE_RTOL = 0.03  # memory counts this close at every N are drawn as one line (they would hide each other)


def _against_steps(view: View, y, yerr, ylabel: str, title: str, merge_identical: bool = False, df=None):
    """One line per solver of the memory experiment (or ``df``, its rows with added columns) against the number
    of steps, log-log.  With ``merge_identical``, solvers whose values are equal at every N are one line labelled
    with all their names or within :data:`MERGE_RTOL` (drawn separately they would hide each other)."""
    df = _memory(view) if df is None else df
    plt = _plt()
    groups: dict = {}
    for _, d in df.groupby("solver"):
        d = d.sort_values("steps")
        key = next((k for k, g in groups.items() if merge_identical and list(g[0]["steps"]) == list(d["steps"])
                    and np.allclose(y(g[0]).to_numpy(float), y(d).to_numpy(float), rtol=MERGE_RTOL)), d["solver"].iloc[0])
        groups.setdefault(key, []).append(d)
    fig, ax = plt.subplots(figsize=(style.COLUMN, 2.9 if merge_identical else 2.6), layout="constrained")
    for ds in sorted(groups.values(), key=lambda g: -float(y(g[0]).iloc[-1])):
        d = ds[0]
        names = style.ordered(x["variant"].iloc[0] for x in ds)
        v = names[0] if names else d["variant"].iloc[0]
        label = " $\\approx$ ".join(style.label(n) for n in names)
        ax.errorbar(d["steps"], y(d), yerr=yerr(d) if yerr else None, color=style.colour(v), marker=style.marker(v),
                    ls=style.line(v), label=label, capsize=1.5)
    ax.set(xscale="log", yscale="log", xlabel="steps N (ResNet: blocks)", ylabel=ylabel, title=title)
    if merge_identical:
        fig.legend(fontsize=5.5, loc="outside lower center", ncol=1)
    else:
        ax.legend(fontsize=6, ncol=2)
    return fig


# 5 --------------------------------------------------------------------------------------------------
def fig_memory(view: View, out: Path):
    """Saved-tensor bytes of one training step against the number of steps (blocks for the ResNet)."""
    return _against_steps(view, lambda d: d["activation_bytes"] / 2**20, None, "activation memory (MiB)",
                          "saved tensors, one step at batch 128", merge_identical=True)


# 6 --------------------------------------------------------------------------------------------------
def fig_step_time(view: View, out: Path):
    """Time of one training step (forward + backward) against the number of steps, per backend: each job's ratio
    to the Euler step timed in alternation with it, on the scale of the experiment's median Euler step."""
    from .stats import reference_scaled

    df = _memory(view)
    df = df.assign(step_time_scaled=reference_scaled(df))
    return _against_steps(view, lambda d: 1e3 * d["step_time_scaled"], None, "time per training step (ms)",
                          "ratio to an alternating Euler step x its median; 1 thread", df=df)


# 7 --------------------------------------------------------------------------------------------------
def fig_dopri5_nfe(view: View, out: Path):
    """dopri5 NFE per epoch over training: forward and adjoint backward, direct against adjoint, norm against seminorm."""
    cur = _results(view.curves("main"), "main")
    cur = _need(cur[cur["variant"].isin(["tdq-dopri5", "adjoint-dopri5", "adjoint-dopri5-seminorm"])], "main")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(style.COLUMN, 2.6))
    colours = {"tdq-dopri5": "#009E73", "adjoint-dopri5": "#0072B2", "adjoint-dopri5-seminorm": "#CC79A7"}
    for v, d in cur.groupby("variant"):
        n = d["seed"].nunique()
        _band(ax, d, "epoch", "nfe_forward", colours[v], f"{style.label(v)}: forward [{n}]", "-", spread="range")
        if v != "tdq-dopri5":
            _band(ax, d, "epoch", "nfe_backward", colours[v], f"{style.label(v)}: backward [{n}]", ":", spread="range")
    ax.set(xlabel="epoch", ylabel="NFE per epoch (8 mini-batches)", yscale="log", title="dopri5, rtol = atol = 1e-3; [seeds]")
    ax.legend(fontsize=5.5)
    return fig


# 8 --------------------------------------------------------------------------------------------------
def fig_convergence(view: View, out: Path):
    """Global error against step size on y' = cos(t) y, with fitted slopes (the empirical order)."""
    df = _need(view.convergence(), "convergence")
    plt = _plt()
    from ..config import METHODS

    fig, ax = plt.subplots(figsize=(style.COLUMN, 3.4), layout="constrained")
    for solver, d in df.groupby("solver"):
        backend = solver.split("-", 1)[0]
        meth = d["tableau"].iloc[0]
        col = style.METHOD_COLOURS[meth]
        mk = "o" if backend == "hand" else "s"
        ls = "-" if backend == "hand" else "--"
        ax.plot(d["h"], d["error"], color=col, marker=mk, ls=ls, mfc="none" if backend == "tdq" else col,
                label=f"{METHODS[meth].label} ({backend}): slope {d['slope'].iloc[0]:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="step size h", ylabel="max |error| at t = 2",
           title="y' = cos(t) y, float64 (tdq: open squares on hand)")
    fig.legend(fontsize=5.5, loc="outside lower center", ncol=2)
    return fig


def _clip(m: float, h: float) -> list[list[float]]:
    """Error-bar extents for mean ``m`` and CI half-width ``h``, clipped to the 0-100% range."""
    return [[m - max(m - h, 0.0)], [min(m + h, 100.0) - m]]


def _pca(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = states.mean(0)
    _, _, vt = np.linalg.svd(states - mean, full_matrices=False)
    return mean, vt[:2]


TRAJ_VARIANTS = ["euler", "rk4", "resnet", "tdq-dopri5"]


def _variant_row(df: pd.DataFrame):
    """One square-ish panel per trained model present in ``df``, side by side at text width."""
    plt = _plt()
    variants = [v for v in TRAJ_VARIANTS if v in set(df["variant"])]
    fig, axes = plt.subplots(1, len(variants), figsize=(style.TEXT, 0.85 * style.TEXT / len(variants) + 0.5),
                             layout="constrained")
    return fig, np.atleast_1d(axes), variants


# 9 --------------------------------------------------------------------------------------------------
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
    cols = {0: style.METHOD_COLOURS["euler"], 1: style.METHOD_COLOURS["rk4-38"]}
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


# 10 -------------------------------------------------------------------------------------------------
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


# 11 -------------------------------------------------------------------------------------------------
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


# 12 -------------------------------------------------------------------------------------------------
def fig_gradients(view: View, out: Path):
    """Relative error of adjoint gradients against direct backpropagation on the same trained weights."""
    from matplotlib.ticker import LogLocator, NullFormatter

    df = _need(view.gradients(), "gradients")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(style.TEXT, 2.6), layout="constrained")
    names = {"adjoint-euler": "Euler", "adjoint-rk4": "RK4 3/8"}
    for m, d in df[df["steps"].notna()].groupby("method"):
        g = d.groupby("steps")[["rel_err_vs_direct", "rel_err_vs_reference", "direct_rel_err_vs_reference"]].mean()
        axes[0].plot(g.index, g["rel_err_vs_direct"], marker=style.marker(m), color=style.colour(m), ls=style.line(m),
                     label=f"{names.get(m, m)}: adjoint vs direct")
        axes[0].plot(g.index, g["direct_rel_err_vs_reference"], marker=".", color=style.colour(m), ls="-", alpha=0.6,
                     label=f"{names.get(m, m)}: direct vs exact")
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


# 13 -------------------------------------------------------------------------------------------------
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


# 14 -------------------------------------------------------------------------------------------------
def fig_learning_rate(view: View, out: Path):
    """Held-out accuracy against the learning rate, one panel per variant: seeds (dots), median (line), failed
    runs (red crosses: diverged, or an unrecovered loss spike)."""
    from .stats import SPIKE_RATIO, failed

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


# 15 -------------------------------------------------------------------------------------------------
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


def fig_adjoint(view: View, out: Path):
    """Why the adjoint's gradient is wrong: errors against the exact gradient over training and against steps and
    tolerances, and the trained flow's smallest singular value (medians over seeds and batches)."""
    df = _need(view.adjoint(), "adjoint")
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(style.TEXT, 4.1), layout="constrained")
    g = df[df["what"] == "gradient"]
    final = df["epoch"].max()
    epochs = sorted(df["epoch"].unique())
    trained = [v for v in TRAINED_COLOURS if v in set(df["train_variant"])] + \
              [v for v in style.ordered(df["train_variant"]) if v not in TRAINED_COLOURS]
    colour = lambda v: TRAINED_COLOURS.get(v, style.colour(v))  # noqa: E731
    at = lambda s: s.index.where(s.index > 0, 0.5)  # noqa: E731
    ax = axes[0, 0]
    e20 = g[(g["method"] == "euler") & (g["steps"] == g["steps"].min()) & (g["dtype"] == "float32")]
    for v in trained:
        d = e20[e20["train_variant"] == v]
        x = _adj_median(d, "epoch", "adjoint_vs_exact")
        ax.plot(at(x), x.values, color=colour(v), marker="o", ms=3, label="_")
        y = _adj_median(d, "epoch", "discrete_vs_exact")
        ax.plot(at(y), y.values, color=colour(v), ls="--", marker=".", ms=3, label="_")
    ax.set(yscale="log", ylabel="relative error vs exact gradient",
           title=f"Euler, {int(e20['steps'].min()) if len(e20) else 20} steps, float32, over training")
    _epoch_axis(ax, epochs)
    _styles(ax, [("-", "o", "adjoint"), ("--", ".", "direct, same Euler steps")], "upper left")
    ax = axes[0, 1]
    fx = g[(g["epoch"] == final) & g["steps"].notna() & (g["dtype"] == "float64") & (g["train_variant"] == "euler")]
    for method, col in (("euler", "#0072B2"), ("rk4-38", "#D55E00")):
        d = fx[fx["method"] == method]
        if d.empty:
            continue
        name = {"euler": "Euler", "rk4-38": "RK4 3/8"}[method]
        a, b = _adj_median(d, "steps", "adjoint_vs_exact"), _adj_median(d, "steps", "discrete_vs_exact")
        ax.plot(a.index, a.values, marker="o", ms=3, color=col, label=f"{name}: adjoint")
        ax.plot(b.index, b.values, marker="s", ms=3, ls="--", color=col, label=f"{name}: direct")
    ax.set(xscale="log", yscale="log", xlabel="steps N",
           title="fixed steps, float64, Euler-trained weights, end of training")
    steps = sorted(fx["steps"].dropna().unique())
    ax.set_xticks(steps, [str(int(n)) for n in steps])
    ax.minorticks_off()
    ax.legend(fontsize=5.5, ncol=2, loc="lower left")
    ax = axes[1, 0]
    tx = g[(g["epoch"] == final) & g["tol"].notna() & (g["method"] == "dopri5")]
    for v in trained:
        for dtype, ls in (("float32", "-"), ("float64", ":")):
            d = tx[(tx["train_variant"] == v) & (tx["dtype"] == dtype)]
            if d.empty or "adjoint_vs_exact" not in d:
                continue
            a = _adj_median(d, "tol", "adjoint_vs_exact").dropna()
            ax.plot(a.index, a.values, ls=ls, marker="o", ms=3, color=colour(v),
                    label="_")
    ax.set(xscale="log", yscale="log", xlabel="rtol = atol", ylabel="adjoint vs exact gradient",
           title="dopri5 adjoint, end of training")
    ax.invert_xaxis()
    _styles(ax, [("-", "o", "float32"), (":", "o", "float64")], "center right")
    ax = axes[1, 1]
    sv = df[df["what"] == "singular_values"]
    rc = df[(df["what"] == "reconstruction") & (df["method"] == "dopri5") & (df["dtype"] == "float32")]
    for v in trained:
        s_ = _adj_median(sv[sv["train_variant"] == v], "epoch", "sv_min_median")
        ax.plot(at(s_), s_.values, color=colour(v), marker="o", ms=3, label="_")
        r = _adj_median(rc[rc["train_variant"] == v], "epoch", "recon_rel")
        ax.plot(at(r), r.values, color=colour(v), ls="--", marker=".", ms=3, label="_")
    ax.set(yscale="log", title="flow map $\\partial y(T)/\\partial y(0)$; dopri5 $10^{-3}$ backward solve, float32")
    _epoch_axis(ax, epochs)
    _styles(ax, [("-", "o", "smallest singular value"), ("--", ".", "$y(0)$ reconstruction error")], "center left")
    from matplotlib.lines import Line2D

    seeds = {v: int(df[(df["train_variant"] == v) & (df["epoch"] == final)]["seed"].nunique()) for v in trained}
    fig.legend(handles=[Line2D([], [], color=colour(v), marker="o", ms=3,
                               label=f"trained as {style.label(v)} [{seeds[v]} seed{'s' if seeds[v] != 1 else ''} at the end]")
                        for v in trained], loc="outside upper center", ncol=len(trained), fontsize=6.5)
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig01_data": (fig_data, ()), "fig02_main": (fig_main, ("main",)), "fig03_curves": (fig_curves, ("main",)),
    "fig04_frontier": (fig_frontier, ("steps", "tolerance")), "fig05_memory": (fig_memory, ("memory",)),
    "fig06_step_time": (fig_step_time, ("memory",)), "fig07_dopri5_nfe": (fig_dopri5_nfe, ("main",)),
    "fig08_convergence": (fig_convergence, ("convergence",)), "fig09_trajectories": (fig_trajectories, ("trajectories",)),
    "fig10_regions": (fig_regions, ("trajectories",)), "fig11_ablations": (fig_ablations, ("ablations",)),
    "fig12_gradients": (fig_gradients, ("gradients",)),
    "fig13_controls": (fig_controls, ("controls",)), "fig14_learning_rate": (fig_learning_rate, ("learning-rate",)),
    "fig15_adjoint": (fig_adjoint, ("adjoint",)),
}


def _mark_partial(fig, view: View, needs) -> None:
    text = "PARTIAL: " + "; ".join(f"{n} {view.progress(n)[0]} of {view.progress(n)[1]} runs" for n in needs
                                   if not view.complete(n))
    fig.text(0.5, 1.02, text, ha="center", va="bottom", fontsize=7, color="#C00000")  # above any title


def draw_all(view: View, out: Path, only: list[str] | None = None, log=print, partial: bool = False) -> Outcome:
    """Draw every figure whose experiments are complete (with ``partial``, those with some runs too,
    marked as partial); one line per figure skipped or failed."""
    outcome = Outcome()
    for name, (fn, needs) in FIGURES.items():
        if only and name not in only:
            continue
        fig = attempt(name, lambda: fn(view, out), outcome, log, view, needs, partial)
        if fig is None:
            continue
        if name in outcome.partial:
            _mark_partial(fig, view, needs)
        try:
            outcome.written += style.save(fig, out, name)
        except OSError as exc:
            outcome.failed.append(f"{name}: failed: {exc.strerror or exc}")
            log(outcome.failed[-1])
            continue
        log(f"{name}: {out / name}.pdf")
    return outcome
