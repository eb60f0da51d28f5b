"""The ``train`` runner: one training job of any task, one record per seed, and the transfer records of its
models.

A job is the configs of one (task, variant, overrides) that differ only in their seed; the task
(:mod:`study.tasks`, named by the config's ``task``, the spiral's by default) trains them, as one
batched model where the variant allows, and makes each seed's record.  A job may also hold ``transfer``
configs (:func:`study.experiments.transfer_config`): each trained model solved by another solver, one record
per (seed, solver).  They are kept out of the training config, so that a new solver adds transfer records and
renames no training record.  When only transfer runs are missing (a solver added after training), the model is
trained again, with the members it was trained with: training is deterministic, so it is the same model.
"""
from __future__ import annotations

from .. import records, tasks
from ..config import solver_label

KIND = "train"
ALONE = False  # runs beside other jobs
BATCHED = True  # the configs of one job (its seeds) run in one call


def cost(config: dict, members: int) -> float:
    """Relative cost, to start the longest jobs first (units: one dynamics evaluation at batch 128)."""
    return tasks.of(config).cost(config, members)


def _transfer_record(config: dict, trained: dict) -> dict:
    """The transfer record of ``config`` from the record of the model it solves (whose ``metrics.transfer`` holds
    the rows of every transfer solver of the job).  A model that did not train (diverged) is not solved: its
    transfer record says so and has no metric."""
    label = solver_label(config["solver"])
    metrics = {"solver": label, "trained_status": trained["status"]}
    if trained["status"] == "ok":
        row = next(r for r in trained["metrics"]["transfer"] if r["solver"] == label)
        metrics.update(row)
    return records.make(config, metrics, trained["env"])


def run(configs: list[dict]) -> list[dict]:
    """The records of one job, in the order of ``configs``: training configs differ only in their seed; transfer
    configs name the training config they solve."""
    train = [c for c in configs if c["kind"] == "train"]
    transfer = [c for c in configs if c["kind"] == "transfer"]
    if not transfer:
        return tasks.of(train[0]).train(train)[0]
    base, members = transfer[0]["train"], transfer[0]["members"]
    if any(t["train"] != base or t["members"] != members for t in transfer) or any(
            {k: v for k, v in c.items() if k != "seed"} != base or c["seed"] not in members for c in train):
        raise ValueError("a training job's transfer runs must solve the models it trains")
    solvers = []
    for t in transfer:
        if t["solver"] not in solvers:
            solvers.append(t["solver"])
    trained, _ = tasks.of(base).train([{**base, "seed": s} for s in members], transfer=solvers)
    by_seed = {r["config"]["seed"]: r for r in trained}
    out = [_transfer_record(c, by_seed[c["seed"]]) if c["kind"] == "transfer" else by_seed[c["seed"]]
           for c in configs]
    for r in trained:
        r["metrics"].pop("transfer", None)
    return out
