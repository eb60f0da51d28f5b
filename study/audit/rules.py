"""The audit's verdicts, each by a stated rule printed beside it (no torch: they read the records).

* **method**: the cell with the best median held-out metric (under its training solver) over its seeds; the
  cheapest cell (median training time per iteration) whose median lies within the best cell's interval (the range
  of its seeds, widened by 5 % of its median so that one seed still has one) and whose trained models are ODEs on
  every seed (the cheapest within the interval where none is);
* **gradient**: a gradient method to avoid has a relative gradient error above 1e-2 on some trained model where
  backpropagation's is below 1e-3 (the seeds listed), or trains more than twice as slowly as backpropagation
  through the same solve;
* **ODE**: a trained model is an ODE when its held-out metric under a float64 reference solve is within 10 % of its
  metric under its training solver, on every seed; otherwise it learned its solver's errors;
* **stiffness**: a warning where ``rho h``, the field Jacobian's spectral radius along the trajectory times the
  step, exceeds the method's stability limit at the end of training on some seed, or where an adaptive solve's
  evaluations per iteration grew by more than half over training.
"""
from __future__ import annotations

import math
import statistics

WIDEN = 0.05
GRADIENT_ERROR = 1e-2
COST_FACTOR = 2.0
ODE_GAP = 0.10
NFE_GROWTH = 1.5


def _median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def summarise(df, higher: bool) -> list[dict]:
    """One row per cell: its seeds' metric, cost and checks (``df``: one row per trained model)."""
    rows = []
    for label, g in df.groupby("cell", sort=False):
        ok = g[g.status == "ok"]
        rows.append({"cell": label, "method": g.method.iloc[0], "gradient": g.gradient.iloc[0], "solver": g.solver.iloc[0],
                     "implementation": g.implementation.iloc[0], "seeds": len(g), "ok": len(ok),
                     "metric": list(ok.primary_own), "median": _median(list(ok.primary_own)),
                     "time": _median(list(ok.time_per_iteration_s)), "nfe": _median(list(ok.nfe_per_iteration)),
                     "ode_gap": list(ok.ode_gap), "rho_h": list(ok.rho_h), "limit": g.limit.iloc[0],
                     "nfe_trend": list(ok.nfe_trend),
                     "field_err": [x for x in ok.field_err if x is not None and x == x] if "field_err" in ok else []})
    return rows


def recommend(cells: list[dict], higher: bool) -> dict:
    """The method verdict (see the module docstring)."""
    rule = ("best: the cell with the best median held-out metric over its seeds (ties: the faster); recommended: the cheapest cell "
            f"(median time per iteration) whose median lies within the best cell's seed range widened by {WIDEN:.0%} "
            f"and whose trained models are ODEs on every seed (metric within {ODE_GAP:.0%} under the reference; the "
            "cheapest within the range when none is)")
    usable = [c for c in cells if c["ok"] == c["seeds"] and c["median"] is not None]
    if not usable:
        return {"rule": rule, "verdict": "no cell trained on every seed", "best": None, "recommended": None}
    sign = -1 if higher else 1
    best = min(usable, key=lambda c: (sign * c["median"], c["time"] if c["time"] is not None else math.inf))
    pad = WIDEN * abs(best["median"])
    lo, hi = min(best["metric"]) - pad, max(best["metric"]) + pad
    within = [c for c in usable if lo <= c["median"] <= hi and c["time"] is not None]
    odes = [c for c in within if c["ode_gap"] and all(g is not None and g <= ODE_GAP for g in c["ode_gap"])]
    pick = min(odes or within, key=lambda c: c["time"]) if within else best
    saving = best["time"] / pick["time"] if pick["time"] and best["time"] else None
    verdict = (f"{pick['cell']}: metric {pick['median']:.4g} (best {best['cell']}: {best['median']:.4g}, seeds "
               f"{', '.join(f'{v:.4g}' for v in best['metric'])}), {pick['time'] * 1e3:.3g} ms an iteration"
               + (f", {saving:.2g}x faster than the best" if saving and pick is not best else ""))
    return {"rule": rule, "verdict": verdict, "best": best["cell"], "recommended": pick["cell"],
            "within": [c["cell"] for c in within]}


GRADIENT_RULE = (f"avoid a gradient method whose relative gradient error exceeds {GRADIENT_ERROR:g} on some trained "
                 f"model at a dopri5 tolerance where backpropagation's own error is below {GRADIENT_ERROR / 10:g} "
                 "(errors against the float64 reference's gradient), or whose training costs more than "
                 f"{COST_FACTOR:g}x backpropagation through the same solve (median time per iteration)")


def _cost_ratios(cells: list[dict], impl: str, grad: str) -> list[tuple[str, float]]:
    """Each of this gradient method's cells: its training time per iteration over that of backpropagation through
    the same implementation, method and grid."""
    direct = {(c["implementation"], c["solver"]): c["time"] for c in cells if c["gradient"] == "direct"}
    out = []
    for c in cells:
        if (c["implementation"], c["gradient"]) == (impl, grad) and c["time"]:
            d = direct.get((impl, c["solver"]))
            if d:
                out.append((c["cell"], c["time"] / d))
    return out


def gradients(wp_rows: list[dict], cells: list[dict]) -> list[dict]:
    """Per gradient method (``implementation gradient``): its errors on every trained model at each dopri5
    tolerance, its training cost against backpropagation's, and the verdict (:data:`GRADIENT_RULE`).  ``wp_rows``:
    the work-precision gradient rows, each with its ``model`` (cell) and ``seed``."""
    rows = [r for r in wp_rows if "tol" in r]
    direct = {(r["model"], r["seed"], r["tol"]): r["error"] for r in rows
              if (r["implementation"], r["gradient"]) == ("hand", "direct")}
    out = []
    for impl, grad in sorted({(r["implementation"], r["gradient"]) for r in rows}):
        mine = [r for r in rows if (r["implementation"], r["gradient"]) == (impl, grad)]
        errs = [r["error"] for r in mine if r["error"] is not None]
        bad = [r for r in mine if r["error"] is not None and r["error"] > GRADIENT_ERROR
               and (direct.get((r["model"], r["seed"], r["tol"])) or 1.0) < GRADIENT_ERROR / 10]
        ratios = _cost_ratios(cells, impl, grad)
        slow = max(ratios, key=lambda x: x[1]) if ratios else None
        if bad:
            worst = max(bad, key=lambda r: r["error"])
            seeds = sorted({r["seed"] for r in bad})
            verdict = (f"avoid: relative gradient error up to {worst['error']:.2g} at tolerance {worst['tol']:g} where "
                       f"backpropagation's is {direct.get((worst['model'], worst['seed'], worst['tol'])):.2g} "
                       f"(seeds {', '.join(map(str, seeds))})")
        elif slow is not None and slow[1] > COST_FACTOR:
            verdict = f"avoid: trains {slow[1]:.2g}x slower than backpropagation through the same solve ({slow[0]})"
        elif not errs:
            verdict = "not measured (every solve failed)"
        else:
            cost = f", at most {max(r for _, r in ratios):.2g}x backpropagation's time" if ratios else ""
            verdict = f"fine: error at most {max(errs):.2g}{cost}"
        by_tol = {}
        for r in mine:
            if r["error"] is not None:
                by_tol.setdefault(r["tol"], []).append(r["error"])
        out.append({"method": f"{impl} {grad}", "errors": errs, "worst": max(errs) if errs else None,
                    "by_tol": {t: (min(v), max(v), len(v)) for t, v in sorted(by_tol.items(), reverse=True)},
                    "verdict": verdict})
    return out


def is_ode(cells: list[dict], name: str | None) -> dict:
    """The ODE verdict for cell ``name`` (the recommended one)."""
    rule = (f"an ODE when the held-out metric under a float64 reference solve is within {ODE_GAP:.0%} of the metric "
            "under the training solver, on every seed")
    c = next((c for c in cells if c["cell"] == name), None)
    gaps = [g for g in (c["ode_gap"] if c else []) if g is not None]
    if not gaps:
        return {"rule": rule, "verdict": "not measured"}
    shown = ", ".join(f"{g:.2g}" for g in gaps)
    if all(g <= ODE_GAP for g in gaps):
        return {"rule": rule, "verdict": f"an ODE: relative change under the reference {shown} (per seed)"}
    return {"rule": rule, "verdict": f"its solver's model, not an ODE: relative change under the reference {shown} "
                                     "(per seed); train with a finer solver or check it with the reference"}


def stiffness(cells: list[dict]) -> dict:
    rule = (f"warn where rho h exceeds the method's stability limit on some seed at the end of training, or where "
            f"an adaptive solve's evaluations per iteration grew by more than {NFE_GROWTH - 1:.0%}")
    beyond = [(c["cell"], max(x for x in c["rho_h"] if x is not None), c["limit"]) for c in cells
              if any(x is not None and x > c["limit"] for x in c["rho_h"])]
    grew = [(c["cell"], max(x for x in c["nfe_trend"] if x is not None)) for c in cells
            if any(x is not None and x > NFE_GROWTH for x in c["nfe_trend"])]
    if not beyond and not grew:
        return {"rule": rule, "verdict": "no warning: every step is inside its method's stability limit", "warn": False}
    parts = [f"{name}: rho h {v:.3g} > {lim:g}" for name, v, lim in beyond[:4]]
    parts += [f"{name}: evaluations per iteration x{v:.2g} over training" for name, v in grew[:4]]
    return {"rule": rule, "warn": True,
            "verdict": "stiff: " + "; ".join(parts) + ". Remedies to try: smaller steps (h below limit / rho), an "
                       "adaptive solver, RNODE's kinetic and Jacobian penalties; an implicit solver where rho h is "
                       "far beyond the limit"}
