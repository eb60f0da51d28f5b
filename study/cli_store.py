"""The store's commands of ``study``: ``run-all`` and ``migrate`` (registered on the group by importing this module)."""
from __future__ import annotations

import signal
import sys

import click

from . import checks
from .cli import (_echo_err, _fail, _interrupt, _new_store_option, _profile_option, _progress_bar, _runs_option,
                  _store_usable, cli)


def _migrate(runs_dir) -> None:
    """Move the store's records to the names today's configs give them (:mod:`study.migrate`), saying so."""
    from . import migrate as migrations

    try:
        done = migrations.migrate(runs_dir)
    except OSError as exc:
        _fail(f"cannot migrate the store at {runs_dir}: {exc.strerror or exc}", 1)
    for name, (moved, written) in done.items():
        if moved:
            click.echo(f"migrated {moved} records ({name}): {written} records written, same numbers; see 'study migrate --help'")


@cli.command("migrate")
@_runs_option
def migrate_cmd(runs_dir):
    """Move records to their new names where a key left their config without changing their numbers.

    Today: the solver-transfer list left the training configs (it never affected training); each training record
    keeps its numbers under its new name, its transfer rows become transfer records, and every moved record notes
    where it came from.  Idempotent; run-all does it before it plans.
    """
    checks.run_store("--runs-dir", runs_dir)
    from . import store

    store.check_usable(runs_dir)
    _migrate(runs_dir)


@cli.command("run-all")
@_profile_option
@click.option("--experiments", default=None, help="Comma-separated subset (default: all).")
@click.option("--tasks", "task_list", default=None,
              help="Comma-separated tasks whose experiments to run (default: all; see 'study tasks').")
@_runs_option
@click.option("--workers", type=int, default=None, help="Local worker processes, at most one per core (default: one per core).")
@click.option("--scheduler", default=None, help="Address of a Dask scheduler (tcp://host:port) to run on instead.")
@click.option("--force", is_flag=True, help="Rerun the runs recorded before this invocation started.")
@_new_store_option
def run_all(profile, experiments, task_list, runs_dir, workers, scheduler, force, new_store):
    """Run every experiment of a profile (resumable)."""
    import time

    from . import executor
    from .experiments import plan

    started = time.time()
    names = checks.experiments(profile, experiments, checks.task_names(task_list))
    workers = checks.workers(workers)
    _store_usable(runs_dir, new_store)
    checks.scheduler(scheduler)
    if runs_dir.is_dir():
        _migrate(runs_dir)
    jobs = plan(profile, names)
    total = sum(len(j.run_configs()) for j in jobs)
    pre = executor.Summary()
    force_since = started if force else None
    if runs_dir.is_dir():
        executor.pending(jobs, runs_dir, force_since, pre)
    todo_runs = pre.missing if runs_dir.is_dir() else total
    for q in pre.quarantined:
        _echo_err(f"corrupt record moved aside and rerun: {q}")
    click.echo(f"run-all: profile {profile}, {len(jobs)} jobs, {total} runs, {total - todo_runs} already done, "
               f"{todo_runs} to run on " + (f"Dask at {scheduler}" if scheduler else f"{workers} local worker(s)"))
    bar = _progress_bar(todo_runs, "run-all", "run")
    log = _run_all_progress(bar, todo_runs)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a polite kill stops like Ctrl-C: logged, resumable
    try:
        summary = executor.run_jobs(jobs, runs_dir, workers=workers, scheduler=scheduler, force_since=force_since, log=log)
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        if getattr(exc, "summary", None) is not None:  # the wall time so far counts toward the profile's
            executor.log_invocation(runs_dir, profile, names, workers, scheduler, exc.summary)
        _fail("interrupted: finished runs are stored; run the same command again to resume", 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    for q in summary.quarantined:
        _echo_err(f"corrupt record moved aside and rerun: {q}")
    click.echo(f"run-all: {summary.done} run, {summary.skipped} skipped (already done), "
               f"{len(summary.diverged)} diverged, {len(summary.failed)} failed, {summary.seconds:.0f} s wall")
    problem = executor.log_invocation(runs_dir, profile, names, workers, scheduler, summary)
    if problem:
        _echo_err(f"warning: {problem}")
    for f in summary.failed:
        _echo_err(f"failed: {f}" + (f": {executor.failure_detail(f)}" if f.endswith(".json") else ""))
    if summary.failed:
        sys.exit(1)


def _run_all_progress(bar, todo_runs: int):
    """The ``log`` callback of run-all: a bar on a terminal, one line per finished job otherwise."""
    done = [0]

    def log(event, job, res):
        n = len(job.run_configs()) if res is None else len(res["done"]) + len(res["unwritten"])  # what it ran
        done[0] += n
        desc = job.describe()
        statuses = sorted({s for _, s in res["done"]} | ({"unwritten"} if res["unwritten"] else set())) if res else ["worker failed"]
        msg = f"[{done[0]}/{todo_runs}] {desc}: {', '.join(statuses) or 'skipped'}" + (
            f" ({res['seconds']:.1f} s)" if res and res["done"] else "")
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(desc[:40])
            if event == "failed" or "error" in statuses or "unwritten" in statuses:
                bar.write(msg)
        else:
            click.echo(msg)
            sys.stdout.flush()  # line-oriented progress must reach a log file as it happens

    return log
