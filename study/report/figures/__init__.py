"""Every figure of the study, one function each, drawn from the pandas view (``study.results``).

``draw_all(view, out)`` draws every figure whose experiments are complete; a
figure whose runs are incomplete is skipped with one line naming the
experiment and the command that completes it (``partial=True`` draws it,
marked as partial).

One module per family of figures; each declares its own ``FIGURES``
(name -> (function, the experiments it reads)).  A new family is a module
added to :data:`FAMILIES`; the registry draws the figures in the order of
their names (``figNN_...``, the paper's numbering), whichever family holds
them.
"""
from __future__ import annotations

from pathlib import Path

from .. import style
from ..results import Outcome, View, attempt
from . import accuracy, controls, cost, density, digits, dynamics, flows, gradients, kinds, remedies, task_family
from .accuracy import CURVE_VARIANTS, fig_ablations, fig_curves, fig_data, fig_frontier, fig_main
from .controls import CONTROL_LABELS, fig_controls, fig_learning_rate
from .cost import MERGE_RTOL, fig_convergence, fig_dopri5_nfe, fig_memory, fig_step_time
from .flows import TRAJ_VARIANTS, fig_regions, fig_trajectories
from .gradients import TRAINED_COLOURS, fig_adjoint, fig_gradients

__all__ = ["FAMILIES", "FIGURES", "draw_all", "CURVE_VARIANTS", "CONTROL_LABELS", "MERGE_RTOL", "TRAJ_VARIANTS",
           "TRAINED_COLOURS", "fig_ablations", "fig_adjoint", "fig_controls", "fig_convergence", "fig_curves",
           "fig_data", "fig_dopri5_nfe", "fig_frontier", "fig_gradients", "fig_learning_rate", "fig_main",
           "fig_memory", "fig_regions", "fig_step_time", "fig_trajectories"]

FAMILIES = (accuracy, cost, flows, gradients, controls, dynamics, density, digits, kinds, remedies, task_family)


def _collect(families) -> dict:
    """The families' figures in one registry, in the order of their names; a name declared twice is an error."""
    figures: dict = {}
    for family in families:
        for name, entry in family.FIGURES.items():
            if name in figures:
                raise ValueError(f"figure {name!r} is declared by two families")
            figures[name] = entry
    return dict(sorted(figures.items()))


FIGURES = _collect(FAMILIES)  # name -> (function, the experiments it reads)


def _mark_partial(fig, view: View, needs) -> None:
    text = "PARTIAL: " + "; ".join(f"{n} {view.progress(n)[0]} of {view.progress(n)[1]} runs" for n in needs
                                   if not view.complete(n))
    fig.text(0.5, 1.02, text, ha="center", va="bottom", fontsize=7, color="#C00000")  # above any title


def of_tasks(needs, chosen) -> bool:
    """Whether an item that reads the experiments ``needs`` belongs to the tasks ``chosen`` (None: every task)."""
    from ...experiments import task_of

    return chosen is None or (bool(needs) and all(task_of(n) in chosen for n in needs))


def draw_all(view: View, out: Path, only: list[str] | None = None, log=print, partial: bool = False,
             tasks: list[str] | None = None) -> Outcome:
    """Draw every figure whose experiments are complete (with ``partial``, those with some runs too,
    marked as partial); one line per figure skipped or failed.  ``tasks``: only the figures that read those tasks'
    experiments alone."""
    outcome = Outcome()
    for name, (fn, needs) in FIGURES.items():
        if (only and name not in only) or not of_tasks(needs, tasks):
            continue
        fig = attempt(name, lambda: fn(view, out), outcome, log, view, needs, partial)
        if fig is None:
            continue
        if name in outcome.partial:
            _mark_partial(fig, view, needs)
        try:
            outcome.written += style.save(fig, out, name)
        except OSError as exc:
            outcome.failed.append(f"{name}: failed: {exc.strerror or exc}")
            log(outcome.failed[-1])
            continue
        log(f"{name}: {out / name}.pdf")
    return outcome
