"""``study audit FILE``: which solver and which gradient suit the user's own model (:mod:`study.audit`)."""
from __future__ import annotations

from pathlib import Path

import click

from . import checks
from .checks import UserError
from .cli import _path, cli


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--budget", type=click.Choice(["quick", "standard"]), default="quick", show_default=True,
              help="quick: 1 seed, one grid per method, at most 30 iterations (under a minute for a small model); "
                   "standard: 3 seeds, three step counts and two tolerances, the problem's own iterations.")
@click.option("--seeds", type=int, default=None, help="Seeds per cell, 1 to 20 (default: the budget's).")
@click.option("--out", default=None, callback=_path, help="Where the report goes (default: audit/NAME).")
@click.option("--runs-dir", default=None, callback=_path,
              help="Where the audit's records go (default: OUT/runs); a second audit there does only what is missing.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
def audit(file, budget, seeds, out, runs_dir, device):
    """Train FILE's model with every solver x gradient cell, measure each trained model, and report which solver,
    which gradient, at what cost (the file's contract: docs/audit.md)."""
    from .audit import ProblemError
    from .audit import audit as run_audit

    if seeds is not None and not 1 <= seeds <= 20:
        raise UserError(f"--seeds must be an integer from 1 to 20, got {seeds}")
    if not file.is_file():
        raise UserError(f"{checks.shown(str(file))}: no such file")
    device = checks.device(device)
    for option, path in (("--out", out), ("--runs-dir", runs_dir)):
        if path is not None:
            checks.output_dir(option, path)
    try:
        run_audit(file, budget, seeds, out, runs_dir, device=device, log=click.echo)
    except ProblemError as exc:
        raise UserError(str(exc)) from None
