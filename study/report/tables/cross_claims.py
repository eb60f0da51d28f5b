"""Claims across tasks: six questions, each with a stated rule and a verdict per task ("holds", "does not hold",
or "n/a" where the task cannot pose it), from the records.

1. *RK4 buys accuracy over Euler*: the hand RK4's mean metric is better than the hand Euler's and their Student-t
   95% intervals do not overlap.
2. *dopri5's evaluations grow in training, and the remedies stop it*: torchdiffeq's dopri5 takes at least
   :data:`GROWTH` times the forward evaluations per iteration at the end of training as at the start (the task's
   main runs); where it grows, a remedy "stops it" when its own end-to-start ratio stays below that factor or its
   end is at most :data:`CUT` of the unremedied end, and it does so "at a cost" when, with either dopri5 engine,
   its mean metric falls below the unremedied runs' Student-t 95% interval or more of its runs fail.
3. *The continuous adjoint's gradient is wrong on trained weights, and the checkpointed adjoint fixes it*: on the
   trained field of the work-precision problem the hand engine's continuous dopri5 adjoint never gets within
   :data:`WRONG` (relative error) of the exact gradient over the tolerance sweep, while the checkpointed adjoint
   does within :data:`RIGHT`.
4. *A fixed-step CNF reports a likelihood its density does not have*: the Euler-trained flow's density as its own
   solver reports it integrates to more than 1 + :data:`MASS_SLACK` on the lattice (median over seeds), where the
   reference solve's integrates to 1 within it (density estimation only).
5. *The flow contributes over its control*: the hand Euler flow's mean metric beats the model without a flow's and
   their intervals do not overlap (the classification tasks, which have that control).
6. *A model trained with Euler steps is an ODE*: the hand Euler models' median metric under the float64 reference
   solve is no worse than under their own Euler solve by more than their Student-t 95% half-width (the test of
   solver transfer; the practitioner's table applies it to the recommended variant).  Not posed where the metric
   is a likelihood: there the own solver's number need not be one (claim 4 asks about it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import tasks, variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from ..stats import t_interval
from ..style import method_label
from .common import _table

GROWTH = 1.5
CUT = 0.75
WRONG = 1e-2
RIGHT = 1e-4
MASS_SLACK = 0.05
HOLDS, FAILS, NA = "holds", "does not hold", "n/a"
TASK_MACROS = {"spiral": "Spiral", "dynamics": "Dynamics", "density": "Density", "digits": "Digits"}
CLAIMS = (("RkfourOverEuler", "RK4 buys accuracy over Euler"),
          ("DopriGrows", "dopri5's NFE grows in training; a remedy stops it"),
          ("AdjointWrong", "the continuous adjoint's gradient is wrong on trained weights; checkpointing fixes it"),
          ("CnfMisreports", "a fixed-step CNF reports a likelihood its density does not have"),
          ("FlowContributes", "the flow contributes over its control"),
          ("EulerIsOde", "a model trained with Euler steps is an ODE"))


def _interval(task: str, d: pd.DataFrame) -> tuple[float, float]:
    """Mean and t 95% half-width of the primary metric, oriented so that higher is better."""
    m = tasks.primary(task)
    ok = d[d["status"] == "ok"][m.name].astype(float)
    sign = 1.0 if m.higher_is_better and m.target is None else -1.0
    vals = [sign * (abs(v - m.target) if m.target is not None else v) for v in ok]
    return t_interval(vals)


def _beats(task: str, runs: pd.DataFrame, a: str, b: str) -> tuple[str, str]:
    (ma, ha), (mb, hb) = _interval(task, runs[runs["variant"] == a]), _interval(task, runs[runs["variant"] == b])
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return NA, "missing runs"
    holds = ma - ha > mb + hb
    m = tasks.primary(task)
    scale, sign = (100.0 if m.percent else 1.0), (1.0 if m.higher_is_better else -1.0)
    fmt = "{:.1f}" if m.percent else "{:.3g}"
    return (HOLDS if holds else FAILS), f"{fmt.format(sign * ma * scale)} vs {fmt.format(sign * mb * scale)}"


def _nfe_ratio(curves: pd.DataFrame) -> tuple[float, float, float] | None:
    """Median over runs of (start, end) forward evaluations per iteration, and end / start."""
    starts, ends = [], []
    for _, d in curves.groupby("hash"):
        d = d.sort_values("iteration")
        per = d["nfe_forward"].to_numpy() / np.diff(np.concatenate([[0], d["iteration"].to_numpy()]))
        if len(per) >= 2:
            starts.append(per[0])
            ends.append(per[-1])
    if not starts:
        return None
    s, e = float(np.median(starts)), float(np.median(ends))
    return s, e, e / s


def _growth(view: View, task: str) -> tuple[str, str]:
    from ..remedy_arms import ARM_LABELS, label_arms

    main = tasks.experiment(task, "main")
    curves = view.task_curves(main)
    if curves.empty:
        return NA, "no curves"
    mine = curves[(curves["variant"] == "tdq-dopri5") & (curves["status"] == "ok")]
    r = _nfe_ratio(mine)
    if r is None:
        return NA, "no dopri5 runs"
    start, end, ratio = r
    if ratio < GROWTH:
        return FAILS, f"{start:.0f} to {end:.0f} per iteration"
    name = tasks.experiment(task, "remedies")
    if name not in view.membership or view.runs(name).empty:
        return HOLDS, f"{start:.0f} to {end:.0f}; no remedies measured"
    runs = label_arms(view.runs(name))
    rc = view.task_curves(name)
    stopped = []
    for arm in ARM_LABELS:
        if arm == "none":
            continue
        hashes = set(runs[(runs["arm"] == arm) & (runs["variant"] == "tdq-dopri5") & (runs["status"] == "ok")]["hash"])
        ra = _nfe_ratio(rc[rc["hash"].isin(hashes)])
        if ra is not None and (ra[2] < GROWTH or ra[1] <= CUT * end):
            stopped.append(ARM_LABELS[arm] + (" at a cost" if _costs(task, runs, arm) else ""))
    return HOLDS, f"{start:.0f} to {end:.0f}; stopped by: {', '.join(stopped) if stopped else 'none'}"


def _costs(task: str, runs: pd.DataFrame, arm: str) -> bool:
    """Whether the remedy costs metric with either dopri5 engine: its runs' mean lies below the unremedied runs'
    interval, or more of its runs failed."""
    from ..stats import task_failed

    for v in ("tdq-dopri5", "hand-dopri5"):
        of = lambda a: runs[(runs["arm"] == a) & (runs["variant"] == v)]  # noqa: E731
        none, mine = of("none"), of(arm)
        if none.empty or mine.empty:
            continue
        (m0, h0), (m, _) = _interval(task, none), _interval(task, mine)
        if np.isfinite(m) and np.isfinite(m0) and m < m0 - (h0 if np.isfinite(h0) else 0.0):
            return True
        if task_failed(task, mine).sum() > task_failed(task, none).sum():
            return True
    return False


def _adjoint(view: View, task: str) -> tuple[str, str]:
    df = view.workprecision(tasks.experiment(task, "work-precision"))
    if df.empty:
        return NA, "no work-precision record"
    g = df[(df["field"] == "trained") & (df["what"] == "gradient") & (df["method"] == "dopri5")]
    adj = g[g["backend"] == "hand-adjoint"]["error"].min()
    ckpt = g[g["backend"] == "hand-checkpoint"]["error"].min()
    holds = adj > WRONG and ckpt < RIGHT
    trained = str(df["train_variant"].iloc[0]) if "train_variant" in df else "?"
    label = method_label(variants.get(trained).method) if trained in variants.VARIANTS else trained
    return (HOLDS if holds else FAILS), f"best error {adj:.1e} (adjoint), {ckpt:.1e} (checkpointed); {label}-trained field"


def _cnf(view: View, task: str) -> tuple[str, str]:
    runs = view.runs(tasks.experiment(task, "main"))
    if "mass_own" not in runs:
        return NA, "no likelihood"
    e = runs[(runs["variant"] == "euler") & (runs["status"] == "ok")]
    own, ref = float(e["mass_own"].median()), float(e["mass"].median())
    holds = own > 1 + MASS_SLACK and abs(ref - 1) <= MASS_SLACK
    return (HOLDS if holds else FAILS), f"mass {own:.2f} reported, {ref:.2f} by the reference solve"


def _flow(view: View, task: str) -> tuple[str, str]:
    runs = view.runs(tasks.experiment(task, "main"))
    if "no-flow" not in set(runs["variant"]):
        return NA, "no control without a flow"
    return _beats(task, runs, "euler", "no-flow")


def _euler_is_ode(view: View, task: str, runs: pd.DataFrame) -> tuple[str, str]:
    from .headline import solver_or_ode

    if "mass_own" in runs:  # a likelihood task: the own solver's number is no likelihood (the CNF row)
        return NA, "its own solver's NLL is no likelihood"
    transfer = view.transfer(tasks.experiment(task, "transfer"))
    m = tasks.primary(task)
    _, half = _interval(task, runs[runs["variant"] == "euler"])
    half = (half if np.isfinite(half) else 0.0) * (100.0 if m.percent else 1.0)  # in the goodness's units
    judged = solver_or_ode(task, "euler", transfer, half) if not transfer.empty else None
    if judged is None:
        return NA, "not transferred"
    sign = 1.0 if m.higher_is_better and m.target is None else -1.0
    fmt = "{:.1f}" if m.percent else "{:.3g}"
    own, ref = (fmt.format(sign * v) for v in judged[1:])
    return (HOLDS if judged[0] == "ODE" else FAILS), f"{own} own solver, {ref} reference"


def verdicts(view: View, task: str) -> dict[str, tuple[str, str]]:
    runs = view.runs(tasks.experiment(task, "main"))
    if runs.empty:
        raise MissingRuns(tasks.experiment(task, "main"))
    return {"RkfourOverEuler": _beats(task, runs, "rk4", "euler"), "DopriGrows": _growth(view, task),
            "AdjointWrong": _adjoint(view, task), "CnfMisreports": _cnf(view, task),
            "FlowContributes": _flow(view, task), "EulerIsOde": _euler_is_ode(view, task, runs)}


def cross_claim_numbers(view: View, N: Numbers) -> str:
    for name, value in (("Growth", GROWTH), ("Cut", CUT), ("Wrong", WRONG), ("Right", RIGHT), ("MassSlack", MASS_SLACK)):
        N.add("Xc" + name, value, "{:g}")
    per_task = {t: verdicts(view, t) for t in tasks.TASKS}
    rows = []
    for key, text in CLAIMS:
        cells = []
        for t in tasks.TASKS:
            verdict, evidence = per_task[t][key]
            N.add(f"Xc{key}{TASK_MACROS.get(t, t.title())}", verdict)
            cells.append(verdict if verdict == NA else f"{verdict} ({evidence})")
        held = sum(per_task[t][key][0] == HOLDS for t in tasks.TASKS)
        posed = sum(per_task[t][key][0] != NA for t in tasks.TASKS)
        N.add(f"Xc{key}Held", held, "{:d}")
        N.add(f"Xc{key}Posed", posed, "{:d}")
        rows.append([text] + cells)
    return _table("p{3.4cm} " + " ".join(["p{3.2cm}"] * len(tasks.TASKS)), ["claim", *tasks.TASKS], rows,
                  "Claims across tasks; rules in study/report/tables/cross_claims.py.")


EXPERIMENTS = tuple(e for t in tasks.TASKS for e in (tasks.experiment(t, "main"), tasks.experiment(t, "work-precision"),
                                                     tasks.experiment(t, "transfer")))
