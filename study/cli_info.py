"""The information commands of ``study``: ``dataset``, ``variants`` and ``tasks`` (registered on the group by
importing this module)."""
from __future__ import annotations

import click

from . import checks
from .cli import cli


@cli.command()
@click.option("--sigma", type=float, default=None, help="Noise standard deviation, 0.01 to 1 (default 0.1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the printed split, 0 to 2**32-1.")
def dataset(sigma, seed):
    """The data set and its Bayes-optimal accuracy."""
    import numpy as np

    from .tasks.spiral import data

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
    from .tasks import why_not
    from .variants import VARIANTS, describe

    task = checks.task(task_name) if task_name is not None else None
    rows = [describe(v) for v in VARIANTS]
    if task is not None:
        for r in rows:
            r[f"on {task.NAME}"] = "yes" if why_not(task, VARIANTS[r["variant"]]) is None else "no (below)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    for name, v in VARIANTS.items():
        why = why_not(task, v) if task is not None else None
        if why:
            click.echo(f"not applicable to {task.NAME}: {name}: {why}")


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
