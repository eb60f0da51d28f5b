"""The digits task's table and numbers: each variant's held-out accuracy (mean and Student-t 95% interval over
seeds, the median beside it) with the controls on the same split: the model without a flow, the ResNet, the
parameter-matched MLP and the logistic regression."""
from __future__ import annotations

import pandas as pd

from ... import tasks, variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from ..stats import summarise
from .common import _macro, _num, _table

MAIN = tasks.experiment("digits", "main")
CONTROLS = tasks.experiment("digits", "controls")


def _row(label: str, m: str, d: pd.DataFrame, N: Numbers) -> list[str]:
    s = summarise(d)
    N.add(m + "Acc", s.mean, "{:.1f}")
    N.add(m + "Half", s.half, "{:.1f}")
    N.add(m + "Median", s.median, "{:.1f}")
    N.add(m + "Seeds", s.n, "{:d}")
    N.add(m + "Failed", s.failed, "{:d}")
    ok = d[d["status"] == "ok"]
    epochs = ok["epochs_completed"].replace(0, float("nan"))
    nfe = float(((ok["nfe_forward"] + ok["nfe_backward"]) / epochs).median()) if len(ok) else None
    wall = float(ok["wall_time_s"].median()) if len(ok) else None
    N.add(m + "Nfe", nfe, "{:.0f}")
    N.add(m + "Wall", wall, "{:.0f}")
    params = int(d["params"].iloc[0])
    N.add(m + "Params", params, "{:,d}")
    return [label, str(s.n), s.mean_text(), f"{s.median:.1f}", str(s.failed), _num(params), _num(nfe), _num(wall)]


def digits_numbers(view: View, N: Numbers) -> str:
    df, controls = view.runs(MAIN), view.runs(CONTROLS)
    if df.empty:
        raise MissingRuns(MAIN)
    if controls.empty:
        raise MissingRuns(CONTROLS)
    rows = [_row(variants.get(v).label, "Dig" + _macro(v), df[df["variant"] == v], N)
            for v in variants.VARIANTS if v in set(df["variant"])]
    rows.append(_row("MLP, the ODE-Net's parameters (control)", "DigMlp", controls, N))
    lr = float(df["logistic_regression"].iloc[0]) * 100
    N.add("DigLogReg", lr, "{:.1f}")
    rows.append(["logistic regression (control)", "1", f"{lr:.1f}", f"{lr:.1f}", "0", "--", "--", "--"])
    first = df.iloc[0]
    for col, name, fmt in (("epochs", "Epochs", "{:d}"), ("batch_size", "BatchSize", "{:d}"),
                           ("n_train", "Train", "{:,d}"), ("n_test", "Test", "{:,d}"), ("lift_dim", "Width", "{:d}"),
                           ("hidden", "Hidden", "{:d}"), ("head_hidden", "MlpHidden", "{:d}")):
        src = controls.iloc[0] if name == "MlpHidden" else first
        N.add("Dig" + name, int(src[col]), fmt)
    N.add("DigLr", float(first["lr"]), "{:g}")
    from ...tasks import digits

    N.add("DigImages", digits.IMAGES, "{:,d}")
    N.add("DigPixels", digits.PIXELS, "{:d}")
    N.add("DigSide", round(digits.PIXELS ** 0.5), "{:d}")
    # every seed is scored on the same held-out images: their own sampling error is not in the seeds' intervals
    p, n_test = lr / 100, int(first["n_test"])
    se = 100 * (p * (1 - p) / n_test) ** 0.5
    N.add("DigSplitSe", se, "{:.1f}")
    flow, none = (df[df["variant"] == v]["test_acc"].mean() * 100 for v in ("euler", "no-flow"))
    N.add("DigFlowMarginSe", (flow - none) / se, "{:.1f}")  # the flow's margin over its control, in the split's SEs
    N.add("DigImagePoints", 100 / n_test, "{:.2f}")
    n = df.groupby("variant").size()
    N.add("DigSeeds", int(n.min()), "{:d}")
    N.add("DigVariants", len(n), "{:d}")
    return _table("l r l r r r r r", ["model", "seeds", "accuracy \\%", "median", "failed", "params", "NFE/epoch",
                                      "wall s"], rows,
                  "Held-out accuracy: mean $\\pm$ Student-t 95% half-width over seeds; the logistic regression is "
                  "deterministic on the fixed split.")
