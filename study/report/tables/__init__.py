"""Generated LaTeX for the paper: tables (booktabs + siunitx) and the numbers of ``numbers.tex``.

Everything here reads the pandas view (``study.results``); nothing in the
paper's results is typed by hand.  ``write_all(view, out)`` writes what the
runs allow and returns one line for each table it had to skip.

One module per family of tables; each builder takes the view and the
:class:`~study.report.numbers.Numbers` it adds its macros to.  :data:`TABLES`
and :data:`NUMBERS` name them in the order they are built: a macro added
twice keeps the later value.
"""
from __future__ import annotations

from pathlib import Path

from ...store import write_text_atomic
from .. import claims
from ..numbers import Numbers
from ..results import Outcome, View, attempt
from .constants import constant_numbers, protocol_numbers, variants_table
from .controls import CONTROL_ROWS, controls_numbers, learning_rate_numbers, lr_word, ratio_word
from .cost import bench_markdown, bench_numbers, convergence_numbers, cost_markdown, memory_numbers
from .gradients import adjoint_numbers, gradient_numbers
from .main_results import isolated_step_seconds, main_numbers
from .numbers_tex import numbers_tex
from .sweeps import ablation_numbers, sweep_numbers
from .density import density_numbers
from .digits import CONTROLS as DIGITS_CONTROLS, MAIN as DIGITS_MAIN, digits_numbers
from .remedies import EXPERIMENTS as REMEDY_EXPERIMENTS, remedies_numbers
from .dynamics import dynamics_numbers
from .kinds import TRANSFER, WORK_PRECISION, transfer_numbers, workprecision_numbers
from .verdicts import claim_numbers
from .taskbench import EXPERIMENTS as TASKBENCH_EXPERIMENTS, taskbench_numbers
from .headline import EXPERIMENTS as HEADLINE_EXPERIMENTS, headline_numbers
from .cross_claims import EXPERIMENTS as CROSS_EXPERIMENTS, cross_claim_numbers
from . import task_family
from .seminorm import EXPERIMENTS as SEMINORM_EXPERIMENTS, seminorm_numbers
from .stiff import EXPERIMENTS as STIFF_EXPERIMENTS, IMPLICIT_EXPERIMENTS, implicit_numbers, stiff_numbers

__all__ = ["NUMBERS", "TABLES", "write_all", "CONTROL_ROWS", "ablation_numbers", "adjoint_numbers", "bench_markdown",
           "bench_numbers", "claim_numbers", "constant_numbers", "controls_numbers", "convergence_numbers",
           "cost_markdown", "gradient_numbers", "isolated_step_seconds", "learning_rate_numbers", "lr_word",
           "main_numbers", "memory_numbers", "numbers_tex", "protocol_numbers", "ratio_word", "sweep_numbers",
           "variants_table"]

TABLES = {  # file -> (builder, the experiments it reads); each builder adds its numbers to numbers.tex
    "main_results": (main_numbers, ("main", "timing")),
    "memory": (memory_numbers, ("memory",)),
    "bench": (bench_numbers, ("bench",)),
    "steps, tolerance": (sweep_numbers, ("steps", "tolerance")),
    "controls": (controls_numbers, ("controls",)),
    "learning_rate": (learning_rate_numbers, ("learning-rate",)),
    "adjoint": (adjoint_numbers, ("adjoint",)),
    "dynamics": (dynamics_numbers, ("dynamics/main",)),
    "density": (density_numbers, ("density/main",)),
    "digits": (digits_numbers, (DIGITS_MAIN, DIGITS_CONTROLS)),
    "remedies": (remedies_numbers, REMEDY_EXPERIMENTS),
    "transfer": (transfer_numbers, tuple(TRANSFER.values())),
    "taskbench": (taskbench_numbers, TASKBENCH_EXPERIMENTS),
    "headline": (headline_numbers, HEADLINE_EXPERIMENTS),
    "cross_claims": (cross_claim_numbers, CROSS_EXPERIMENTS),
    "seminorm": (seminorm_numbers, SEMINORM_EXPERIMENTS),
    "stiff": (stiff_numbers, STIFF_EXPERIMENTS),
    "implicit": (implicit_numbers, IMPLICIT_EXPERIMENTS),
    **task_family.builders(),  # every task's own table, from its description (task_<name>.tex)
}
NUMBERS = {  # numbers.tex parts without a table of their own
    "constants": (constant_numbers, ()),
    "convergence": (convergence_numbers, ("convergence",)),
    "gradients": (gradient_numbers, ("gradients",)),
    "ablations": (ablation_numbers, ("ablations",)),
    "work-precision": (workprecision_numbers, tuple(WORK_PRECISION.values())),
}


def write_all(view: View, out: Path, log=print, partial: bool = False, tasks: list[str] | None = None) -> Outcome:
    """Write every table whose experiments are complete (with ``partial``, those with some runs too, marked),
    the claims table and numbers.tex into ``out``, each file atomically.  ``tasks``: only the tables that read those
    tasks' experiments alone (numbers.tex, the claims and the findings, which read every task, are left as they
    are)."""
    if tasks is not None:
        return _write_tables_of(view, out, log, partial, tasks)
    N, outcome, texts = Numbers(), Outcome(), {"variants": variants_table()}
    for name, (fn, needs) in TABLES.items():
        built = attempt(f"{name}.tex", lambda: fn(view, N), outcome, log, view, needs, partial)
        for file, text in zip(name.split(", "), built if isinstance(built, tuple) else [built]):
            if text is not None:
                mark = f"{name}.tex" in outcome.partial
                texts[file] = ("% PARTIAL: drawn from incomplete experiments (study tables --partial)\n" if mark else "") + text
    for name, (fn, needs) in NUMBERS.items():
        attempt(f"numbers.tex ({name})", lambda: fn(view, N), outcome, log, view, needs, partial)
    judged = attempt("claims.tex", lambda: claims.judge_all(view, partial), outcome, log, view, ("main",), partial)
    if judged is not None:
        claim_numbers(judged, N)
        texts["claims"] = claims.table(judged)
    texts["numbers"] = numbers_tex(N, out.parent / "main.tex", log)
    from .. import findings

    texts["findings"] = findings.render(N.items)
    texts["performance"] = findings.render_performance(N.items, bench_markdown(view), cost_markdown(view))
    for file, text in texts.items():
        name = f"{file}.md" if file in ("findings", "performance") else f"{file}.tex"
        try:
            outcome.written.append(write_text_atomic(out / name, text))
            log(f"wrote {out / name}")
        except OSError as exc:
            outcome.failed.append(f"{name}: failed: {exc.strerror or exc}")
            log(outcome.failed[-1])
    return outcome


def _write_tables_of(view: View, out: Path, log, partial: bool, tasks: list[str]) -> Outcome:
    from ..figures import of_tasks

    N, outcome = Numbers(), Outcome()
    for name, (fn, needs) in TABLES.items():
        if not of_tasks(needs, tasks) or ", " in name:
            continue
        text = attempt(f"{name}.tex", lambda: fn(view, N), outcome, log, view, needs, partial)
        if isinstance(text, str):
            try:
                outcome.written.append(write_text_atomic(out / f"{name}.tex", text))
                log(f"wrote {out / name}.tex")
            except OSError as exc:
                outcome.failed.append(f"{name}.tex: failed: {exc.strerror or exc}")
                log(outcome.failed[-1])
    log(f"numbers.tex, claims.tex and the findings read every task: left as they are (--tasks {','.join(tasks)})")
    return outcome
