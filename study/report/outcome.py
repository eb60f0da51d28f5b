"""What a report step did with each item (a figure, a table): written, skipped because an experiment it reads is
incomplete (with the command that completes it), or failed (with the file and line that raised)."""
from __future__ import annotations

import shlex
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import View


class MissingRuns(LookupError):
    """What a figure or table needs is not (all) in the store; the message says how much is there and the
    exact command that completes it."""

    def __init__(self, experiment: str, done: int = 0, planned: int | None = None, command: str | None = None):
        have = f"has {done} of {planned} runs" if planned is not None else "has no runs"
        command = command or f"study run-all --experiments {shlex.quote(experiment)}"
        super().__init__(f"experiment '{experiment}' {have}; complete it with: {command}")
        self.experiment = experiment


@dataclass
class Outcome:
    """What a report step did: files written, items skipped (incomplete experiments) and items that failed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)


def attempt(what: str, fn, outcome: Outcome, log=print, view: "View | None" = None, needs=(), partial: bool = False):
    """``fn()``, or ``None`` with one line when an experiment it ``needs`` is incomplete (skipped, unless
    ``partial``: then it is drawn and its name listed in ``outcome.partial``) or when it breaks (failed).

    Used by figures and tables: one incomplete experiment or broken item must not stop the others.
    """
    incomplete = [n for n in needs if view is not None and not view.complete(n)]
    try:
        if incomplete and not (partial and all(view.progress(n)[0] for n in incomplete)):
            raise view.missing(incomplete[0])
        result = fn()
        if incomplete:
            outcome.partial.append(what)
            log(f"{what}: partial: " + "; ".join(f"{n} {view.progress(n)[0]} of {view.progress(n)[1]} runs" for n in incomplete))
        return result
    except MissingRuns as exc:
        msg = f"{what}: skipped: {exc}"
        outcome.skipped.append(msg)
    except Exception as exc:  # noqa: BLE001 - reported, never swallowed silently
        msg = f"{what}: failed: {failure(exc)}"
        outcome.failed.append(msg)
    log(msg)
    return None


_PACKAGE = Path(__file__).resolve().parents[1]  # the study package's directory


def raised_at(exc: BaseException) -> str:
    """Where a caught ``exc`` was raised, as ``study/report/style.py:44``: the innermost frame of its traceback in
    the study package (beneath it, pandas' or matplotlib's frames say less about what to fix), else the innermost
    of all.  The frame that caught it, the traceback's first, counts only when it is the only one."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    inner = frames[1:] or frames
    shown = next((f for f in reversed(inner) if Path(f.filename).resolve().is_relative_to(_PACKAGE)), inner[-1])
    path = Path(shown.filename).resolve()
    where = path.relative_to(_PACKAGE.parent).as_posix() if path.is_relative_to(_PACKAGE.parent) else shown.filename
    return f"{where}:{shown.lineno}"


def failure(exc: BaseException) -> str:
    """``exc`` in one line with the place it was raised: ``KeyError: 'heun' (study/report/style.py:44)``."""
    text = " ".join(str(exc).split())  # a message of several lines stays one line of the report's output
    return f"{type(exc).__name__}{': ' + text if text else ''} ({raised_at(exc)})"
