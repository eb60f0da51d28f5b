"""The article's claims against our measurements: one small object each, its verdict computed from the runs.

A :class:`Claim` has a name, the article's words, the experiments whose
tables its rule reads (:attr:`Claim.needs`), named thresholds and a rule.
The rule reads an :class:`Evidence` (plain pandas tables, so tests can give it
small synthetic ones) and returns what we measured, the verdict and why.
Verdicts: ``holds``, ``partly``, ``does not hold``, ``cannot tell`` (the
last also when the evidence it needs is missing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .. import data
from .reported import ARTICLE
from .results import View

VERDICTS = ("holds", "partly", "does not hold", "cannot tell")
TABLES = ("main", "timing", "steps", "memory", "ablations")


@dataclass
class Evidence:
    """The tables the rules read: experiment name -> ``view.runs(name)``, the gradients rows, the Bayes ceiling (%)."""

    tables: dict[str, pd.DataFrame]
    bayes: float
    gradients: pd.DataFrame = field(default_factory=pd.DataFrame)
    command: Callable[[list[str]], str] = lambda names: f"study run-all --experiments {','.join(names)}"

    @classmethod
    def from_view(cls, view: View, partial: bool = False) -> "Evidence":
        """The view's complete experiments (with ``partial``, those with some runs too)."""
        usable = lambda n: view.complete(n) or (partial and view.progress(n)[0] > 0)  # noqa: E731
        return cls({n: view.runs(n) for n in TABLES if usable(n)}, 100 * data.bayes_accuracy()[0],
                   view.gradients() if usable("gradients") else pd.DataFrame(), view.command)

    def runs(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    def has(self, name: str) -> bool:
        return not (self.gradients if name == "gradients" else self.runs(name)).empty


@dataclass(frozen=True)
class Finding:
    ours: str
    verdict: str
    evidence: str


@dataclass(frozen=True)
class Claim:
    name: str
    article: str  # the article's words, as the table shows them
    needs: tuple[str, ...]  # experiments (or "gradients") whose tables the rule reads
    rule: Callable[["Evidence", dict], Finding]
    thresholds: dict = field(default_factory=dict)

    def judge(self, ev: Evidence) -> Finding:
        missing = [n for n in self.needs if not ev.has(n)]
        if missing:
            return Finding("n/a", "cannot tell", "Needs the " + ", ".join(missing) + " experiment" +
                           ("s" if len(missing) > 1 else "") + f" ({ev.command(missing)})")
        found = self.rule(ev, self.thresholds)
        if found.verdict not in VERDICTS:
            raise ValueError(f"claim {self.name}: verdict {found.verdict!r} is not one of {VERDICTS}")
        return found


# -- helpers --------------------------------------------------------------------------------------

def acc(df: pd.DataFrame, variant: str, key: str = "test_acc") -> np.ndarray:
    """Accuracies (%) of a variant's ok runs."""
    d = df[(df["variant"] == variant) & (df["status"] == "ok")]
    return 100 * d[key].to_numpy(dtype=float)


def welch_p(a, b) -> float:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def pm(v) -> str:
    return f"{np.mean(v):.1f} $\\pm$ {np.std(v, ddof=1):.1f}" if len(v) > 1 else (f"{v[0]:.1f}" if len(v) else "n/a")


# -- the rules ------------------------------------------------------------------------------------

def _accuracies(ev: Evidence, t: dict) -> Finding:
    """Held-out accuracies cannot exceed the Bayes ceiling; if the article's do, compare them with our
    median training accuracies (the median: one seed that failed late must not decide)."""
    main, parts, close = ev.runs("main"), [], []
    above_bayes = all(100 * ARTICLE[v]["accuracy"] > ev.bayes for v in ("euler", "rk4", "resnet"))
    for v in ("euler", "rk4", "resnet"):
        tr, te = acc(main, v, "train_acc"), acc(main, v)
        parts.append(f"{v}: train {pm(tr)} (median {np.median(tr):.1f}), test {pm(te)}")
        close.append(abs(np.median(tr) - 100 * ARTICLE[v]["accuracy"]) < t["close_points"])
    verdict = "partly" if above_bayes and all(close) else ("does not hold" if above_bayes else "holds")
    if above_bayes:
        evidence = ("All three exceed the Bayes-optimal accuracy, so they cannot be held-out accuracies; "
                    + ("they are within 3 points of our median training accuracies." if all(close) else
                       "nor are all three within 3 points of our median training accuracies."))
    else:
        evidence = "Compared with our held-out accuracies."
    return Finding("; ".join(parts) + f" (\\%; Bayes ceiling {ev.bayes:.1f})", verdict, evidence)


def _parameters(ev: Evidence, t: dict) -> Finding:
    main = ev.runs("main")
    params = {v: int(main[(main["variant"] == v) & (main["status"] == "ok")]["params"].iloc[0]) for v in ("euler", "resnet")}
    ok = params["euler"] == ARTICLE["euler"]["params"] and params["resnet"] == ARTICLE["resnet"]["params"]
    ours = f"{params['euler']:,} and {params['resnet']:,} ({params['resnet'] / params['euler']:.1f}$\\times$)"
    return Finding(ours.replace(",", "{,}"), "holds" if ok else "does not hold", "Counted from the models.")


def _rk4_cost(ev: Evidence, t: dict) -> Finding:
    main, timing = ev.runs("main"), ev.runs("timing")
    nfe = {v: main[(main["variant"] == v) & (main["status"] == "ok")]["nfe_forward"].mean() for v in ("euler", "rk4")}
    timing = timing[timing["status"] == "ok"] if not timing.empty else timing
    tratio = None
    if not timing.empty and {"euler", "rk4"} <= set(timing["variant"]):
        tm = timing.set_index("variant")["step_time_s"]
        tratio = tm["rk4"] / tm["euler"]
    nratio = nfe["rk4"] / nfe["euler"]
    lo, hi = t["time_ratio"]
    verdict = "cannot tell" if tratio is None else (
        "holds" if abs(nratio - t["nfe_ratio"]) < 1e-9 and lo <= tratio <= hi else "partly")
    ours = (f"NFE {nfe['euler']:,.0f} vs {nfe['rk4']:,.0f} ({nratio:.2f}$\\times$); time {tratio:.2f}$\\times$ "
            "(isolated step)").replace(",", "{,}") if tratio else f"NFE ratio {nratio:.2f}"
    return Finding(ours, verdict, "NFE counted per call; time: median training step, measured alone, one thread.")


def _euler_per_flop(ev: Evidence, t: dict) -> Finding:
    """Per FLOP: RK4 costs 4x the NFE, so it must be clearly more accurate to be worth it.  At equal NFE:
    medians over seeds (late loss spikes make single seeds fail; the median ignores them)."""
    main, steps = ev.runs("main"), ev.runs("steps")
    eu, rk = acc(main, "euler"), acc(main, "rk4")
    p = welch_p(eu, rk)
    per_flop = np.mean(rk) - np.mean(eu) < t["per_flop_points"]  # RK4's fourfold NFE buys less than this
    text = f"main test: Euler {pm(eu)}, RK4 {pm(rk)} (Welch p = {p:.2f}) at 4$\\times$ fewer NFE"
    diffs: list[float] = []

    def at(v, n):
        return 100 * steps[(steps["variant"] == v) & (steps["steps"] == n) & (steps["status"] == "ok")]["test_acc"].to_numpy(float)

    for ne, nr in t["equal_nfe_pairs"]:
        a, b = at("euler", ne), at("rk4", nr)
        if len(a) and len(b):
            diffs.append(np.median(a) - np.median(b))
            text += f"; equal NFE, medians: Euler {ne} {np.median(a):.1f} vs RK4 {nr} {np.median(b):.1f}"
    margin = t["beats_points"]
    beats = bool(diffs) and all(d > margin for d in diffs)
    verdict = "holds" if per_flop and beats else ("partly" if per_flop or beats else "does not hold")
    evidence = (f"Per FLOP Euler wins: RK4's extra evaluations buy no accuracy. At equal NFE Euler is ahead "
                f"by more than a point in {sum(d > margin for d in diffs)} of {len(diffs)} pairings and behind in "
                f"{sum(d < -margin for d in diffs)}: no consistent winner." if per_flop and diffs
                else "Held-out accuracy, seeds as in the sweeps.")
    return Finding(text, verdict, evidence)


def _memory_pivot(ev: Evidence, values: str = "activation_bytes") -> pd.DataFrame:
    return ev.runs("memory").pivot_table(index="steps", columns="solver", values=values)


def _memory(ev: Evidence, t: dict) -> Finding:
    piv = _memory_pivot(ev)
    r_rk, r_res = piv.loc[20, "hand-rk4"] / piv.loc[20, "hand-euler"], piv.loc[20, "resnet"] / piv.loc[20, "hand-euler"]
    rk_off = abs(r_rk - t["rk4_ratio"]) > t["rk4_tolerance"]
    res_not_lower = r_res >= t["resnet_not_lower"]
    verdict = "does not hold" if rk_off and res_not_lower else ("partly" if res_not_lower or rk_off else "holds")
    return Finding(f"RK4/Euler {r_rk:.2f}$\\times$; ResNet/Euler {r_res:.2f}$\\times$ (20 steps, saved tensors)", verdict,
                   "Exact saved-tensor bytes: every RK4 stage saves what an Euler step saves; a ResNet block saves what an Euler step saves.")


def _adjoint(ev: Evidence, t: dict) -> Finding:
    piv, tp = _memory_pivot(ev), _memory_pivot(ev, "step_time_s")
    lo, hi = piv.index.min(), piv.index.max()
    g_dir, g_adj = piv.loc[hi, "hand-euler"] / piv.loc[lo, "hand-euler"], piv.loc[hi, "adjoint-euler"] / piv.loc[lo, "adjoint-euler"]
    tr = tp.loc[20, "adjoint-euler"] / tp.loc[20, "tdq-euler"]
    gtext = ""
    if not ev.gradients.empty:
        g = ev.gradients[ev.gradients["method"] == "adjoint-euler"].set_index("steps")["rel_err_vs_direct"]
        gtext = f"; gradient error vs direct {g.min():.0e}--{g.max():.0e} (Euler)"
    constant = g_adj < t["adjoint_growth_max"]
    linear = g_dir > (hi / lo) * t["direct_growth_min_fraction"]
    return Finding(f"N = {lo}$\\to${hi}: direct $\\times${g_dir:.1f}, adjoint $\\times${g_adj:.2f}; step time {tr:.1f}$\\times$ direct{gtext}",
                   "holds" if constant and linear else "partly",
                   "Memory and time from the memory experiment; gradients from the gradients experiment.")


def _lift_base(ev: Evidence) -> pd.DataFrame:
    ab = ev.runs("ablations")
    return ab[(ab["variant"] == "euler") & ab["time_input"].astype(bool) & ab["zero_init"].astype(bool) & (ab["status"] == "ok")]


def _lifting(ev: Evidence, t: dict) -> Finding:
    """"Cannot separate" is refuted by one 2-D run that does nearly as well as the lifted model."""
    base = _lift_base(ev)
    l2 = 100 * base[base["lift_dim"] == 2]["test_acc"].to_numpy(float)
    l6 = 100 * base[base["lift_dim"] == 6]["test_acc"].to_numpy(float)
    t2 = 100 * base[base["lift_dim"] == 2]["train_acc"].to_numpy(float)
    gap = np.mean(l6) - np.mean(l2) if len(l2) and len(l6) else float("nan")
    separates = bool(len(l2)) and len(l6) and l2.max() >= np.mean(l6) - t["separates_within_points"]
    verdict = ("cannot tell" if not np.isfinite(gap) else "does not hold" if separates and gap <= t["no_gap_points"]
               else "partly" if separates else "holds" if gap > t["essential_gap_points"] else "partly")
    best = f"{l2.max():.1f}" if len(l2) else "n/a"
    return Finding(f"d = 2: test {pm(l2)}, best seed {best} (train {pm(t2)}); d = 6: test {pm(l6)}", verdict,
                   "A planar flow can separate them (the spirals are not nested sets, so the topological "
                   "argument for concentric circles does not apply), but without a lift training often fails to find it."
                   if separates else "Without a lift held-out accuracy falls well below the lifted model's.")


def _zero_init(ev: Evidence, t: dict) -> Finding:
    ab, base = ev.runs("ablations"), _lift_base(ev)
    l6 = 100 * base[base["lift_dim"] == 6]["test_acc"].to_numpy(float)
    ri = ab[(ab["variant"] == "euler") & ~ab["zero_init"].astype(bool) & ab["status"].isin(["ok", "diverged"])]
    div = int((ri["status"] == "diverged").sum())
    ri_acc = 100 * ri[ri["status"] == "ok"]["test_acc"].to_numpy(float)
    gap = np.mean(l6) - np.mean(ri_acc) if len(ri_acc) and len(l6) else float("nan")
    verdict = ("cannot tell" if ri.empty or not len(l6) else
               "holds" if div > 0 or gap > t["matters_points"] else ("partly" if gap > t["some_points"] else "does not hold"))
    return Finding(f"random init: {div}/{len(ri)} diverged, test {pm(ri_acc)} vs {pm(l6)} with zero init", verdict,
                   "Same protocol and seeds, last layer of the dynamics drawn like every other layer.")


def _resnet_is_euler(ev: Evidence, t: dict) -> Finding:
    return Finding("bit-for-bit equal outputs for a residual stack whose blocks share one network fed $t_i$", "holds",
                   "Checked by the test suite (\\texttt{tests/unit/test\\_models.py}); with independent blocks it is Euler on a depth-dependent field.")


def _resnet_advantage(ev: Evidence, t: dict) -> Finding:
    main = ev.runs("main")
    res_tr, res_te = acc(main, "resnet", "train_acc"), acc(main, "resnet")
    eu_tr, eu = acc(main, "euler", "train_acc"), acc(main, "euler")
    p = welch_p(res_te, eu)
    verdict = "does not hold" if np.mean(res_te) < np.mean(eu) else ("holds" if p < t["alpha"] else "cannot tell")
    return Finding(f"train: ResNet {pm(res_tr)} vs Euler {pm(eu_tr)}; test: ResNet {pm(res_te)} vs Euler {pm(eu)} (p = {p:.2g})",
                   verdict, "Higher training but not held-out accuracy: the extra capacity fits noise."
                   if verdict == "does not hold" else "Held-out accuracies over seeds.")


CLAIMS: list[Claim] = [
    Claim("accuracies", "Accuracy 89.4\\% (Euler), 90.9\\% (RK4), 92.9\\% (ResNet)", ("main",), _accuracies,
          {"close_points": 3.0}),
    Claim("parameters", "18,906 against 364,236 parameters (19.3$\\times$)", ("main",), _parameters),
    Claim("rk4-cost", "RK4 costs 4$\\times$ the NFE and 3.9$\\times$ the time of Euler", ("main",), _rk4_cost,
          {"nfe_ratio": 4.0, "time_ratio": (3.5, 4.5)}),
    Claim("euler-per-flop", "Euler gives better accuracy per FLOP; Euler with more steps beats RK4 with fewer",
          ("main", "steps"), _euler_per_flop,
          {"per_flop_points": 1.0, "beats_points": 1.0, "equal_nfe_pairs": ((80, 20), (20, 5), (40, 10))}),
    Claim("memory", "RK4 needs 2.6$\\times$ Euler's memory; the ResNet's activation memory is lower than the ODE's",
          ("memory",), _memory, {"rk4_ratio": 2.6, "rk4_tolerance": 0.5, "resnet_not_lower": 0.99}),
    Claim("adjoint", "The adjoint cuts activation memory from O(N) to O(1) at the cost of recomputation", ("memory",),
          _adjoint, {"adjoint_growth_max": 1.01, "direct_growth_min_fraction": 0.8}),
    Claim("lifting", "Lifting is essential: a 2-D ODE cannot separate the spirals", ("ablations",), _lifting,
          {"separates_within_points": 1.5, "no_gap_points": 1.0, "essential_gap_points": 5.0}),
    Claim("zero-init", "Zero initialisation matters; without it the solver blows up", ("ablations",), _zero_init,
          {"matters_points": 3.0, "some_points": 1.0}),
    Claim("resnet-is-euler", "The ResNet is exactly an Euler discretisation", (), _resnet_is_euler),
    Claim("resnet-advantage", "The ResNet's 2-point advantage over the best Neural ODE", ("main",), _resnet_advantage,
          {"alpha": 0.05}),
]


def judge_all(view: View, partial: bool = False) -> list[tuple[Claim, Finding]]:
    """Every claim with its finding; ``MissingRuns`` when ``main`` lacks the article's three models."""
    main = view.runs("main")
    if main.empty or not {"euler", "rk4", "resnet"} <= set(main[main["status"] == "ok"]["variant"]):
        raise view.missing("main")
    ev = Evidence.from_view(view, partial)
    return [(c, c.judge(ev)) for c in CLAIMS]


def table(judged: list[tuple[Claim, Finding]]) -> str:
    """The claims table (LaTeX tabularx)."""
    out = ["% Generated by `study tables` from the run store (study/report/claims.py holds the verdict rules).",
           "\\begin{tabularx}{\\textwidth}{@{}>{\\raggedright\\arraybackslash}p{3.6cm}>{\\raggedright\\arraybackslash}X>{\\raggedright\\arraybackslash}p{1.5cm}@{}}",
           "\\toprule", "claim of the article & our measurement & verdict \\\\", "\\midrule"]
    for i, (c, f) in enumerate(judged, 1):
        out.append(f"{i}. {c.article} & {f.ours}. {f.evidence} & \\textbf{{{f.verdict}}} \\\\")
    out += ["\\bottomrule", "\\end{tabularx}"]
    return "\n".join(out) + "\n"
