"""The report's commands of ``study``: ``status``, ``figures``, ``tables`` and ``paper`` (registered on the group by
importing this module)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import checks
from .checks import UserError
from .cli import CORRUPT, _echo_err, _path, _profile_option, _runs_option, cli


@cli.command()
@_profile_option
@_runs_option
@click.option("--cost", is_flag=True, help="Also what the training runs cost: worker-seconds per experiment and variant.")
def status(profile, runs_dir, cost):
    """Runs done, missing, diverged, failed, corrupt.

    Per experiment of the profile; a run that several experiments share counts in each of them.  Stale runs
    (counted among the missing) have a record made by an older version of the code that computes them.

    Exit code 0; 3 when the store holds corrupt entries (records, links or lines of the run-all log, each
    listed on stderr as 'corrupt: ...'; run-all moves corrupt records aside and redoes their runs); 2 for bad
    input.
    """
    from . import results

    checks.experiments(profile, None)
    checks.run_store("--runs-dir", runs_dir)
    view = results.load(runs_dir, profile)
    table = view.status()
    w0 = max(14, 2 + max(len(n) for n in table.experiment))
    click.echo(f"{'experiment':<{w0}}{'runs':>6}{'done':>6}{'missing':>9}{'stale':>7}{'diverged':>10}{'failed':>8}{'corrupt':>9}")
    for r in table.itertuples(index=False):
        click.echo(f"{r.experiment:<{w0}}" + "".join(f"{v:>{w}}" for v, w in zip(r[1:], (6, 6, 9, 7, 10, 8, 9))))
    for path, problem in view.problems:
        _echo_err(f"corrupt: {path}: {problem}")
    if cost:
        _echo_costs(view.costs(), view.costs(shared="first"))
        other = sorted(view.job_seconds(exclude="train").items(), key=lambda kv: -kv[1])
        if other:
            click.echo("runs that do not train (job seconds from the run-all log, a logged rerun replacing the runs "
                       "before it): "
                       + ", ".join(f"{kind} {sec:.0f}" for kind, sec in other) + " worker-seconds")
        hours, train, rest, alone = view.scratch_hours(2)
        click.echo(f"the profile from scratch on 2 workers: about {hours:.1f} h (training {train / 60:.0f} "
                   f"worker-minutes, the runs that do not train {rest / 60:.0f}, of which {alone / 60:.0f} run alone; "
                   "log entries too old to say what they reran count in full, so this may err long)")
    if view.problems:
        sys.exit(CORRUPT)


def _echo_costs(df, first) -> None:
    """The training cost table: per experiment its variants and total; then per task (each run once, in the first
    experiment that has it)."""
    from .experiments import task_of

    click.echo("\ntraining cost, from the records (worker-seconds as measured; a batched job's time shared among its"
               " seeds)")
    if df.empty:
        click.echo("no training runs in the store")
        return
    w = max(14, 2 + max(len(n) for n in df.experiment))
    click.echo(f"{'experiment':<{w}}{'variant':<26}{'runs':>5}{'batched':>8}{'diverged':>9}{'per run s':>10}"
               f"{'worker-s':>10}")
    for name, part in df.groupby("experiment", sort=False):
        for r in part.itertuples(index=False):
            click.echo(f"{name:<{w}}{str(r.variant):<26}{r.runs:>5}{r.members:>8}{r.diverged:>9}{r.per_run:>10.0f}"
                       f"{r.worker_seconds:>10.0f}")
        total = part.worker_seconds.sum()
        click.echo(f"{name:<{w}}{'(all variants)':<26}{part.runs.sum():>5}{'':>8}{part.diverged.sum():>9}{'':>10}"
                   f"{total:>10.0f}  = {total / 60:.0f} worker-minutes")
    per_task = first[first.experiment != "all"].assign(task=lambda d: d.experiment.map(task_of))
    click.echo("\ntraining cost per task (each run once): worker-minutes, and hours of wall time on 2 workers")
    for task, part in per_task.groupby("task", sort=False):
        minutes = part.worker_seconds.sum() / 60
        click.echo(f"  {task:<12}{part.runs.sum():>6} runs {minutes:>8.0f} worker-minutes {minutes / 120:>6.1f} h")


def _report_checks(profile, runs_dir, outs) -> None:
    """The options of figures and tables, checked before matplotlib is imported (whose warnings about its
    configuration would otherwise come before the one line of a bad option)."""
    checks.experiments(profile, None)
    checks.run_store("--runs-dir", runs_dir)
    for option, d in outs:
        checks.output_dir(option, d)


def _writable_or_creatable(path: Path) -> bool:
    """Whether ``path`` is a writable directory, or its nearest existing ancestor one that it could be made in."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def _matplotlib() -> None:
    """Import matplotlib for files only (the Agg backend, whatever display this machine has).  Where its
    default configuration or cache directory cannot be written (an unwritable or missing HOME), it gets a
    temporary one in MPLCONFIGDIR, removed at exit, rather than warning about it on every command."""
    if not os.environ.get("MPLCONFIGDIR"):
        try:
            home = Path.home()
        except RuntimeError:  # no home directory at all
            home = None
        bases = [os.environ.get("XDG_CONFIG_HOME") or (home and home / ".config"),
                 os.environ.get("XDG_CACHE_HOME") or (home and home / ".cache")]
        if not all(b and _writable_or_creatable(Path(b) / "matplotlib") for b in bases):
            import atexit
            import shutil
            import tempfile

            tmp = tempfile.mkdtemp(prefix="study-matplotlib-")
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)
            os.environ["MPLCONFIGDIR"] = tmp
    import matplotlib

    matplotlib.use("Agg")


def _report_view(profile, runs_dir):
    """The store's view for figures and tables; its corrupt entries, ignored, one line each."""
    from . import results

    view = results.load(runs_dir, profile)
    for path, problem in view.problems:
        _echo_err(f"corrupt (ignored): {path}: {problem}")
    return view


def _report_exit(outcomes) -> None:
    skipped = sum(len(o.skipped) for o in outcomes)
    failed = sum(len(o.failed) for o in outcomes)
    if skipped or failed:
        _echo_err(f"figures: {skipped} item(s) skipped for incomplete experiments, {failed} failed")
        sys.exit(1 if failed else 3)


@cli.command()
@_profile_option
@_runs_option
@click.option("--out", default=str(Path("figures")), show_default=True, callback=_path)
@click.option("--tables-out", default=str(Path("paper/generated")), show_default=True, callback=_path,
              help="Where the LaTeX tables and numbers.tex go.")
@click.option("--only", default=None, help="Comma-separated figure names (default: all).")
@click.option("--partial", is_flag=True, help="Draw from incomplete experiments too, marked as partial.")
@click.option("--list", "list_only", is_flag=True, help="List the figures' names and exit.")
@click.option("--tasks", "task_list", default=None,
              help="Comma-separated tasks: only the figures and tables that read those tasks' runs alone (each task's "
                   "own table and figures among them); numbers.tex and the claims are left as they are.")
def figures(profile, runs_dir, out, tables_out, only, partial, list_only, task_list):
    """Every figure, the paper's tables and numbers."""
    chosen_tasks = checks.task_names(task_list)
    if not list_only:
        _report_checks(profile, runs_dir, [("--out", out), ("--tables-out", tables_out)])
    _matplotlib()
    from .report import figures as figs
    from .report import tables

    if list_only:
        click.echo("\n".join(figs.FIGURES))
        return
    chosen = None
    if only is not None:
        chosen = [n.strip() for n in only.split(",") if n.strip()]
        bad = [n for n in chosen if n not in figs.FIGURES]
        if bad or not chosen:
            raise UserError(f"unknown figure(s) {', '.join(checks.shown(b) for b in bad) or '(none named)'}; "
                            f"'study figures --list' names the {len(figs.FIGURES)} figures")
    view = _report_view(profile, runs_dir)
    fig = figs.draw_all(view, out, chosen, log=click.echo, partial=partial, tasks=chosen_tasks)
    tab = tables.write_all(view, tables_out, log=click.echo, partial=partial, tasks=chosen_tasks)
    _report_exit([fig, tab])


@cli.command("tables")
@_profile_option
@_runs_option
@click.option("--out", default=str(Path("paper/generated")), show_default=True, callback=_path)
@click.option("--partial", is_flag=True, help="Write tables from incomplete experiments too, marked as partial.")
def tables_cmd(profile, runs_dir, out, partial):
    """The LaTeX tables and numbers.tex only."""
    _report_checks(profile, runs_dir, [("--out", out)])
    _matplotlib()
    from .report import tables

    view = _report_view(profile, runs_dir)
    _report_exit([tables.write_all(view, out, log=click.echo, partial=partial)])


@cli.command()
@click.option("--paper-dir", default="paper", show_default=True, callback=_path)
def paper(paper_dir):
    """Compile PAPER_DIR/main.tex to main.pdf (reproducibly)."""
    from .report import paper as build

    build.compile_pdf(paper_dir)
    click.echo(f"wrote {paper_dir / 'main.pdf'}")
