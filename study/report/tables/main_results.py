"""The main-results table (``main_results.tex``) and each variant's numbers: accuracy, failures, NFE, the
isolated and the contended time, activation memory; the late loss spikes of ``main``'s runs."""
from __future__ import annotations

import pandas as pd

from ..numbers import Numbers
from ..reported import ARTICLE
from ..results import MissingRuns, View
from ..stats import reference_scaled, summarise
from ..style import label, ordered
from .common import _macro, _ms, _num, _table


def _isolated_time(v: str, nfe: float, timing: pd.DataFrame, step_s: dict[str, float]) -> float | None:
    """Isolated time of the article's protocol: the step time per NFE times this variant's mean training NFE
    (forward + backward); exact for fixed steps, NFE-weighted for dopri5.  None without a timing record."""
    if v not in step_s:
        return None
    t = timing[timing["variant"] == v].iloc[0]
    step = step_s[v]
    per_nfe = step / t["nfe_per_step"] if pd.notna(t["time_per_nfe_s"]) and t["nfe_per_step"] else None
    return per_nfe * nfe if per_nfe else t["implied_protocol_s"] * step / t["step_time_s"]


def _main_row(v: str, d: pd.DataFrame, timing: pd.DataFrame, step_s: dict[str, float], N: Numbers) -> list[str]:
    """One variant's row of the main-results table (``d``: its runs); adds its macros."""
    ok = d[d["status"] == "ok"]
    m = _macro(v)
    tr_m, tr_s, tr = _ms(ok["train_acc"])
    te_m, te_s, te = _ms(ok["test_acc"])
    N.add(f"{m}TrainAcc", tr_m)
    N.add(f"{m}TrainAccSd", tr_s)
    N.add(f"{m}TestAcc", te_m)
    N.add(f"{m}TestAccSd", te_s)
    N.add(f"{m}Seeds", len(d), "{:d}")
    N.add(f"{m}Diverged", int((d["status"] == "diverged").sum()), "{:d}")
    summary = summarise(d)
    N.add(f"{m}TestAccMedian", summary.median)
    N.add(f"{m}TrainAccMedian", summarise(d, "train_acc").median)
    N.add(f"{m}Params", _num(int(ok["params"].iloc[0])) if len(ok) else None, "{}")
    N.add(f"{m}TestAccCi", summary.half)
    N.add(f"{m}Failed", summary.failed, "{:d}")
    nfe_f, nfe_b = ok["nfe_forward"].mean(), ok["nfe_backward"].mean()
    N.add(f"{m}NfeFwd", _num(nfe_f), "{}")
    N.add(f"{m}NfeBwd", _num(nfe_b), "{}")
    N.add(f"{m}Gap", tr_m - te_m)
    wall = ok["wall_time_s"].mean()
    N.add(f"{m}WallTime", wall, "{:.0f}")
    iso = _isolated_time(v, nfe_f + nfe_b, timing, step_s)
    if v in step_s:
        N.add(f"{m}StepMs", 1e3 * step_s[v], "{:.2f}")
    N.add(f"{m}IsoTime", iso, "{:.0f}")
    act = ok["activation_bytes"].mean()
    N.add(f"{m}ActKiB", act / 1024, "{:,.0f}")
    params = int(ok["params"].iloc[0]) if len(ok) else None
    art = ARTICLE.get(v)
    row = [label(v), _num(params), f"${tr}$", f"${te}$", _num(summary.median, "{:.1f}"),
           f"{summary.failed}/{summary.n}", _num(nfe_f), _num(nfe_b),
           _num(iso, "{:,.0f}"), _num(wall, "{:,.0f}"), _num(act / 1024, "{:,.0f}"),
           f"{100 * art['accuracy']:.1f}" if art else "--", f"{art['time_s']:.1f}" if art else "--"]
    if len(d) and (d["status"] == "diverged").any():
        row[3] += f"$^{{{int((d['status'] == 'diverged').sum())}\\dagger}}$"
    return row


def _spike_numbers(view: View, N: Numbers) -> None:
    """Late loss spikes: runs whose last-epoch loss is above 1.5 times the lowest loss they reached."""
    cur = view.curves("main")
    if not cur.empty:
        per_run = cur.groupby("hash").agg(final=("loss", "last"), best=("loss", "min"), backend=("backend", "first"),
                                          model=("model", "first"), method=("method", "first"))
        continuous_adjoint = per_run["backend"].isin(["torchdiffeq-adjoint", "hand-adjoint"])
        direct = per_run[~continuous_adjoint | (per_run["model"] == "resnet")]  # backprop, checkpointed or not
        spiked = direct[direct["final"] > 1.5 * direct["best"]]
        N.add("SpikedRuns", len(spiked), "{:d}")
        N.add("SpikedRunsTotal", len(direct), "{:d}")


def main_numbers(view: View, N: Numbers) -> str:
    """The main-results table; adds per-variant macros."""
    df = view.runs("main")
    if df.empty:
        raise MissingRuns("main")
    timing = view.runs("timing")
    timing = timing[timing["status"] == "ok"] if not timing.empty else timing
    step_s = isolated_step_seconds(timing)
    for adj, direct, name in (("adjoint-euler", "tdq-euler", "TimeAdjointVsDirectEuler"),
                              ("adjoint-rk4", "tdq-rk4", "TimeAdjointVsDirectRKtte")):  # the same solver, two gradients
        if adj in step_s and direct in step_s:
            N.add(name, step_s[adj] / step_s[direct], "{:.1f}")
    rows = [_main_row(v, df[df["variant"] == v], timing, step_s, N) for v in ordered(df["variant"])]
    _spike_numbers(view, N)
    return _table("lrllrrrrrrrrr", ["variant", "params", "train acc. (\\%)", "test acc. (\\%)", "median", "failed",
                                     "NFE fwd", "NFE bwd", "time (s)", "wall (s)", "act. (KiB)", "art. acc.", "art. time"], rows,
                  "Mean \\pm sd over seeds, median of the held-out accuracy, failed runs (stats.failed); time: "
                  "isolated, implied for 500 epochs; wall: contended.")


def isolated_step_seconds(timing: pd.DataFrame) -> dict[str, float]:
    """Each variant's training step (one seed) on one scale: its ratio to the reference step it alternated with,
    times the reference's median over the experiment.  The jobs run one after the other, so a drifting machine
    moves their absolute times apart while each ratio stays put.  Records without a reference give their own
    median."""
    if timing.empty:
        return {}
    return dict(zip(timing["variant"], reference_scaled(timing)))
