"""The seminorm adjoint's saving: per task and per seed, the backward evaluations of torchdiffeq's continuous
adjoint with dopri5 under the default norm and under the seminorm (Kidger, Chen & Lyons, ICML 2021: the adjoint's
step control leaves the parameters' adjoint out; they report a median saving of 40 % of the backward
evaluations).  Both from the task's ``main``, the same seeds; the two are trained separately, so a seed's pair
differs in its trained weights too, and the table shows every seed's saving, not only their median."""
from __future__ import annotations

import numpy as np

from ... import tasks
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _table

DEFAULT, SEMINORM = "adjoint-dopri5", "adjoint-dopri5-seminorm"
KIDGER_MEDIAN_SAVING = 40  # percent of the backward evaluations (their Table 1's median over their experiments)


def _tasks(view: View) -> list[str]:
    """The tasks whose ``main`` trains both (the spiral's main leaves the seminorm out for the time budget)."""
    from ...experiments import applicable

    return [t for t in tasks.TASKS if t != tasks.DEFAULT and {DEFAULT, SEMINORM} <= set(applicable(t))]


EXPERIMENTS = tuple(tasks.experiment(t, "main") for t in tasks.TASKS if t != tasks.DEFAULT)


def seminorm_numbers(view: View, N: Numbers) -> str:
    rows, medians = [], []
    for task in _tasks(view):
        df = view.runs(tasks.experiment(task, "main"), "train")
        if df.empty:
            raise MissingRuns(tasks.experiment(task, "main"))
        pair = {}
        for v in (DEFAULT, SEMINORM):
            d = df[(df["variant"] == v) & (df["status"] == "ok")]
            pair[v] = dict(zip(d["seed"].astype(int), d["nfe_backward"].astype(float)))
        seeds = sorted(set(pair[DEFAULT]) & set(pair[SEMINORM]))
        if not seeds:
            rows.append([task, "0", "--", "--", "no seed trained under both"])
            continue
        saving = [100.0 * (1.0 - pair[SEMINORM][s] / pair[DEFAULT][s]) for s in seeds]
        med = float(np.median(saving))
        medians.append(med)
        N.add(f"Semi{task.title()}MedianSaving", med, "{:.1f}")
        rows.append([task, str(len(seeds)), f"{np.median([pair[DEFAULT][s] for s in seeds]):,.0f}",
                     f"{np.median([pair[SEMINORM][s] for s in seeds]):,.0f}",
                     ", ".join(f"{x:+.1f}" for x in saving) + f" (median {med:+.1f})"])
    N.add("SemiKidgerMedianSaving", KIDGER_MEDIAN_SAVING, "{:d}")
    if medians:
        N.add("SemiBestMedianSaving", max(medians), "{:.1f}")
    return _table("l r r r l", ["task", "seeds", "backward NFE, default", "backward NFE, seminorm",
                                "saving per seed, \\%"], rows,
                  "The seminorm adjoint (torchdiffeq's dopri5 at rtol = atol = 1e-3, trained): backward "
                  f"evaluations per training, medians over the seeds, and each seed's saving (Kidger et al. report a "
                  f"median of {KIDGER_MEDIAN_SAVING}\\%). A stiff task's explicit adjoints fail in training: no pair.")
