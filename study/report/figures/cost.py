"""Cost figures: activation memory and step time against the number of steps, dopri5's NFE over training,
and the solvers' convergence order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import style
from ..results import View
from .common import _band, _need, _plt, _results


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
    fig, ax = plt.subplots(figsize=(style.COLUMN, 2.9 if merge_identical else 3.3), layout="constrained")
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
    else:  # below the axes: inside, it hid the lines of the steps it covered
        fig.legend(fontsize=5.5, loc="outside lower center", ncol=2)
    return fig


def fig_memory(view: View, out: Path):
    """Saved-tensor bytes of one training step against the number of steps (blocks for the ResNet)."""
    return _against_steps(view, lambda d: d["activation_bytes"] / 2**20, None, "activation memory (MiB)",
                          "saved tensors, one step at batch 128", merge_identical=True)


def fig_step_time(view: View, out: Path):
    """Time of one training step (forward + backward) against the number of steps, per backend: each job's ratio
    to the Euler step timed in alternation with it, on the scale of the experiment's median Euler step."""
    from ..stats import reference_scaled

    df = _memory(view)
    df = df.assign(step_time_scaled=reference_scaled(df))
    return _against_steps(view, lambda d: 1e3 * d["step_time_scaled"], None, "time per training step (ms)",
                          "ratio to an alternating Euler step x its median; 1 thread", df=df)


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


def fig_convergence(view: View, out: Path):
    """Global error against step size on y' = cos(t) y, with fitted slopes (the empirical order)."""
    df = _need(view.convergence(), "convergence")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(style.COLUMN, 3.4), layout="constrained")
    for solver, d in df.groupby("solver"):
        backend = solver.split("-", 1)[0]
        meth = d["tableau"].iloc[0]
        col = style.method_colour(meth)
        mk = "o" if backend == "hand" else "s"
        ls = "-" if backend == "hand" else "--"
        ax.plot(d["h"], d["error"], color=col, marker=mk, ls=ls, mfc="none" if backend == "tdq" else col,
                label=f"{style.method_label(meth)} ({backend}): slope {d['slope'].iloc[0]:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="step size h", ylabel="max |error| at t = 2",
           title="y' = cos(t) y, float64 (tdq: open squares on hand)")
    fig.legend(fontsize=5.5, loc="outside lower center", ncol=2)
    return fig


FIGURES = {  # name -> (function, the experiments it reads)
    "fig05_memory": (fig_memory, ("memory",)), "fig06_step_time": (fig_step_time, ("memory",)),
    "fig07_dopri5_nfe": (fig_dopri5_nfe, ("main",)), "fig08_convergence": (fig_convergence, ("convergence",)),
}
