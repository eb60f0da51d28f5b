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
    """


@cli.command()
@click.option("--sigma", type=float, default=None, help="Noise standard deviation (default 0.1).")
@click.option("--seed", type=int, default=0, show_default=True)
def dataset(sigma, seed):
    """Describe the data set and print its Bayes-optimal accuracy."""
    import numpy as np

    from . import data

    sigma = data.SIGMA if sigma is None else sigma
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
    from .train import Protocol, train
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
        (rec,) = train(cfg, proto, [seed], device=device, progress=progress, extra_config={"variant": variant})
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


def main(argv=None):
    """Entry point: click errors and :class:`UserError` become one line and exit code 2."""
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
