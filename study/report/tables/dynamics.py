"""The dynamics task's tables and numbers: its variant matrix (medians and quartiles over seeds)."""
from __future__ import annotations

import pandas as pd

from ... import variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _macro, _median_iqr, _num, _table


def _dynamics_row(v: str, d: pd.DataFrame, N: Numbers) -> list[str]:
    ok = d[d["status"] == "ok"]
    m = "Dyn" + _macro(v)
    cells = [variants.get(v).label, str(len(d))]
    for col, name in (("traj_err", "Traj"), ("traj_err_own", "Own"), ("extrap_err", "Extrap"), ("field_err", "Field")):
        med, text = _median_iqr(ok[col], "{:.3f}" if col != "field_err" else "{:.3f}")
        N.add(m + name, med, "{:.3f}")
        cells.append(text)
    nfe = float(((ok["nfe_forward"] + ok["nfe_backward"]) / ok["iterations_completed"]).median()) if len(ok) else None
    N.add(m + "Nfe", nfe, "{:.0f}")
    N.add(m + "Seeds", len(d), "{:d}")
    N.add(m + "Failed", int((d["status"] != "ok").sum()), "{:d}")
    wall = float(ok["wall_time_s"].median()) if len(ok) else None
    return cells + [_num(nfe), _num(wall, "{:.0f}"), str(int((d["status"] != "ok").sum()))]


def dynamics_numbers(view: View, N: Numbers) -> str:
    """The dynamics task's variant matrix (medians over seeds with their interquartile range)."""
    df = view.runs("dynamics/main")
    if df.empty:
        raise MissingRuns("dynamics/main")
    rows = [_dynamics_row(v, df[df["variant"] == v], N) for v in variants.VARIANTS if v in set(df["variant"])]
    n = df.groupby("variant").size()
    N.add("DynSeeds", int(n.min()), "{:d}")
    N.add("DynVariants", len(n), "{:d}")
    first = df.iloc[0]
    for col, name, fmt in (("iterations", "Iterations", "{:d}"), ("batch_time", "BatchTime", "{:d}"),
                           ("batch_size", "BatchSize", "{:d}"), ("n_points", "Points", "{:d}"),
                           ("field_hidden", "Hidden", "{:d}"), ("t_end", "TEnd", "{:g}"),
                           ("t_extrapolate", "TExtra", "{:g}"), ("lr", "Lr", "{:g}")):
        N.add("Dyn" + name, int(first[col]) if fmt == "{:d}" else float(first[col]), fmt)
    N.add("DynParams", int(first["params"]), "{:d}")
    _ratio(N, "DynEulerOverRKfour", N.items.get("DynEulerTraj"), N.items.get("DynRKfourTraj"))
    return _table("l r l l l l r r r", ["variant", "seeds", "trajectory error", "own solver", "extrapolation",
                                        "field error", "NFE/it", "wall s", "failed"], rows,
                  "Medians [quartiles] over seeds; errors are RMS distances (field: relative RMS).")


def _ratio(N: Numbers, name: str, a, b) -> None:
    try:
        N.add(name, float(a) / float(b), "{:.1f}")
    except (TypeError, ValueError, ZeroDivisionError):
        N.add(name, None)
