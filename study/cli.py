"""The ``study`` command line.

Every command reports bad input as one line ``study: error: ...`` on stderr
and exits with code 2; nothing is half-written.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


def _fail(msg: str, code: int = 2):
    click.echo(f"study: error: {msg}", err=True)
    sys.exit(code)


def _check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise UserError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
        return device
    raise UserError(f"unknown device {device!r}; choose cpu, cuda or cuda:N")


def _check_writable(runs_dir: Path) -> Path:
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"runs directory {str(runs_dir)!r} is not writable: {exc.strerror or exc}") from None
    return runs_dir


def _positive(name: str, value):
    if value is not None and value < 1:
        raise UserError(f"{name} must be a positive integer, got {value}")
    return value


def _set_threads(threads: int) -> None:
    import torch

    _positive("--threads", threads)
    torch.set_num_threads(threads)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="study", message="study %(version)s")
def cli():
    """A comparative study of Neural ODE solvers on the two-spiral benchmark.

    \b
    study dataset            the data set and its Bayes-optimal accuracy
    study variants           the registered variants
    study run VARIANT        train one run and write its record
    study run-all            run every experiment (resumable; local processes or Dask)
    study status             what is done, missing, diverged, failed or corrupt
    study bench              solver cost against the bare PyTorch loop
    study figures            every figure, the paper's tables and numbers
    study paper              compile paper/main.pdf
    """


@cli.command()
@click.option("--sigma", type=float, default=None, help="Noise standard deviation (default 0.1).")
@click.option("--seed", type=int, default=0, show_default=True)
def dataset(sigma, seed):
    """Describe the data set and print its Bayes-optimal accuracy."""
    import numpy as np

    from . import data

    sigma = data.SIGMA if sigma is None else sigma
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    if sigma <= 0:
        raise UserError(f"--sigma must be positive, got {sigma}")
    sp = data.make_split(seed, sigma=sigma)
    acc, se = data.bayes_accuracy(sigma)
    click.echo(f"two interleaving Archimedean spirals, theta ~ U[0, 3 pi], r = theta / (3 pi), noise sigma = {sigma:g}")
    click.echo(f"training set:  n = {len(sp.y_train):>6}   class balance {np.mean(sp.y_train == 0):.3f} / {np.mean(sp.y_train == 1):.3f}   (seed {seed}, stream 0)")
    click.echo(f"test set:      n = {len(sp.y_test):>6}   class balance {np.mean(sp.y_test == 0):.3f} / {np.mean(sp.y_test == 1):.3f}   (seed {seed}, stream 1)")
    click.echo(f"Bayes-optimal accuracy: {100 * acc:.2f}% +- {100 * se:.2f}% (standard error; exact class densities by quadrature)")


@cli.command()
def variants():
    """List the registered variants."""
    from .variants import VARIANTS, describe

    rows = [describe(v) for v in VARIANTS]
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


@cli.command()
@click.argument("variant")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="Epochs (default: the protocol's 500).")
@click.option("--steps", type=int, default=None, help="Solver steps / ResNet blocks (default: the variant's).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (one per process is fastest here).")
def run(variant, seed, epochs, steps, runs_dir, device, threads):
    """Train one run of VARIANT and write its JSON record under RUNS_DIR/single/."""
    from . import store
    from .config import Protocol
    from .runners.train import train
    from .variants import VARIANTS, variant_config

    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    _positive("--epochs", epochs)
    _positive("--steps", steps)
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    device = _check_device(device)
    _set_threads(threads)
    _check_writable(runs_dir)
    cfg = variant_config(variant, **({"steps": steps} if steps else {}))
    proto = Protocol(**({"epochs": epochs} if epochs else {}))

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=proto.epochs, desc=f"{variant} seed {seed}", unit="epoch", leave=False)

    def progress(epoch, loss):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        (rec,), _ = train(cfg, proto, [seed], device=device, progress=progress, extra_config={"variant": variant})
    finally:
        if bar is not None:
            bar.close()
    path = store.write_atomic(store.record_path(runs_dir, "single", rec["config"]), rec)
    m = rec["metrics"]
    click.echo(f"{variant} seed {seed}: {rec['status']}" + (f" ({rec['reason']})" if rec["reason"] else ""))
    click.echo(f"  params {m['params']:,}   train acc {100 * m['train_acc']:.2f}%   test acc {100 * m['test_acc']:.2f}%   final loss {m['final_loss']:.4f}")
    click.echo(f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   eval {m['nfe_eval']:,}   "
               f"wall {m['wall_time_s']:.1f} s   activations {m['activation_bytes'] or 0:,} B")
    click.echo(f"  record: {path}")


@cli.command()
@click.option("--steps", type=int, default=20, show_default=True, help="Solver steps per solve.")
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--rounds", type=int, default=15, show_default=True, help="Interleaved measurement rounds.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--no-store", is_flag=True, help="Do not write the record to RUNS_DIR/bench/.")
def bench(steps, batch, rounds, device, as_json, runs_dir, no_store):
    """Per-step cost of the solvers against a bare PyTorch loop, measured in one process."""
    import json

    from . import store
    from .runners import bench as bench_runner

    for name, v in (("--steps", steps), ("--batch", batch), ("--rounds", rounds)):
        _positive(name, v)
    if batch > 1000:
        raise UserError(f"--batch must be at most 1000 (the training set), got {batch}")
    device = _check_device(device)
    _set_threads(1)
    if not no_store:
        _check_writable(runs_dir)
    config = {"kind": "bench", "steps": steps, "batch_size": batch, "rounds": rounds, "device": device, "torchode": True}
    if not as_json and sys.stderr.isatty():
        click.echo(f"measuring {rounds} interleaved rounds per mode ...", err=True)
    rec = bench_runner.record(config)
    rows = rec["metrics"]["rows"]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        click.echo(f"per solver step, batch {batch}, {steps} steps, 1 thread, {rec['env']['device']}; "
                   f"median +- half-IQR over {rounds} rounds; ratio to the bare loop of the same method and mode")
        click.echo(f"{'solver':<16}{'mode':<9}{'median_us':>10}{'spread_us':>10}{'ratio':>7}{'floor_us':>10}")
        for r in rows:
            click.echo(f"{r['solver']:<16}{r['mode']:<9}{r['median_us']:>10.1f}{r['spread_us']:>10.1f}"
                       f"{r['ratio_to_bare']:>7.2f}{r['floor_us']:>10.1f}")
        click.echo(f"matrix multiply (128 x 128 x 128): {rec['metrics']['matmul_gflops_128']:.1f} GFLOP/s; "
                   "floor_us = the step's matmul FLOPs at that rate; -xN rows: per seed, N seeds batched")
    if not no_store:
        path = store.write_atomic(store.record_path(runs_dir, "bench", config), rec)
        if not as_json:
            click.echo(f"record: {path}")


def _profile_option(f):
    return click.option("--profile", default="full", show_default=True, help="full or quick.")(f)


def _experiments(profile: str, names: str | None) -> list[str] | None:
    from .experiments import PROFILES, build

    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    if not names:
        return None
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    known = list(build(profile))
    bad = [n for n in chosen if n not in known]
    if bad:
        raise UserError(f"unknown experiment(s) {', '.join(bad)}; choose from: {', '.join(known)}")
    return chosen


@cli.command("run-all")
@_profile_option
@click.option("--experiments", default=None, help="Comma-separated subset (default: all).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--workers", type=int, default=None, help="Local worker processes (default: one per core).")
@click.option("--scheduler", default=None, help="Address of a Dask scheduler (tcp://host:port) to run on instead.")
@click.option("--force", is_flag=True, help="Rerun runs whose record exists.")
def run_all(profile, experiments, runs_dir, workers, scheduler, force):
    """Run every experiment of a profile; finished runs are skipped, so it resumes after any interruption."""
    from . import executor
    from .experiments import plan

    names = _experiments(profile, experiments)
    workers = _positive("--workers", workers) or (os.cpu_count() or 1)
    if scheduler is not None and "://" not in scheduler:
        raise UserError(f"--scheduler needs an address like tcp://host:8786, got {scheduler!r}")
    if scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError("--scheduler needs Dask: pip install 'study[dask]'") from None
    _check_writable(runs_dir)
    jobs = plan(profile, names)
    total = sum(len(j.seeds) for j in jobs)
    pre = executor.Summary()
    todo_runs = sum(len(j.seeds) for j in executor.pending(jobs, runs_dir, force, pre))
    for q in pre.quarantined:
        click.echo(f"corrupt record moved aside and rerun: {q}", err=True)
    click.echo(f"run-all: profile {profile}, {len(jobs)} jobs, {total} runs, {total - todo_runs} already done, "
               f"{todo_runs} to run on " + (f"Dask at {scheduler}" if scheduler else f"{workers} local worker(s)"))
    tty = sys.stderr.isatty()
    bar = None
    if tty:
        from tqdm import tqdm

        bar = tqdm(total=todo_runs, unit="run", desc="run-all", dynamic_ncols=True)
    done = [0]

    def log(event, job, res):
        n = len(job.seeds) if res is None else len(res["done"]) + len(res["skipped"])
        done[0] += n
        desc = job.describe()
        statuses = sorted({s for _, s in res["done"]}) if res else ["worker failed"]
        msg = f"[{done[0]}/{todo_runs}] {desc}: {', '.join(statuses) or 'skipped'}" + (
            f" ({res['seconds']:.1f} s)" if res and res["done"] else "")
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(desc[:40])
            if event == "failed" or (res and "error" in statuses):
                bar.write(msg)
        else:
            click.echo(msg)
            sys.stdout.flush()  # line-oriented progress must reach a log file as it happens

    try:
        summary = executor.run_jobs(jobs, runs_dir, workers=workers, scheduler=scheduler, force=force, log=log)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _fail("interrupted: finished runs are stored; run the same command again to resume", 130)
    except OSError as exc:
        if scheduler:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        raise UserError(f"run-all failed on the run store {str(runs_dir)!r}: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    for q in summary.quarantined:
        click.echo(f"corrupt record moved aside and rerun: {q}", err=True)
    executor.log_invocation(runs_dir, profile, names, workers, scheduler, summary)
    click.echo(f"run-all: {summary.done} run, {summary.skipped} skipped (already done), "
               f"{len(summary.diverged)} diverged, {len(summary.failed)} failed, {summary.seconds:.0f} s wall")
    if summary.failed:
        for f in summary.failed:
            click.echo(f"failed: {f}: {executor.failure_detail(f) if f.endswith('.json') else ''}", err=True)
        sys.exit(1)


@cli.command()
@_profile_option
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def status(profile, runs_dir):
    """Per experiment: runs done / missing / diverged / failed, and corrupt files."""
    from . import results

    _experiments(profile, None)
    view = results.load(runs_dir, profile)
    click.echo(f"{'experiment':<14}{'runs':>6}{'done':>6}{'missing':>9}{'diverged':>10}{'failed':>8}{'corrupt':>9}")
    for r in view.status().itertuples(index=False):
        click.echo(f"{r.experiment:<14}" + "".join(f"{v:>{w}}" for v, w in zip(r[1:], (6, 6, 9, 10, 8, 9))))
    for path, problem in view.problems:
        click.echo(f"corrupt: {path}: {problem}", err=True)


@cli.command()
@_profile_option
@click.option("--runs-dir", type=click.Path(path_type=Path, exists=False), default=Path("runs"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("figures"), show_default=True)
@click.option("--tables-out", type=click.Path(path_type=Path), default=Path("paper/generated"), show_default=True,
              help="Where the LaTeX tables and numbers.tex go.")
@click.option("--only", default=None, help="Comma-separated figure names (default: all).")
def figures(profile, runs_dir, out, tables_out, only):
    """Draw every figure (PDF + PNG) and write the paper's generated tables and numbers."""
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever display this machine has
    from . import results
    from .report import figures as figs
    from .report import tables

    _experiments(profile, None)
    if not runs_dir.is_dir():
        raise UserError(f"runs directory {str(runs_dir)!r} does not exist; run 'study run-all' first")
    chosen = None
    if only:
        chosen = [n.strip() for n in only.split(",")]
        bad = [n for n in chosen if n not in figs.FIGURES]
        if bad:
            raise UserError(f"unknown figure(s) {', '.join(bad)}; choose from: {', '.join(figs.FIGURES)}")
    for d in (out, tables_out):
        _check_writable(d)
    view = results.load(runs_dir, profile)
    for path, problem in view.problems:
        click.echo(f"corrupt (ignored): {path}: {problem}", err=True)
    _, skipped = figs.draw_all(view, out, chosen, log=click.echo)
    _, tskipped = tables.write_all(view, tables_out, log=click.echo)
    if skipped or tskipped:
        click.echo(f"figures: {len(skipped) + len(tskipped)} item(s) skipped for missing runs", err=True)
        sys.exit(3)


@cli.command("tables")
@_profile_option
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("paper/generated"), show_default=True)
def tables_cmd(profile, runs_dir, out):
    """Write the LaTeX tables and numbers.tex (also done by `study figures`)."""
    from . import results
    from .report import tables

    _experiments(profile, None)
    if not runs_dir.is_dir():
        raise UserError(f"runs directory {str(runs_dir)!r} does not exist; run 'study run-all' first")
    _check_writable(out)
    _, skipped = tables.write_all(results.load(runs_dir, profile), out, log=click.echo)
    if skipped:
        sys.exit(3)


TEX_PACKAGES = "latexmk texlive-latex-recommended texlive-latex-extra texlive-science texlive-fonts-recommended"


@cli.command()
@click.option("--paper-dir", type=click.Path(path_type=Path), default=Path("paper"), show_default=True)
def paper(paper_dir):
    """Compile PAPER_DIR/main.tex to main.pdf with latexmk."""
    import re
    import shutil
    import subprocess

    main_tex = paper_dir / "main.tex"
    if not main_tex.exists():
        raise UserError(f"{main_tex} does not exist")
    if not (paper_dir / "generated" / "numbers.tex").exists():
        raise UserError(f"{paper_dir / 'generated' / 'numbers.tex'} is missing; run 'study figures' first")
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        raise UserError(f"latexmk/pdflatex not found; install them: apt-get install {TEX_PACKAGES}")
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "main.tex"]
    r = subprocess.run(cmd, cwd=paper_dir, capture_output=True, text=True)
    if r.returncode != 0:
        log = (paper_dir / "main.log").read_text(errors="replace") if (paper_dir / "main.log").exists() else r.stdout
        missing = re.search(r"File `([^']+\.(?:sty|cls))' not found", log)
        if missing:
            raise UserError(f"LaTeX package file {missing.group(1)} is missing; install: apt-get install {TEX_PACKAGES}")
        err = re.search(r"^(?:\S+:\d+: |! )(.+)$", log, re.M)
        raise UserError(f"LaTeX failed: {err.group(1) if err else 'see ' + str(paper_dir / 'main.log')}")
    click.echo(f"wrote {paper_dir / 'main.pdf'}")


def main(argv=None):
    """Entry point: click errors and :class:`UserError` become one line and exit code 2."""
    from .executor import quiet_warnings

    quiet_warnings()
    try:
        cli.main(args=argv, prog_name="study", standalone_mode=False)
    except UserError as exc:
        _fail(str(exc))
    except click.UsageError as exc:
        if type(exc).__name__.startswith("NoArgsIsHelp") and exc.ctx is not None:  # bare `study`
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        hint = f" (see 'study {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in exc.ctx.command_path else " (see 'study --help')"
        _fail(exc.format_message().replace("\n", " ") + hint)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
