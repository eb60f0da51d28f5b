"""The article's claims' vocabulary: :class:`Evidence` (plain pandas tables a rule reads), :class:`Finding`,
:class:`Claim` and the helpers the rules share."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..tasks.spiral import data
from .results import View


VERDICTS = ("holds", "partly", "does not hold", "cannot tell")
TABLES = ("main", "timing", "steps", "memory", "ablations", "controls", "learning-rate")
NO_TRAINING = ("memory", "timing", "bench")  # experiments whose numbers do not depend on the learning rate


@dataclass
class Evidence:
    """The tables the rules read: experiment name -> ``view.runs(name)``, the gradients rows, the Bayes ceiling (%)."""

    tables: dict[str, pd.DataFrame]
    bayes: float
    gradients: pd.DataFrame = field(default_factory=pd.DataFrame)
    command: Callable[[list[str]], str] = lambda names: f"study run-all --experiments {','.join(names)}"
    adjoint: pd.DataFrame = field(default_factory=pd.DataFrame)
    lr: float | None = None  # None: the article's protocol; else main is the learning-rate arm at this rate

    @classmethod
    def from_view(cls, view: View, partial: bool = False) -> "Evidence":
        """The view's complete experiments (with ``partial``, those with some runs too)."""
        usable = lambda n: view.complete(n) or (partial and view.progress(n)[0] > 0)  # noqa: E731
        tables = {n: view.runs(n) for n in TABLES if usable(n)}
        if usable("bench"):
            tables["bench"] = view.bench()
        return cls(tables, 100 * data.bayes_accuracy()[0],
                   view.gradients() if usable("gradients") else pd.DataFrame(), view.command,
                   view.adjoint() if usable("adjoint") else pd.DataFrame())

    def runs(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    def has(self, name: str) -> bool:
        table = {"gradients": self.gradients, "adjoint": self.adjoint}.get(name)
        return not (self.runs(name) if table is None else table).empty

    def at_learning_rate(self, lr: float) -> "Evidence":
        """The same evidence with ``main`` trained at ``lr``: the learning-rate arm's runs at that rate (its
        variants only).  Experiments that train and were not rerun at ``lr`` are left out."""
        arm = self.runs("learning-rate")
        main = arm[arm["lr"] == lr] if not arm.empty else arm
        kept = {n: t for n, t in self.tables.items() if n in NO_TRAINING}
        return Evidence({**kept, "main": main}, self.bayes, pd.DataFrame(), self.command, pd.DataFrame(), lr)


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
        if missing and ev.lr is not None:
            return Finding("n/a", "not rerun", f"Needs {', '.join(missing)} at lr {ev.lr:g}")
        if ev.lr is not None and all(n in NO_TRAINING for n in self.needs):
            return Finding("n/a", "same", "No training involved")
        if missing:
            return Finding("n/a", "cannot tell", "Needs the " + ", ".join(missing) + " experiment" +
                           ("s" if len(missing) > 1 else "") + f" ({ev.command(missing)})")
        try:
            found = self.rule(ev, self.thresholds)
        except (KeyError, IndexError, ValueError) as exc:  # a variant the rule reads is not in this evidence
            if ev.lr is None:
                raise
            return Finding("n/a", "not rerun", f"{exc} not trained at lr {ev.lr:g}")
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
