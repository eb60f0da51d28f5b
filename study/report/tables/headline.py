"""The practitioner's table: per task, which method to use, which to avoid and why, and whether the model learned
an ODE or its solver.  Every cell follows a stated rule from the records:

* **best**: among the flow variants (models with a flow; the controls are not methods) with no failed seed (all of
  them, if every one lost a seed), the one whose seeds have the best mean metric, with its Student-t 95% interval;
* **use**: among those same variants, whose mean lies within the best's interval, the one with the lowest median
  training wall time (its evaluations per training unit and its activation memory beside it);
* **avoid**: the variant with the most failed seeds (diverged, or on the classification tasks a last loss above 1.5x
  its lowest), the reason being the failures; with none failed, the one whose own solver's metric is furthest from
  the reference solve's where the task records both (a biased likelihood); else the one with the worst mean, if its
  interval lies below the best's (else none); variants alike (a bias within 5%, a mean within its interval) are
  named with it;
* **ODE or solver**: the recommended variant's trained models solved by the float64 reference solve (solver
  transfer): "ODE" when the median metric under the reference solve is no worse than under the training solver by
  more than the best's interval half-width, else "solver".  Where the recommended variant was not transferred,
  the best's models, else those of the transferred variant with the best mean within the best's interval (the
  cell then names it).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import tasks, variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from ..stats import task_failed
from ..stats import t_interval
from .common import _num, _table

TASK_MACROS = {"spiral": "Spiral", "dynamics": "Dynamics", "density": "Density", "digits": "Digits"}
REFERENCE_SOLVER = "dopri5-1e-08-f64"
EXPERIMENTS = tuple(e for t in tasks.TASKS for e in (tasks.experiment(t, "main"), tasks.experiment(t, "transfer")))


def _goodness(task: str):
    """Maps a metric value to 'higher is better' (percent metrics in points)."""
    m = tasks.primary(task)
    scale = 100.0 if m.percent else 1.0
    if m.target is not None:
        return lambda v: -abs(v - m.target) * scale
    return (lambda v: v * scale) if m.higher_is_better else (lambda v: -v * scale)


def _failed(task: str, d: pd.DataFrame) -> pd.Series:
    return task_failed(task, d)


def _per_unit(d: pd.DataFrame) -> pd.Series:
    units = d["epochs_completed"] if "epochs_completed" in d else d["iterations_completed"]
    return (d["nfe_forward"] + d["nfe_backward"]) / units.replace(0, np.nan)


def _reasons(d: pd.DataFrame, fail: pd.Series) -> list[str]:
    """Why the failed runs failed: each recorded reason, and the runs that finished in a loss spike."""
    said = [str(r).split(":")[0] for r in d.loc[fail, "reason"].dropna()] if "reason" in d else []
    spiked = int(fail.sum()) - len(said)
    return sorted(set(said)) + ([f"{spiked} ended in a loss spike"] if spiked > 0 else [])


def variant_stats(task: str, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per flow variant: seeds, failures, mean and half-width of the (goodness-oriented) metric, median wall
    time, evaluations per training unit and activation memory, and the own-solver bias where recorded."""
    metric, good = tasks.primary(task).name, _goodness(task)
    rows = []
    for v, d in runs.groupby("variant", sort=False):
        if variants.get(v).model_config.model != "ode":
            continue
        d = d[d["status"].isin(["ok", "diverged"])]
        fail = _failed(task, d)
        ok = d[(d["status"] == "ok") & ~fail]
        mean, half = t_interval([good(x) for x in ok[metric].astype(float)])
        bias = float(ok["nll_bias"].abs().median()) if "nll_bias" in ok and len(ok) else None
        mem = float(ok["activation_bytes"].median()) if "activation_bytes" in ok and ok["activation_bytes"].notna().any() else None
        rows.append({"variant": v, "seeds": len(d), "failed": int(fail.sum()), "mean": mean, "half": half,
                     "wall": float(ok["wall_time_s"].median()) if len(ok) else math.nan,
                     "nfe": float(_per_unit(ok).median()) if len(ok) else math.nan, "memory": mem, "bias": bias,
                     "reasons": _reasons(d, fail)})
    return pd.DataFrame(rows)


def choose(task: str, stats: pd.DataFrame) -> dict:
    """The table's rules (module docstring) applied to one task's :func:`variant_stats`."""
    finished = stats[np.isfinite(stats["mean"])]
    sound = finished[finished["failed"] == 0]
    pool = sound if len(sound) else finished  # a variant that lost seeds is neither best nor used, if any lost none
    best = pool.loc[pool["mean"].idxmax()]
    half = best["half"] if math.isfinite(best["half"]) else 0.0
    near = pool[pool["mean"] >= best["mean"] - half]
    use = near.loc[near["wall"].idxmin()]
    if stats["failed"].max() > 0:
        avoid = stats.loc[stats["failed"].idxmax()]
        why = f"{avoid['failed']} of {avoid['seeds']} seeds failed" + (
            f" ({'; '.join(avoid['reasons'])})" if avoid["reasons"] else "")
    elif stats["bias"].notna().any() and stats["bias"].max() > half:
        avoid = stats.loc[stats["bias"].idxmax()]
        why = f"its solver misreports the metric by {avoid['bias']:.3g} (median |own - reference|)"
    else:
        avoid = finished.loc[finished["mean"].idxmin()]
        why = "the worst metric"
        ah = avoid["half"] if math.isfinite(avoid["half"]) else 0.0
        if avoid["mean"] + ah >= best["mean"] - half:  # its interval reaches the best's: nothing stands out
            avoid, why = None, "none: every variant's interval reaches the best's"
    if avoid is not None:  # variants indistinguishable from it (the same arithmetic, or within its interval)
        key, tol = ("bias", 0.05 * abs(avoid["bias"])) if why.startswith("its solver") else (
            ("mean", avoid["half"] if math.isfinite(avoid["half"]) else 0.0) if why == "the worst metric" else (None, 0))
        if key is not None:
            alike = [v for v in stats.itertuples() if v.variant != avoid["variant"]
                     and abs(getattr(v, key) - avoid[key]) <= tol]
            if alike:
                why += f" ({len(alike)} more alike: " + ", ".join(
                    variants.get(v.variant).label for v in alike) + ")"
    return {"best": best, "half": half, "near": near, "use": use, "avoid": avoid, "why": why}


def solver_or_ode(task: str, variant: str, transfer: pd.DataFrame, half: float) -> tuple[str, float, float] | None:
    """``("ODE" | "solver", metric under the training solver, under the reference solve)`` of ``variant``'s trained
    models (medians over seeds, goodness-oriented), or None without transfer rows for it."""
    from ...config import solver_label

    good = _goodness(task)
    d = transfer[(transfer["variant"] == variant) & transfer["value"].notna()]
    if d.empty:
        return None
    cfg = variants.get(variant).model_config

    def is_own(label: str) -> bool:  # the training solver: its method on the training grid, or its tolerance
        if cfg.adaptive:
            return label == solver_label({"method": cfg.method, "tol": cfg.rtol})
        method, _, grid = label.rpartition("-")
        return method == cfg.method and grid.isdigit()

    own = d[[is_own(x) for x in d["solver"]]]["value"]
    ref = d[d["solver"] == REFERENCE_SOLVER]["value"]
    if own.empty or ref.empty:
        return None
    o, r = good(float(own.median())), good(float(ref.median()))
    return ("ODE" if r >= o - half else "solver"), o, r


def headline_row(view: View, task: str, N: Numbers | None = None) -> list[str]:
    main, transfer_exp = tasks.experiment(task, "main"), tasks.experiment(task, "transfer")
    runs = view.runs(main)
    if runs.empty:
        raise MissingRuns(main)
    stats = variant_stats(task, runs)
    c = choose(task, stats)
    transfer = view.transfer(transfer_exp)
    ode, judged = None, c["use"]["variant"]
    if not transfer.empty:
        near = c["near"].sort_values("mean", ascending=False)["variant"]
        for judged in dict.fromkeys([c["use"]["variant"], c["best"]["variant"], *near]):
            ode = solver_or_ode(task, judged, transfer, c["half"])
            if ode is not None:
                break
    m = tasks.primary(task)
    sign = 1.0 if (m.higher_is_better and m.target is None) else -1.0
    show = lambda g: sign * g  # noqa: E731 - back to the metric's own sign (percent metrics in points)
    fmt = "{:.1f}" if m.percent else "{:.3g}"
    hfmt = "{:.1f}" if m.percent else "{:.2g}"
    t = TASK_MACROS.get(task, task.title())
    if N is not None:
        N.add(f"Hl{t}Best", variants.get(c["best"]["variant"]).label)
        N.add(f"Hl{t}Use", variants.get(c["use"]["variant"]).label)
        N.add(f"Hl{t}Avoid", "none" if c["avoid"] is None else variants.get(c["avoid"]["variant"]).label)
        N.add(f"Hl{t}UseWall", c["use"]["wall"], "{:.0f}")
        N.add(f"Hl{t}Ode", "--" if ode is None else ode[0])
    best = f"{variants.get(c['best']['variant']).label}: {fmt.format(show(c['best']['mean']))}" + (
        f" $\\pm$ {hfmt.format(c['half'])}" if c["half"] else "")
    u = c["use"]
    mem = "--" if u["memory"] is None or not math.isfinite(u["memory"]) else f"{u['memory'] / 2**20:.1f} MiB"
    use = (f"{variants.get(u['variant']).label}: {fmt.format(show(u['mean']))}; {_num(u['wall'])} s, "
           f"{_num(u['nfe'])} NFE, {mem}")
    whose = "" if judged == u["variant"] else f"{variants.get(judged).label}: "
    odecell = "--" if ode is None else (f"{ode[0]} ({whose}{fmt.format(show(ode[1]))} own, "
                                        f"{fmt.format(show(ode[2]))} ref.)")
    avoid = c["why"] if c["avoid"] is None else f"{variants.get(c['avoid']['variant']).label}: {c['why']}"
    return [task, f"{m.label}", best, use, avoid, odecell]


def headline_numbers(view: View, N: Numbers) -> str:
    rows = [headline_row(view, t, N) for t in tasks.TASKS]
    return _table("l l p{3.2cm} p{4.2cm} p{4.2cm} p{2.6cm}",
                  ["task", "metric", "best (mean, 95\\% CI)", "use: the cheapest within the best's interval",
                   "avoid, and why", "an ODE or its solver"], rows,
                  "The practitioner's table; rules in study/report/tables/headline.py.")
