"""The article's claims against our measurements: one small object each, its verdict computed from the runs.

A :class:`Claim` has a name, the article's words, the experiments whose
tables its rule reads (:attr:`Claim.needs`), named thresholds and a rule.
The rule reads an :class:`Evidence` (plain pandas tables, so tests can give it
small synthetic ones) and returns what we measured, the verdict and why.
Verdicts: ``holds``, ``partly``, ``does not hold``, ``cannot tell`` (the
last also when the evidence it needs is missing).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..config import Protocol
from .claim_rules import (_accuracies, _adjoint, _euler_per_flop, _invertible, _lifting, _memory, _parameters,
                          _resnet_advantage, _resnet_is_euler, _resnet_within, _rk4_cost, _rk4_gain, _rk4_low_steps,
                          _separable, _zero_init)
from .claims_base import (NO_TRAINING, TABLES, VERDICTS, Claim, Evidence, Finding, acc, pm,  # noqa: F401 - re-exported
                          welch_p)
from .results import View



CLAIMS: list[Claim] = [
    Claim("accuracies", "Accuracy 89.4\\% (Euler), 90.9\\% (RK4), 92.9\\% (ResNet)", ("main",), _accuracies,
          {"close_points": 1.5}),
    Claim("parameters", "18,906 against 364,236 parameters (19.3$\\times$)", ("main",), _parameters),
    Claim("rk4-cost", "RK4 costs 4$\\times$ the NFE and 3.9$\\times$ the time of Euler", ("main",), _rk4_cost,
          {"nfe_ratio": 4.0, "time_ratio": (3.5, 4.5)}),
    Claim("euler-per-flop", "Euler gives better accuracy per FLOP; Euler with more steps beats RK4 with fewer",
          ("main", "steps"), _euler_per_flop,
          {"per_flop_points": 1.0, "beats_points": 1.0, "equal_nfe_pairs": ((80, 20), (20, 5), (40, 10))}),
    Claim("memory", "RK4 needs 2.6$\\times$ Euler's memory; the ResNet's activation memory is lower than the ODE's",
          ("memory",), _memory, {"rk4_ratio": 2.6, "rk4_tolerance": 0.5, "resnet_not_lower": 0.99}),
    Claim("adjoint", "The adjoint cuts activation memory from O(N) to O(1) at the cost of recomputation", ("memory",),
          _adjoint, {"adjoint_growth_max": 1.01, "direct_growth_min_fraction": 0.8, "gradient_error_max": 0.05}),
    Claim("lifting", "Lifting is essential: a 2-D ODE cannot separate the spirals", ("ablations",), _lifting,
          {"separates_within_points": 1.5, "no_gap_points": 1.0, "essential_gap_points": 5.0}),
    Claim("zero-init", "Zero initialisation matters; without it the solver blows up", ("ablations",), _zero_init,
          {"matters_points": 3.0, "some_points": 1.0}),
    Claim("resnet-is-euler", "The ResNet is exactly an Euler discretisation", (), _resnet_is_euler),
    Claim("resnet-advantage", "The ResNet's 2-point advantage over the best Neural ODE", ("main",), _resnet_advantage,
          {"alpha": 0.05}),
    Claim("rk4-gain", "RK4 gains 1.5 points over Euler (90.9\\% against 89.4\\%)", ("main",), _rk4_gain,
          {"gain_points": 1.5, "alpha": 0.05}),
    Claim("rk4-low-steps", "RK4's advantage shows at low step counts", ("steps",), _rk4_low_steps,
          {"ahead_points": 1.0}),
    Claim("separable", "The flow untangles the data into a linearly separable configuration", ("controls",),
          _separable, {"separable_within_points": 1.0, "untangle_points": 10.0}),
    Claim("resnet-within", "The Neural ODE lands within 3 points of the ResNet", ("main",), _resnet_within,
          {"within_points": 3.0}),
    Claim("invertible", "The Neural ODE is invertible (part of the trade for its small accuracy gap)", ("adjoint",),
          _invertible, {"recon_max": 1e-2}),
]


@dataclass(frozen=True)
class Judged:
    """A claim's finding under the article's protocol and its verdict at the stable learning rate."""

    claim: Claim
    finding: Finding
    stable: Finding | None  # None: no stable learning rate (the arm is missing or every rate failed)
    stable_lr: float | None

    @property
    def verdict(self) -> str:
        return self.finding.verdict


def judge_all(view: View, partial: bool = False) -> list[Judged]:
    """Every claim with its finding, and again at the stable learning rate of the learning-rate arm;
    ``MissingRuns`` when ``main`` lacks the article's three models."""
    main = view.runs("main")
    if main.empty or not {"euler", "rk4", "resnet"} <= set(main[main["status"] == "ok"]["variant"]):
        raise view.missing("main")
    ev = Evidence.from_view(view, partial)
    lr = stable_learning_rate(ev.runs("learning-rate"))
    stable = ev.at_learning_rate(lr) if lr is not None and lr != Protocol().lr else None
    return [Judged(c, c.judge(ev), c.judge(stable) if stable is not None else None, lr) for c in CLAIMS]


def stable_learning_rate(arm: pd.DataFrame) -> float | None:
    """The largest rate of the learning-rate arm at which no fixed-step variant failed (stats.failed's rule)."""
    from .stats import failed

    if arm.empty:
        return None
    fixed = arm[(arm["method"] != "dopri5") & arm["status"].isin(["ok", "diverged"])]
    for lr in sorted(fixed["lr"].unique(), reverse=True):
        cell = fixed[fixed["lr"] == lr]
        if len(cell) and not failed(cell).any():
            return float(lr)
    return None


def table(judged: list[Judged]) -> str:
    """The claims table (LaTeX tabularx): our measurement under the article's protocol, its verdict, and
    the verdict at the stable learning rate."""
    lr = next((j.stable_lr for j in judged if j.stable is not None), None)
    head = f"at lr {lr:g}" if lr is not None else "at a stable lr"
    out = ["% Generated by `study tables` from the run store (study/report/claims.py holds the verdict rules).",
           "\\begin{tabularx}{\\textwidth}{@{}>{\\raggedright\\arraybackslash}p{3.3cm}>{\\raggedright\\arraybackslash}X"
           ">{\\raggedright\\arraybackslash}p{1.35cm}>{\\raggedright\\arraybackslash}p{1.35cm}@{}}",
           "\\toprule", f"claim of the article & our measurement (lr {Protocol().lr:g}, the article's protocol) & verdict & {head} \\\\",
           "\\midrule"]
    for i, j in enumerate(judged, 1):
        s = j.stable.verdict if j.stable is not None else "--"
        out.append(f"{i}. {j.claim.article} & {j.finding.ours}. {j.finding.evidence} & \\textbf{{{j.verdict}}} & {s} \\\\")
    out += ["\\bottomrule", "\\end{tabularx}"]
    return "\n".join(out) + "\n"
