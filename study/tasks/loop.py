"""The one training loop and history of every task: the classifiers' epochs (:mod:`study.tasks.classification`)
and the flows' iterations (:mod:`study.tasks.ensemble`) are the same loop with their own step and words.

A job trains ``S`` members at once (one per seed).  Each round ``step()`` trains every member once (an epoch of
mini-batches, or one iteration) and returns each member's loss; a member whose own solve fails (the counter's
per-member failures) or whose loss is not finite, or beyond :data:`LOSS_LIMIT`, stops there, its record ending where it stopped; a solver that
gives up by raising stops every member still training, in that round.  Curve points record the mean losses since
the last point and the evaluations and steps taken since then, per member, and what ``evaluate()`` returns.
Torch-free: the tasks' steps import it."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

LOSS_LIMIT = 1e6  # a training loss beyond it is a blown-up solve, not a measurement (records.NLL_BOUND)
STEP_CURVES = (("forward", "nfe_forward"), ("backward", "nfe_backward"), ("accepted", "accepted_steps"),
               ("rejected", "rejected_steps"))


class History:
    """A training job's curves (the round index and the named curves, a list of per-member values per point),
    which members stopped, why and when (the last round each completed), the rounds done and the loop's wall
    time."""

    def __init__(self, S: int, curves, index: str = "iteration"):
        self.curves = {k: [] for k in (index, *curves)}
        self.index = index
        self.diverged: dict[int, str] = {}
        self.stopped: dict[int, int] = {}
        self.done = 0
        self.S = S
        self.wall_s = 0.0

    def diverge(self, member: int, reason: str, completed: int) -> None:
        """Member ``member`` stops, having completed ``completed`` rounds (the first reason is kept)."""
        self.diverged.setdefault(member, reason)
        self.stopped.setdefault(member, completed)


@dataclass(frozen=True)
class Words:
    """How a task's loop says what happened: its unit (``epoch``, ``iteration``), whether a member that fails in
    round ``r`` completed it (the classifiers count it; the flows' records end before it), and the reason when a
    solver raises after ``done`` rounds."""

    unit: str
    failed_round_counts: bool
    raised: Callable[[int, BaseException], str]

    def stop(self, r: int) -> int:
        return r if self.failed_round_counts else r - 1


FLOWS = Words("iteration", False, lambda done, exc: f"solver failure in iteration {done + 1}: {exc}")
CLASSIFIERS = Words("epoch", True, lambda done, exc: f"solver failure after epoch {done}: {exc}")


def run(h: History, counter, step, rounds: int, curve_every: int, words: Words, sched=None, progress=None,
        evaluate=None, after_point=None, on_stop=None) -> None:
    """Train ``rounds`` rounds, timed into ``h.wall_s``.

    ``step()`` returns each member's loss (or ``(losses, {curve: per-member values})`` for curves the step itself
    measures); a curve point every ``curve_every`` rounds (and at the last) adds ``evaluate()``'s curves;
    ``after_point(r)`` runs after a point while some member still trains (the classifiers' test evaluation);
    ``on_stop(member)`` is told of each member stopped by its own failure.  ``progress(r, mean loss)`` after every
    round."""
    import numpy as np

    from .ensemble import is_solver_failure

    start = time.perf_counter()
    before, losses, measured = counter.snapshot(h.S), [], {}
    try:
        for r in range(1, rounds + 1):
            out = step()
            loss, measured = out if isinstance(out, tuple) else (out, {})
            losses.append(loss)
            if sched is not None:
                sched.step()
            h.done = r
            _failures(h, counter, loss, r, words, on_stop)
            if progress:
                progress(r, float(np.nanmean(loss)) if any(map(math.isfinite, loss)) else float("nan"))
            if r % curve_every == 0 or r == rounds:
                _point(h, counter, r, losses, before, {**measured, **(evaluate() if evaluate else {})})
                losses = []
                if len(h.diverged) == h.S:
                    break
                if after_point is not None:
                    after_point(r)
                before = counter.snapshot(h.S)
            elif len(h.diverged) == h.S:
                break
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        for s in range(h.S):
            h.diverge(s, words.raised(h.done, exc), h.done)
    h.wall_s = time.perf_counter() - start


def _failures(h: History, counter, loss, r: int, words: Words, on_stop) -> None:
    for s, why in list(counter.failures.items()):  # a member's own solver failure (per-member step control)
        if s not in h.diverged:
            h.diverge(s, f"solver failure in {words.unit} {r}: {why}", words.stop(r))
            if on_stop:
                on_stop(s)
    for s, value in enumerate(loss):
        if s not in h.diverged and not math.isfinite(value):
            h.diverge(s, f"non-finite training loss in {words.unit} {r}", words.stop(r))
            if on_stop:
                on_stop(s)
        elif s not in h.diverged and abs(value) > LOSS_LIMIT:
            h.diverge(s, f"training loss {value:.3g} in {words.unit} {r}, beyond {LOSS_LIMIT:g}: a blown-up solve",
                      words.stop(r))
            if on_stop:
                on_stop(s)


def _point(h: History, counter, r: int, losses: list, before: dict, evaluated: dict) -> None:
    import numpy as np

    after = counter.snapshot(h.S)
    c = h.curves
    c[h.index].append(r)
    means = [float(np.mean(col)) for col in zip(*losses)]
    c["loss"].append([m if abs(m) <= LOSS_LIMIT else math.nan for m in means])  # beyond it: no measurement
    for name, values in evaluated.items():
        c[name].append(values)
    for key, name in STEP_CURVES:
        c[name].append([a - b for a, b in zip(after[key], before[key])])
