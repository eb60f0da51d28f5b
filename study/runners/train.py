"""The ``train`` runner: one training job of any task, one record per seed.

A job is the configs of one (task, variant, overrides) that differ only in their seed; the task
(:mod:`study.tasks`, named by the config's ``task``, the spiral's by default) trains them, as one
batched model where the variant allows, and makes each seed's record.
"""
from __future__ import annotations

from .. import tasks

KIND = "train"
ALONE = False  # runs beside other jobs
BATCHED = True  # the configs of one job (its seeds) run in one call


def cost(config: dict, members: int) -> float:
    """Relative cost, to start the longest jobs first (units: one dynamics evaluation at batch 128)."""
    return tasks.of(config).cost(config, members)


def run(configs: list[dict]) -> list[dict]:
    """The records of one job: ``configs`` differ only in their seed."""
    return tasks.of(configs[0]).train(configs)[0]
