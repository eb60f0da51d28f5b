"""The ``study`` command line: parse, check (``study.checks``), call, print.

Every command reports bad input as one line ``study: error: ...`` on stderr
and exits with code 2, before it creates anything; a failure of the machine
(a full disk, no processes left) is one line and exit code 1.

Here: the group, the shared options, ``run`` and ``bench``; the information commands are in :mod:`study.cli_info`,
the store's (``run-all``, ``migrate``) in :mod:`study.cli_store`, the report's (``status``, ``figures``, ``tables``,
``paper``) in :mod:`study.cli_report`, ``audit`` in :mod:`study.cli_audit`.
"""
from __future__ import annotations

import os
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


def _progress_bar(total: int, desc: str, unit: str):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


@cli.command()
@click.argument("variant")
@click.option("--task", "task_name", default="spiral", show_default=True, help="The task (see 'study tasks').")
@click.option("--seed", type=int, default=0, show_default=True, help="0 to 2**32-1.")
@_task_options
@click.option("--steps", type=int, default=None,
              help=f"Fixed-step variants: solver steps / ResNet blocks (dynamics: per observation interval), 1 to {checks.STEPS_MAX:,}.")
@click.option("--newton-tol", type=float, default=None,
              help="Implicit methods: Newton's relative tolerance on each stage, 1e-14 to 0.01 (default 1e-10; never "
                   "below 64 ulps of the state's precision).")
@click.option("--newton-max-iter", type=int, default=None,
              help="Implicit methods: Newton's iterations on a stage before the step fails, 1 to 100 (default 12).")
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
def run(variant, task_name, seed, steps, newton_tol, newton_max_iter, runs_dir, device, threads, kinetic, jacobian,
        steer, weight_decay, batch_with, new_store, **protocol):
    """Train one run of VARIANT on a task.

    The record goes to RUNS_DIR/single/, apart from the experiments' records.
    """
    from . import tasks
    from .variants import VARIANTS, canonical

    task = checks.task(task_name)
    variant = canonical(variant)
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {checks.shown(variant)}; choose one of: {', '.join(VARIANTS)}")
    why = tasks.why_not(task, VARIANTS[variant])
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
    cfg = _newton_options(variant, cfg, newton_tol, newton_max_iter)
    if len(seeds) > 1 and not cfg.batches_seeds:
        from .config import METHODS

        why = ("solves its stages by one Newton iteration over the whole batch" if METHODS[cfg.method].implicit
               else "has one step-size controller per solve")
        raise UserError(f"{variant} {why}: its seeds train one at a time (no --batch-with)")
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


def _newton_options(variant: str, cfg, tol, max_iter):
    """``cfg`` with ``--newton-tol`` and ``--newton-max-iter`` (an implicit method's options), checked."""
    from dataclasses import replace

    from .config import METHODS, NEWTON_MAX_ITER_MAX, NEWTON_TOL_RANGE

    if tol is None and max_iter is None:
        return cfg
    if cfg.model != "ode" or not METHODS[cfg.method].implicit:
        implicit = ", ".join(n for n, m in METHODS.items() if m.implicit)
        raise UserError(f"--newton-tol and --newton-max-iter apply to the implicit methods ({implicit}); "
                        f"{variant} is explicit")
    if tol is not None and not NEWTON_TOL_RANGE[0] <= tol <= NEWTON_TOL_RANGE[1]:
        raise UserError(f"--newton-tol must be from {NEWTON_TOL_RANGE[0]:g} to {NEWTON_TOL_RANGE[1]:g}, got {tol:g}")
    checks.int_in("--newton-max-iter", max_iter, 1, NEWTON_MAX_ITER_MAX)
    return replace(cfg, **({"newton_tol": float(tol)} if tol is not None else {}),
                   **({"newton_max_iter": max_iter} if max_iter is not None else {}))


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
        if getattr(task, "STIFF", False):
            raise UserError(f"task {task.NAME} is stiff: the explicit solves the bench times blow up on its field; its "
                            "solvers' costs are in its training runs and its work-precision records")
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


from . import cli_audit, cli_info, cli_report, cli_store  # noqa: E402,F401 - their commands join the group

if __name__ == "__main__":
    main()
