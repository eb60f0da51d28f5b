"""The ``study`` command line: parse, check (``study.checks``), call, print.

Every command reports bad input as one line ``study: error: ...`` on stderr
and exits with code 2, before it creates anything; a failure of the machine
(a full disk, no processes left) is one line and exit code 1.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from . import checks
from .checks import UserError

RUNS = Path("runs")
CORRUPT = 3  # study status: the store holds corrupt entries


def _fail(msg: str, code: int = 2):
    click.echo(f"study: error: {msg}", err=True)
    sys.exit(code)


def _interrupt(signum, frame):
    """SIGTERM as Ctrl-C: the run stops the same way (finished runs stored, the invocation logged)."""
    raise KeyboardInterrupt


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


def _path(ctx, param, value):
    """A path option's value; an empty string is an error, not the current directory."""
    if value is None:
        return None
    if not str(value).strip():
        raise click.BadParameter("must name a directory, not an empty string", ctx, param)
    return Path(value)


def _task_options(f):
    """study run's protocol options: every task's (:class:`study.tasks.Option`), each with the tasks that take it,
    its bounds and its meaning; the value is checked by :func:`study.checks.protocol_options`."""
    from . import tasks

    for flag, (opt, names) in reversed(list(tasks.options().items())):
        kind = {"int": int, "float": float, "choice": str}[opt.kind]
        f = click.option(flag, checks.PROTOCOL_PREFIX + opt.field, type=kind, default=None,
                         help=f"{', '.join(names)}: {opt.help}, {opt.bounds()} (default: the task's protocol's).")(f)
    return f


def _new_store_option(f):
    return click.option("--new-store", is_flag=True,
                        help="Make the run store in a directory that holds other files (refused without it).")(f)


def _runs_option(f):
    return click.option("--runs-dir", default=str(RUNS), show_default=True, callback=_path, help="The run store.")(f)


def _profile_option(f):
    return click.option("--profile", default="full", show_default=True, help="full or quick.")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="study", message="study %(version)s")
def cli():
    """A comparative study of Neural ODE solvers on four tasks (`study tasks`).

    Bad input is one line `study: error: ...` and exit code 2; see README.md for the limits.
    """


@cli.command()
@click.option("--sigma", type=float, default=None, help="Noise standard deviation, 0.01 to 1 (default 0.1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the printed split, 0 to 2**32-1.")
def dataset(sigma, seed):
    """The data set and its Bayes-optimal accuracy."""
    import numpy as np

    from . import data

    sigma = checks.sigma(data.SIGMA if sigma is None else sigma)
    checks.seed(seed)
    sp = data.make_split(seed, sigma=sigma)
    acc, se = data.bayes_accuracy(sigma)
    balance = lambda y: f"class balance {np.mean(y == 0):.3f} / {np.mean(y == 1):.3f}"  # noqa: E731
    click.echo(f"two interleaving Archimedean spirals, theta ~ U[0, 3 pi], r = theta / (3 pi), noise sigma = {sigma:g}")
    click.echo(f"training set:  n = {len(sp.y_train):>6}   {balance(sp.y_train)}   (seed {seed}, stream 0)")
    click.echo(f"test set:      n = {len(sp.y_test):>6}   {balance(sp.y_test)}   (seed {seed}, stream 1)")
    click.echo(f"Bayes-optimal accuracy: {100 * acc:.2f}% +- {100 * se:.2f}% (standard error; exact class densities by quadrature)")


@cli.command()
@click.option("--task", "task_name", default=None, help="Also say which variants apply to this task, and why not.")
def variants(task_name):
    """The registered variants (parameters: the spiral's models)."""
    from .variants import VARIANTS, describe

    task = checks.task(task_name) if task_name is not None else None
    rows = [describe(v) for v in VARIANTS]
    if task is not None:
        for r in rows:
            r[f"on {task.NAME}"] = "yes" if task.not_applicable(VARIANTS[r["variant"]]) is None else "no (below)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    for name, v in VARIANTS.items():
        why = task.not_applicable(v) if task is not None else None
        if why:
            click.echo(f"not applicable to {task.NAME}: {name}: {why}")


def _progress_bar(total: int, desc: str, unit: str):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


@cli.command("tasks")
def tasks_cmd():
    """The tasks: what each trains, its metrics and its reference."""
    from . import tasks
    from .experiments import applicable

    for name in tasks.TASKS:
        t = tasks.get(name)
        click.echo(f"{name} (version {t.VERSION}): {t.TITLE}: {t.SUMMARY}")
        for m in t.METRICS:
            primary = "  [primary]" if m.name == t.PRIMARY else ""
            click.echo(f"  metric {m.name:<14} {m.label} ({m.direction}{', ' + m.unit if m.unit else ''}){primary}")
        click.echo(f"  reference: {t.REFERENCE.label}: {t.REFERENCE.description}")
        click.echo(f"  variants: {len(applicable(name))} of {len(__import__('study.variants').variants.VARIANTS)}")
        defaults = t.Protocol()
        for o in t.OPTIONS:
            click.echo(f"  study run --task {name} {o.flag}: {o.help}, {o.bounds()} (default "
                       f"{getattr(defaults, o.field)!r:.40})")


@cli.command()
@click.argument("variant")
@click.option("--task", "task_name", default="spiral", show_default=True, help="The task (see 'study tasks').")
@click.option("--seed", type=int, default=0, show_default=True, help="0 to 2**32-1.")
@_task_options
@click.option("--steps", type=int, default=None,
              help=f"Fixed-step variants: solver steps / ResNet blocks (dynamics: per observation interval), 1 to {checks.STEPS_MAX:,}.")
@_runs_option
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads, at most the machine's cores (one is fastest here).")
@click.option("--kinetic", type=float, default=None, help="RNODE: weight of the kinetic energy int |f|^2 dt, 0 to "
              f"{checks.REMEDY_MAX['kinetic']:g} (flows only).")
@click.option("--jacobian", type=float, default=None, help="RNODE: weight of int |df/dy|_F^2 dt, 0 to "
              f"{checks.REMEDY_MAX['jacobian']:g} (flows only).")
@click.option("--steer", type=float, default=None, help="STEER: each batch's end time ~ U(T - b, T + b), b from 0 to below T "
              "(flows only; not on dynamics).")
@click.option("--weight-decay", type=float, default=None, help="Decoupled weight decay (AdamW), 0 to "
              f"{checks.REMEDY_MAX['weight_decay']:g}.")
@click.option("--batch-with", default=None, metavar="SEEDS",
              help="Comma-separated seeds (including --seed) to train as one batched model, as run-all does: "
                   "reproduces a record whose timing.ensemble_seeds lists them.")
@_new_store_option
def run(variant, task_name, seed, steps, runs_dir, device, threads, kinetic, jacobian, steer, weight_decay,
        batch_with, new_store, **protocol):
    """Train one run of VARIANT on a task.

    The record goes to RUNS_DIR/single/, apart from the experiments' records.
    """
    from . import store, tasks
    from .variants import VARIANTS

    from .variants import canonical

    task = checks.task(task_name)
    variant = canonical(variant)
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {checks.shown(variant)}; choose one of: {', '.join(VARIANTS)}")
    why = task.not_applicable(VARIANTS[variant])
    if why:
        from .experiments import applicable

        raise UserError(f"{variant} does not apply to task {task.NAME}: {why}; those that do: "
                        f"{', '.join(applicable(task.NAME))}")
    checks.seed(seed)
    given = checks.protocol_options(protocol)  # {flag: checked value}
    seeds = checks.batch_seeds(batch_with, seed)
    checks.int_in("--steps", steps, 1, checks.STEPS_MAX)
    checks.options_apply(task, given)
    remedies = checks.remedies(task, VARIANTS[variant], {"kinetic": kinetic, "jacobian": jacobian, "steer": steer,
                                                         "weight_decay": weight_decay})
    checks.threads(threads)
    _store_usable(runs_dir, new_store)
    device = checks.device(device)
    cfg = task.model_config(variant)
    if steps is not None and cfg.model == "none":
        raise UserError(f"--steps does not apply to {variant}: it has no flow to step")
    if steps is not None and cfg.adaptive:
        raise UserError(f"--steps does not apply to {variant}: its steps are chosen by its tolerance "
                        f"(rtol = atol = {cfg.rtol:g})")
    cfg = task.model_config(variant, {"steps": steps} if steps else {})
    if len(seeds) > 1 and not cfg.batches_seeds:
        raise UserError(f"{variant} has one step-size controller per solve: its seeds train one at a time (no --batch-with)")
    proto = task.Protocol(**{tasks.option(task, k).field: v for k, v in given.items()}, **remedies)
    if remedies.get("steer") and len(seeds) > 1:
        raise UserError("--steer draws each seed's own end times: its seeds train one at a time (no --batch-with)")
    try:
        proto.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    import torch

    torch.set_num_threads(threads)
    rec, path = _train_one(task, variant, cfg, proto, seeds, seed, device, runs_dir)
    click.echo(f"{variant} on {task.NAME}, seed {seed}: {rec['status']}" + (f" ({rec['reason']})" if rec["reason"] else ""))
    for line in task.summary(rec):
        click.echo(line)
    click.echo(f"  record: {path}")


def _store_usable(runs_dir: Path, new_store: bool = False) -> None:
    """``--runs-dir`` can be written, holds a store or nothing (or ``--new-store``) and, if it exists, the store can
    be used (no links in it, as run-all checks): refused before a run spends its time, not when its record is
    written."""
    from . import store

    checks.store_dir("--runs-dir", runs_dir, new_store)
    if runs_dir.is_dir():
        store.check_usable(runs_dir)


def _train_one(task, variant, cfg, proto, seeds, seed, device, runs_dir):
    """Train ``seeds`` as one job on ``task``; store and return seed ``seed``'s record."""
    from . import store

    units = "iteration" if hasattr(proto, "iterations") else "epoch"
    bar = _progress_bar(getattr(proto, units + "s"), f"{variant} seed {seed}", units)

    def progress(step, loss):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

    configs = [task.run_config(variant, cfg, proto, s, device) for s in seeds]
    try:
        recs, _ = task.train(configs, progress=progress)
        rec = recs[seeds.index(seed)]
    finally:
        if bar is not None:
            bar.close()
    return rec, store.write_atomic(store.record_path(runs_dir, store.SINGLE, rec["config"]), rec)


@cli.command()
@click.option("--steps", type=int, default=20, show_default=True, help=f"Solver steps per solve, 1 to {checks.BENCH_STEPS_MAX:,}.")
@click.option("--batch", type=int, default=128, show_default=True, help=f"1 to {checks.BATCH_MAX:,}.")
@click.option("--rounds", type=int, default=15, show_default=True, help=f"Interleaved measurement rounds, 1 to {checks.BENCH_ROUNDS_MAX:,}.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
@_runs_option
@click.option("--no-store", is_flag=True, help="Do not write the record.")
@click.option("--task", "task_name", default=None, help="Instead: that task's solves, hand engine against torchdiffeq "
              "and the kernel floor of its field, per evaluation (--rounds; --batch is the task's own).")
def bench(steps, batch, rounds, device, as_json, runs_dir, no_store, task_name):
    """Solver cost per step against a bare PyTorch loop.

    The record goes to RUNS_DIR/single/, apart from the experiments' records.
    """
    import json

    if task_name is not None:
        task = checks.task(task_name)
        if click.get_current_context().get_parameter_source("batch") != click.core.ParameterSource.DEFAULT:
            raise UserError(f"--batch does not apply with --task: the bench uses task {task.NAME}'s own training batch")
        return _task_bench(task, steps, rounds, device, as_json, runs_dir, no_store)

    checks.int_in("--steps", steps, 1, checks.BENCH_STEPS_MAX)
    checks.int_in("--batch", batch, 1, checks.BATCH_MAX, "the training set")
    checks.int_in("--rounds", rounds, 1, checks.BENCH_ROUNDS_MAX)
    if not no_store:
        _store_usable(runs_dir)
    device = checks.device(device)
    import torch

    torch.set_num_threads(1)
    from .runners import bench as bench_runner

    from .experiments import BENCH_SUITE, all_engines

    config = {"kind": "bench", "steps": steps, "batch_size": batch, "rounds": rounds, "device": device, "torchode": True,
              "engines": all_engines(), "suite": BENCH_SUITE}
    rec = _with_rounds_bar(bench_runner.record, config, 2 * rounds, "bench")
    rows = rec["metrics"]["rows"]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        click.echo(f"per solver step, batch {batch}, {steps} steps, 1 thread, {rec['env']['device']}; "
                   f"median +- half-IQR over {rounds} rounds; per NFE for adaptive rows; ratio to the row in 'vs'")
        click.echo(f"{'solver':<21}{'mode':<9}{'per':<5}{'median_us':>10}{'spread_us':>10}{'ratio':>7}  {'vs':<16}{'floor_us':>9}")
        for r in rows:
            click.echo(f"{r['solver']:<21}{r['mode']:<9}{r['per']:<5}{r['median_us']:>10.1f}{r['spread_us']:>10.1f}"
                       f"{r['ratio_to_bare']:>7.2f}  {r['reference']:<16}{r['floor_us']:>9.1f}")
        click.echo(f"matrix multiply (128 x 128 x 128): {rec['metrics']['matmul_gflops_128']:.1f} GFLOP/s; "
                   "floor_us = the step's matmul FLOPs at that rate; -xN rows: per seed, N seeds batched")
    if not no_store:
        _store_single(runs_dir, config, rec, as_json)


def _with_rounds_bar(record, config: dict, total: int, desc: str) -> dict:
    """``record(config, progress=...)`` with a progress bar of ``total`` rounds on a terminal."""
    bar = _progress_bar(total, desc, "round")
    try:
        return record(config, progress=(lambda mode, r, n: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _store_single(runs_dir, config: dict, rec: dict, as_json: bool) -> None:
    from . import store

    path = store.write_atomic(store.record_path(runs_dir, store.SINGLE, config), rec)
    click.echo(f"record: {path}", err=as_json)


def _task_bench(task, steps, rounds, device, as_json, runs_dir, no_store):
    import json

    from .config import DIRECT_BACKENDS
    from .experiments import taskbench_config
    from .runners import taskbench

    checks.int_in("--steps", steps, 1, checks.BENCH_STEPS_MAX)
    checks.int_in("--rounds", rounds, 1, checks.BENCH_ROUNDS_MAX)
    if not no_store:
        _store_usable(runs_dir)
    if device != "cpu":
        raise UserError(f"--task benches run on the CPU (the tasks' problems are small), not {checks.shown(device)}")
    config = taskbench_config(task.NAME, rounds, steps)
    rec = _with_rounds_bar(taskbench.record, config, 2 * rounds, f"bench {task.NAME}")
    rows = rec["metrics"]["rows"]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        click.echo(f"task {task.NAME}: per evaluation, batch {rec['metrics']['batch']}, fixed steps {steps}, dopri5 at "
                   f"{config['tol']:g}, 1 thread; median +- half-IQR over {rounds} rounds")
        click.echo(f"{'solver':<22}{'mode':<9}{'NFE':>6}{'median_us':>11}{'spread_us':>10}{'vs tdq':>8}{'vs floor':>9}")
        for r in rows:
            vs = "" if r["ratio_to_tdq"] is None else f"{r['ratio_to_tdq']:.2f}"
            fl = f"{r['ratio_to_floor']:.2f}" if r["backend"] in DIRECT_BACKENDS else ""  # adjoints: no such floor
            click.echo(f"{r['solver']:<22}{r['mode']:<9}{r['nfe_per_call']:>6}{r['median_us']:>11.1f}"
                       f"{r['spread_us']:>10.1f}{vs:>8}{fl:>9}")
        fl = rec["metrics"]["kernel_floor_us"]
        click.echo(f"kernel floor of the field: forward {fl['forward']:.1f} us, forward + VJP {fl['train']:.1f} us")
    if not no_store:
        _store_single(runs_dir, config, rec, as_json)


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

    from . import executor, store
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


def _abort_cause(exc: BaseException) -> str:
    """What lies behind click's Abort: a worker that could not start or died is not a user's Ctrl-C."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, EOFError):
        return ("a worker process could not start or died (end of its pipe): "
                "is the machine at its process or memory limit? (ulimit -u, free -h)")
    return "interrupted"


def main(argv=None):
    """Entry point: bad input is one line and exit code 2; a machine failure one line and exit code 1."""
    # One BLAS thread per process before numpy loads: the study parallelises over processes, and a
    # machine at its process limit cannot start BLAS threads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from . import store
    from .executor import quiet_warnings

    quiet_warnings()
    try:
        cli.main(args=argv, prog_name="study", standalone_mode=False)
    except (UserError, store.StoreError) as exc:
        _fail(str(exc))
    except click.UsageError as exc:
        if type(exc).__name__.startswith("NoArgsIsHelp") and exc.ctx is not None:  # bare `study`
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        hint = f" (see 'study {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in exc.ctx.command_path else " (see 'study --help')"
        _fail(_one_line(exc.format_message()) + hint)
    except click.ClickException as exc:
        _fail(_one_line(exc.format_message()))
    except click.exceptions.Abort as exc:
        cause = _abort_cause(exc)
        _fail(cause, 130 if cause == "interrupted" else 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:  # the machine, not the input: a full disk, a vanished directory
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", 1)
    sys.exit(0)


def _one_line(message: str) -> str:
    """A click message as one line, with any echoed argument cut to a readable length."""
    line = " ".join(message.split())
    return line if len(line) <= 300 else line[:297] + "..."


if __name__ == "__main__":
    main()
