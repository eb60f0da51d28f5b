"""Accuracy as one setting varies: the steps and tolerance sweeps' tables, and the ablations' numbers (lift
dimension, time input, zero initialisation)."""
from __future__ import annotations

import math

from ... import variants
from ..numbers import Numbers, spell
from ..results import MissingRuns, View
from ..style import label, method_label
from .common import _macro, _ms, _num, _table


def sweep_numbers(view: View, N: Numbers) -> tuple[str, str]:
    steps = view.runs("steps")
    tol = view.runs("tolerance")
    if steps.empty or tol.empty:
        raise MissingRuns("steps" if steps.empty else "tolerance")
    rows = []
    best = {}
    for (v, n), d in steps.groupby(["variant", "steps"]):
        ok = d[d["status"] == "ok"]
        nfe = (ok["nfe_forward"] + ok["nfe_backward"]).mean()
        te_m, _, te = _ms(ok["test_acc"])
        tr_m, _, tr = _ms(ok["train_acc"])
        rows.append([method_label(variants.get(v).method), str(n), _num(nfe), f"${tr}$", f"${te}$"])
        best.setdefault(v, []).append((n, nfe, te_m, tr_m))
    for v, pts in best.items():
        m = _macro(v)
        for n, nfe, te, tr in pts:
            if spell(n):
                N.add(f"Steps{m}{spell(n)}TestAcc", te)
                N.add(f"Steps{m}{spell(n)}TrainAcc", tr)
    # Euler with more steps against RK4 with fewer at matched NFE: Euler N=80 (80 NFE/pass) vs RK4 N=20 (80 NFE/pass)
    steps_table = _table("lrrll", ["solver", "$N$", "NFE", "train acc. (\\%)", "test acc. (\\%)"], rows,
                         "Steps sweep: mean \\pm sd over seeds.")
    rows = []
    for (v, r), d in tol.groupby(["variant", "rtol"]):
        ok = d[d["status"] == "ok"]
        nfe_f, nfe_b = ok["nfe_forward"].mean(), ok["nfe_backward"].mean()
        te_m, _, te = _ms(ok["test_acc"])
        div = int((d["status"] == "diverged").sum())
        rows.append([label(v), f"\\num{{{r:.0e}}}", _num(nfe_f), _num(nfe_b), f"${te}$" + (f" ({div} div.)" if div else "")])
        word = spell(int(round(-math.log10(r))))
        if word:
            N.add(f"Tol{_macro(v)}{word}TestAcc", te_m)
            N.add(f"Tol{_macro(v)}{word}Nfe", _num(nfe_f + nfe_b), "{}")
    N.add("TolEpochs", int(tol["epochs"].iloc[0]), "{:d}")
    N.add("TolSeeds", int(tol.groupby(["variant", "rtol"]).size().max()), "{:d}")
    N.add("StepsSeeds", int(steps.groupby(["variant", "steps"]).size().min()), "{:d}")
    tol_table = _table("lrrrl", ["variant", "tol.", "NFE fwd", "NFE bwd", "test acc. (\\%)"], rows,
                       "Tolerance sweep (rtol = atol).")
    return steps_table, tol_table


def ablation_numbers(view: View, N: Numbers) -> None:
    ab = view.runs("ablations")
    base = ab[(ab["variant"] == "euler") & ab["time_input"].astype(bool) & ab["zero_init"].astype(bool)]
    for d_, g in base.groupby("lift_dim"):
        word = spell(int(d_))
        if word:
            N.add(f"Lift{word}BestTestAcc", 100 * g[g["status"] == "ok"]["test_acc"].max())
            N.add(f"Lift{word}TestAcc", _ms(g[g["status"] == "ok"]["test_acc"])[0])
            N.add(f"Lift{word}TrainAcc", _ms(g[g["status"] == "ok"]["train_acc"])[0])
    for name, mask in (("NoTime", (ab["variant"] == "euler") & ~ab["time_input"].astype(bool)),
                       ("RandInit", (ab["variant"] == "euler") & ~ab["zero_init"].astype(bool)),
                       ("ResNetRandInit", (ab["variant"] == "resnet") & ~ab["zero_init"].astype(bool))):
        g = ab[mask]
        N.add(f"{name}TestAcc", _ms(g[g["status"] == "ok"]["test_acc"])[0])
        N.add(f"{name}TrainAcc", _ms(g[g["status"] == "ok"]["train_acc"])[0])
        N.add(f"{name}Diverged", int((g["status"] == "diverged").sum()), "{:d}")
        N.add(f"{name}Seeds", len(g), "{:d}")
    N.add("AblationSeeds", int(base.groupby("lift_dim").size().min()), "{:d}")
