"""The density task's tables and numbers: its variant matrix (medians and quartiles over seeds) against the data's
entropy."""
from __future__ import annotations

import pandas as pd

from ... import tasks, variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _macro, _median_iqr, _num, _table

MAIN = tasks.experiment("density", "main")
BROKEN_GAP = 1.0  # nats above the entropy: a run that finished but whose flow does not fit the data
COLUMNS = (("nll", "Nll", "{:.3f}"), ("nll_own", "Own", "{:.3f}"), ("nll_bias", "Bias", "{:+.3f}"),
           ("gap", "Gap", "{:.3f}"), ("mass", "Mass", "{:.3f}"), ("mass_own", "MassOwn", "{:.3f}"))


def _density_row(v: str, d: pd.DataFrame, N: Numbers) -> list[str]:
    ok = d[d["status"] == "ok"].copy()
    ok["gap"] = ok["nll"] - _floor(ok)[0] if len(ok) else ok["gap"]  # paired: the same held-out points
    m = "Den" + _macro(v)
    cells = [variants.get(v).label, str(len(d))]
    for col, name, fmt in COLUMNS:
        med, text = _median_iqr(ok[col], fmt)
        N.add(m + name, med, fmt)
        cells.append(text)
    nfe = float(((ok["nfe_forward"] + ok["nfe_backward"]) / ok["iterations_completed"]).median()) if len(ok) else None
    failed = int((d["status"] != "ok").sum())
    wall = float(ok["wall_time_s"].median()) if len(ok) else None
    N.add(m + "Nfe", nfe, "{:.0f}")
    N.add(m + "Wall", wall, "{:.0f}")
    N.add(m + "Seeds", len(d), "{:d}")
    N.add(m + "Failed", failed, "{:d}")
    N.add(m + "Broken", int((ok["gap"] > BROKEN_GAP).sum()), "{:d}")  # trained, but far from the data
    return cells + [_num(nfe), _num(wall, "{:.0f}"), str(failed)]


def _floor(df: pd.DataFrame) -> tuple[float, float]:
    """The held-out points' own floor (``-mean log p`` under the data's density) of the runs' protocol."""
    from ...tasks import density

    return density.floor(density.Protocol.from_dict(df.iloc[0].to_dict()))


def _protocol(df: pd.DataFrame, N: Numbers) -> None:
    first = df.iloc[0]
    for col, name, fmt in (("iterations", "Iterations", "{:,d}"), ("batch_size", "BatchSize", "{:d}"),
                           ("hidden", "Hidden", "{:d}"), ("n_train", "Train", "{:,d}"), ("n_val", "Val", "{:,d}"),
                           ("n_test", "Test", "{:,d}"), ("grid", "Grid", "{:d}"), ("t_end", "TEnd", "{:g}"),
                           ("lr", "Lr", "{:g}")):
        N.add("Den" + name, int(first[col]) if "d}" in fmt else float(first[col]), fmt)
    N.add("DenParams", int(first["params"]), "{:,d}")
    N.add("DenDensity", str(first["density"]))
    N.add("DenEntropy", float(first["entropy"]), "{:.3f}")
    N.add("DenEntropySe", float(first["entropy_se"]), "{:.3f}")
    N.add("DenBrokenGap", BROKEN_GAP, "{:g}")
    fl = _floor(df)
    N.add("DenFloor", fl[0], "{:.3f}")
    N.add("DenFloorSe", fl[1], "{:.3f}")


def density_numbers(view: View, N: Numbers) -> str:
    """The density task's variant matrix (medians over seeds with their interquartile range)."""
    df = view.runs(MAIN)
    if df.empty:
        raise MissingRuns(MAIN)
    rows = [_density_row(v, df[df["variant"] == v], N) for v in variants.VARIANTS if v in set(df["variant"])]
    n = df.groupby("variant").size()
    N.add("DenSeeds", int(n.min()), "{:d}")
    N.add("DenVariants", len(n), "{:d}")
    N.add("DenFailed", int((df["status"] != "ok").sum()), "{:d}")
    _protocol(df, N)
    return _table("l r l l l l l l r r r", ["variant", "seeds", "NLL", "own solver", "bias", "gap", "mass",
                                            "mass, own", "NFE/it", "wall s", "failed"], rows,
                  "Medians [quartiles] over seeds; NLL in nats per point; gap: NLL minus the same held-out points' "
                  "-mean log p under the data's density.")
