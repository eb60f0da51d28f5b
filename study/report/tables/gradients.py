"""Gradients: the adjoint diagnostics' table (errors against the exact gradient, the flow map, how much
batching moves a seed) and the gradients experiment's numbers."""
from __future__ import annotations

import numpy as np

from ... import variants
from ..numbers import Numbers
from ..results import MissingRuns, View
from ..style import label, ordered
from .common import _macro, _num, _table, method_macro


def gradient_numbers(view: View, N: Numbers) -> None:
    for m, d in view.gradients().groupby("method"):
        key = variants.VARIANTS[m].macro if m in variants.VARIANTS else "X"
        N.add(f"Grad{key}Max", d["rel_err_vs_direct"].max(), "{:.2g}")
        N.add(f"Grad{key}Min", d["rel_err_vs_direct"].min(), "{:.2g}")
        if d["steps"].notna().any():
            g = d.set_index("steps")
            if 20 in g.index:
                N.add(f"Grad{key}Twenty", g.loc[20, "rel_err_vs_direct"], "{:.2g}")


def adjoint_numbers(view: View, N: Numbers) -> str:
    """The adjoint diagnostics at the end of training: gradient errors (medians over seeds and batches)."""
    df = view.adjoint()
    if df.empty:
        raise MissingRuns("adjoint")
    last = df[df["epoch"] == df.groupby("train_variant")["epoch"].transform("max")]
    rows = []
    for tv in ordered(last["train_variant"]):
        d = last[last["train_variant"] == tv]
        g = d[d["what"] == "gradient"]
        m = _macro(tv)

        def med(mask, col):
            v = g[mask][col].to_numpy(dtype=float) if col in g else np.array([])
            v = v[np.isfinite(v)]
            return float(np.median(v)) if len(v) else float("nan")

        cells = []
        for method, steps, tol, dtype in (("euler", 20, None, "float32"), ("euler", 320, None, "float64"),
                                          ("rk4-38", 20, None, "float32"), ("dopri5", None, 1e-3, "float32"),
                                          ("dopri5", None, 1e-10, "float64")):
            mask = (g["method"] == method) & (g["dtype"] == dtype)
            mask &= (g["steps"] == steps) if steps else (g["tol"] == tol)
            a_ex, a_di, d_ex = med(mask, "adjoint_vs_exact"), med(mask, "adjoint_vs_discrete"), med(mask, "discrete_vs_exact")
            word = (method_macro(method)
                    + ({20: "Twenty", 320: "ThreeTwenty"}[steps] if steps else {1e-3: "TolThree", 1e-10: "TolTen"}[tol])
                    + {"float32": "Single", "float64": "Double"}[dtype])
            N.add(f"Adj{m}{word}VsExact", a_ex, "{:.2g}")
            N.add(f"Adj{m}{word}VsDiscrete", a_di, "{:.2g}")
            N.add(f"Adj{m}{word}DiscreteVsExact", d_ex, "{:.2g}")
            cells.append(f"{_num(a_ex, '{:.1e}')} / {_num(d_ex, '{:.1e}')}")
        sv = d[d["what"] == "singular_values"]
        rc = d[(d["what"] == "reconstruction") & (d["method"] == "dopri5") & (d["dtype"] == "float32")]
        svmin = float(np.median(sv["sv_min_median"])) if len(sv) else float("nan")
        rcm = float(np.nanmedian(rc["recon_rel"].to_numpy(float))) if len(rc) else float("nan")
        N.add(f"Adj{m}SvMin", svmin, "{:.2g}")
        N.add(f"Adj{m}Recon", rcm, "{:.2g}")
        N.add(f"Adj{m}Seeds", int(d["seed"].nunique()), "{:d}")
        rows.append([label(tv)] + cells + [_num(svmin, "{:.1e}"), _num(rcm, "{:.1e}")])
    N.add("AdjBatches", int(df["batch"].nunique()), "{:d}")
    # How much batching moves a seed: the adjoint experiment trains Euler seeds alone, main batches them.
    main = view.runs("main")
    if not main.empty:
        batched = main[(main["variant"] == "euler") & (main["status"] == "ok")].set_index("seed")["test_acc"]
        alone = df[(df["train_variant"] == "euler") & (df["status"] == "ok")].groupby("seed")["test_acc"].first()
        common = sorted(set(batched.index) & set(alone.index))
        if common:
            shift = 100 * (alone[common] - batched[common]).abs()
            N.add("BatchShiftMax", float(shift.max()), "{:.2f}")
            N.add("BatchShiftMedian", float(shift.median()), "{:.2f}")
            N.add("BatchShiftSeeds", len(common), "{:d}")
    return _table("l" + "c" * 7, ["trained as", "Euler 20 (f32)", "Euler 320 (f64)", "RK4 3/8 20 (f32)", "dopri5 $10^{-3}$ (f32)",
                                  "dopri5 $10^{-10}$ (f64)", "$\\sigma_{\\min}$", "recon."], rows,
                  "Adjoint vs exact / discretisation vs exact gradient: relative errors, medians over seeds and batches.")
