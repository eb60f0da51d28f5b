"""The stiff tasks' numbers and the spiral's implicit runs.

``stiff.tex``: per stiff task, the explicit against the implicit runs of its ``main`` and the explicit controls at
stable step counts: seeds trained of seeds run, each seed's trajectory error where they trained, the training
evaluations, Newton iterations and wall time (medians over the seeds that trained), and where the explicit ones
failed.  ``implicit.tex``: the spiral's seeds whose torchdiffeq dopri5 died in ``main``, that run and the hand
engine's dopri5 of the same seed against Kvaerno 3(2) on the same seed and protocol (the ``implicit``
experiment)."""
from __future__ import annotations

import re

import numpy as np

from ... import tasks
from ...config import METHODS
from .. import style
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _num, _table

STIFF = tuple(t for t in tasks.TASKS if getattr(tasks.get(t), "STIFF", False))
EXPERIMENTS = tuple(e for t in STIFF for e in (tasks.experiment(t, "main"), tasks.experiment(t, "controls")))
IMPLICIT_EXPERIMENTS = ("main", "implicit")


def _failed_at(reasons) -> str:
    """The round each failed seed stopped in, from its reason (``... in iteration 12: ...``)."""
    at = sorted(int(m.group(1)) for r in reasons if isinstance(r, str) for m in [re.search(r" (\d+)", r)] if m)
    if not at:
        return ""
    return f"{at[0]}" if at[0] == at[-1] else f"{at[0]}--{at[-1]}"


def _fisher(a, b) -> float:
    """Fisher's exact test, two-sided: do ``a`` and ``b`` train (status ok) in different proportions?"""
    from scipy.stats import fisher_exact

    ta, tb = int((a["status"] == "ok").sum()), int((b["status"] == "ok").sum())
    return float(fisher_exact([[ta, len(a) - ta], [tb, len(b) - tb]]).pvalue)


def _row(label: str, d) -> list[str]:
    ok = d[d["status"] == "ok"]
    err = ", ".join(f"{x:.2g}" for x in ok["traj_err"].astype(float)) if len(ok) else "--"
    nfe = (ok["nfe_forward"].astype(float) + ok["nfe_backward"].astype(float)).median() if len(ok) else float("nan")
    newton = ok["newton_iterations"].astype(float).median() if len(ok) and "newton_iterations" in ok else float("nan")
    wall = ok["wall_time_s"].astype(float).median() if len(ok) else float("nan")
    failed = d[d["status"] != "ok"]
    where = _failed_at(failed["reason"]) if len(failed) else ""
    return [label, f"{len(ok)}/{len(d)}", err, _num(nfe), _num(newton), _num(wall, "{:,.1f}"), where or "--"]


def _constants(N: Numbers) -> None:
    """The stiff system's and the methods' constants the text names (the system's from its module)."""
    from ...tasks import stiff

    N.add("StiffK", stiff.K, "{:.0f}")
    N.add("StiffCircleEig", 2 * stiff.K, "{:.0f}")
    N.add("StiffStartEig", stiff.K * (3 * stiff.R0 ** 2 - 1), "{:.0f}")
    N.add("StiffObservations", tasks.get("stiff").Protocol().n_points, "{:d}")
    N.add("KvaernoLabel", METHODS["kvaerno3"].label, "{}")
    for name, m in (("Euler", "euler"), ("Rk", "rk4"), ("Dopri", "dopri5")):
        N.add(f"{name}RealLimit", METHODS[m].real_limit, "{:.3g}")


def stiff_numbers(view: View, N: Numbers) -> str:
    rows = []
    _constants(N)
    for task in STIFF:
        T = task.title()
        main = view.runs(tasks.experiment(task, "main"), "train")
        controls = view.runs(tasks.experiment(task, "controls"), "train")
        if main.empty:
            raise MissingRuns(tasks.experiment(task, "main"))
        implicit = main["method"].map(lambda m: METHODS[m].implicit is not None)
        explicit = main[~implicit]
        N.add(f"{T}ExplicitRuns", len(explicit), "{:d}")
        N.add(f"{T}ExplicitTrained", int((explicit["status"] == "ok").sum()), "{:d}")
        N.add(f"{T}ImplicitRuns", int(implicit.sum()), "{:d}")
        N.add(f"{T}ImplicitTrained", int((main[implicit]["status"] == "ok").sum()), "{:d}")
        N.add(f"{T}TrainedFisherP", _fisher(explicit, main[implicit]), "{:.1e}")
        for v in style.ordered(main["variant"].unique()):
            d = main[main["variant"] == v]
            rows.append(_row(f"{task}: {style.label(v)}", d))
            ok = d[d["status"] == "ok"]
            if len(ok) and METHODS[d["method"].iloc[0]].implicit:
                m = re.sub(r"[^A-Za-z]", "", v.title())
                N.add(f"{T}{m}TrajErr", float(np.median(ok["traj_err"].astype(float))), "{:.2g}")
                N.add(f"{T}{m}Wall", float(np.median(ok["wall_time_s"].astype(float))), "{:.0f}")
        for (v, steps), d in controls.groupby(["variant", "steps"]):
            rows.append(_row(f"{task}: {style.label(v)}, {steps} steps an interval", d))
            ok = d[d["status"] == "ok"]
            m = re.sub(r"[^A-Za-z]", "", v.title())
            N.add(f"{T}Control{m}Trained", len(ok), "{:d}")
            N.add(f"{T}Control{m}Seeds", len(d), "{:d}")
            N.add(f"{T}Control{m}Steps", int(steps), "{:d}")
            if len(ok):
                N.add(f"{T}Control{m}Wall", float(np.median(ok["wall_time_s"].astype(float))), "{:.0f}")
    return _table("l r l r r r l", ["run", "trained", "trajectory error per seed", "train NFE", "Newton", "wall s",
                                    "failed in iteration"], rows,
                  "The stiff task: every variant of its main (5 seeds) and the explicit controls at step counts "
                  "inside their stability limits. Trajectory error by a float64 Radau rollout of the learned field; "
                  "NFE, Newton iterations and wall time are medians over the seeds that trained.")


def implicit_numbers(view: View, N: Numbers) -> str:
    main, imp = view.runs("main", "train"), view.runs("implicit", "train")
    if imp.empty:
        raise MissingRuns("implicit")
    rows = []
    for seed in sorted(imp["seed"].astype(int)):
        dq = main[(main["variant"] == "tdq-dopri5") & (main["seed"].astype(int) == seed)].iloc[0]
        hd = main[(main["variant"] == "hand-dopri5") & (main["seed"].astype(int) == seed)].iloc[0]
        kv = imp[imp["seed"].astype(int) == seed].iloc[0]
        acc = lambda r: "--" if r["status"] != "ok" else f"{100 * float(r['test_acc']):.1f}"  # noqa: E731
        nfe = lambda r: float(r["nfe_forward"]) + float(r["nfe_backward"])  # noqa: E731
        for name, r in (("dopri5 (tdq)", dq), ("dopri5 (hand)", hd), ("Kvaerno 3(2)", kv)):
            rows.append([str(seed), name, f"{int(r['epochs_completed'])}", r["status"], acc(r), _num(nfe(r)),
                         _num(float(r.get("newton_iterations", float("nan")))), _num(float(r["wall_time_s"]), "{:,.0f}")])
        S = ("Zero", "One", "Two", "Three", "Four")[seed] if seed < 5 else str(seed)
        N.add(f"ImplicitSeed{S}Epochs", int(kv["epochs_completed"]), "{:d}")
        N.add(f"ImplicitSeed{S}DopriEpochs", int(dq["epochs_completed"]), "{:d}")
        N.add(f"ImplicitSeed{S}Status", "trained" if kv["status"] == "ok" else "failed", "{}")
        N.add(f"ImplicitSeed{S}HandDopriStatus", "trained" if hd["status"] == "ok" else "failed", "{}")
        N.add(f"ImplicitSeed{S}TestAcc", 100 * float(kv["test_acc"]) if kv["status"] == "ok" else None, "{:.1f}")
        N.add(f"ImplicitSeed{S}NfeRatio", nfe(kv) / max(1.0, nfe(dq)) * dq["epochs_completed"] / max(
            1, kv["epochs_completed"]), "{:.1f}")
        N.add(f"ImplicitSeed{S}WallRatio", float(kv["wall_time_s"]) / float(dq["wall_time_s"]) * float(
            dq["epochs_completed"]) / max(1.0, float(kv["epochs_completed"])), "{:.1f}")
    return _table("r l r l r r r r", ["seed", "solver", "epochs", "status", "test acc (\\%)", "train NFE", "Newton",
                                      "wall s"], rows,
                  "The spiral at lr 0.01 (main's protocol): torchdiffeq's dopri5, which died of step-size underflow "
                  "on these seeds, the hand engine's dopri5 (main's runs of the same seeds) and the hand engine's "
                  "L-stable Kvaerno 3(2) (rtol = atol = 1e-3) on the same seeds.")
