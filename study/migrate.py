"""Store migrations: records renamed when a key leaves their config without having changed their numbers.

A record's name is the hash of its config, and a config says what produced the record's numbers.  When a key
is found never to have affected them, it leaves the config and the records move to their new names with the
same numbers, each noting where it came from (``migration``), instead of being made again.

* ``transfer`` (the solver-transfer list): it rode inside every training config that was evaluated by other
  solvers after training, so a new solver renamed every such record.  The evaluation never affects training (a
  test trains with and without it); its rows become ``transfer`` records, one per (trained run, solver)
  (:func:`study.experiments.transfer_config`), and the training record keeps its name but for the list.

* ``transfer-engines-explicit``: a transfer run's ``engines`` listed the implicit methods' engine too, which its
  explicit solves never use; it lists the explicit engines alone.

``study migrate`` applies every migration to a store; it is idempotent, and a store that needs none is left as
it is.  Torch-free.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import store, tasks

TRANSFER = "transfer-out-of-training-config"
_WHY = ("the transfer solver list left the training config: it never affected training; its rows became "
        "transfer records, one per (trained run, solver)")


def _transfer_records(rec: dict, old: str, train: dict) -> list[dict]:
    from .config import solver_label
    from .experiments import transfer_config

    seed = rec["config"]["seed"]
    members = (rec.get("timing") or {}).get("ensemble_seeds") or [seed]
    rows = {row.get("solver"): row for row in (rec["metrics"].get("transfer") or [])}
    out = []
    for solver in rec["config"]["transfer"]:
        config = transfer_config(train, seed, members, solver)
        metrics = {"solver": solver_label(solver), "trained_status": rec["status"]}
        if rec["status"] == "ok":
            row = rows.get(metrics["solver"])
            if row is None:  # a model with no flow of one field (ResNet, no flow) was not transferred
                continue
            metrics.update(row)
        out.append({"schema": rec["schema"], "kind": "transfer", "config": config, "status": "ok", "reason": None,
                    "env": rec["env"], "metrics": metrics, "migration": {"name": TRANSFER, "from": f"train/{old}",
                                                                         "why": _WHY}})
    return out


def transfer_out_of_training(runs_dir: Path | str) -> tuple[int, int]:
    """Move every training record whose config holds ``transfer`` to its name without it, and write its rows as
    transfer records.  Returns ``(training records moved, transfer records written)``."""
    runs_dir = Path(runs_dir)
    moved = written = 0
    train_dir = runs_dir / "train"
    if not train_dir.is_dir():
        return 0, 0
    for path in sorted(train_dir.glob("*.json")):
        try:
            rec = store.read_placed(path, tasks.record_schema)
        except store.CorruptRecord:
            continue  # status reports it; run-all moves it aside
        if "transfer" not in rec["config"]:
            continue
        old = path.stem
        new_config = {k: v for k, v in rec["config"].items() if k != "transfer"}
        train = {k: v for k, v in new_config.items() if k != "seed"}
        extra = [] if rec["status"] == "error" else _transfer_records(rec, old, train)
        migrated = {**rec, "config": new_config, "metrics": {k: v for k, v in rec["metrics"].items() if k != "transfer"},
                    "migration": {"name": TRANSFER, "from": f"train/{old}", "why": _WHY}}
        for t in extra:  # transfer records first: the training record's move is the last step
            target = store.record_path(runs_dir, "transfer", t["config"])
            if not target.exists():
                store.write_atomic(target, t)
                written += 1
        target = store.record_path(runs_dir, "train", new_config)
        if target.exists():  # an earlier record of the same run, used by no experiment since the transfer rode on
            # this one (same metrics, another wall time): kept beside it, out of the store's reading
            os.replace(target, target.with_name(target.name + ".superseded"))
        store.write_atomic(target, migrated)
        os.unlink(path)
        moved += 1
    return moved, written


def workprecision_by_part(runs_dir: Path | str) -> tuple[int, int]:
    """Split every work-precision record whose config lists its solvers and gradient methods into one record per
    measured part (``measure``: a solution's or a gradient method's backend and method), each with that part's
    rows of every field.  Returns ``(records split, records written)``."""
    runs_dir = Path(runs_dir)
    split = written = 0
    for path in sorted((runs_dir / "workprecision").glob("*.json")) if (runs_dir / "workprecision").is_dir() else []:
        try:
            store.read_record(path)
            continue  # today's layout
        except store.CorruptRecord:  # the old layout has no measure: not a valid record today
            rec = _old_workprecision(path)
        if rec is None:
            continue
        base = {k: v for k, v in rec["config"].items() if k not in ("solvers", "gradient_methods")}
        parts = ([{"what": "solution", "backend": b, "method": m} for b, m in rec["config"]["solvers"]]
                 + [{"what": "gradient", "backend": b, "method": m} for b, m in rec["config"]["gradient_methods"]])
        for part in parts:
            mine = [r for r in rec["metrics"].get("rows", []) if (r["what"], r["backend"], r["method"])
                    == (part["what"], part["backend"], part["method"])]
            new = {**rec, "config": {**base, "measure": part}, "metrics": {**rec["metrics"], "rows": mine},
                   "migration": {"name": WORKPRECISION, "from": f"workprecision/{path.stem}", "why": _WHY_WP}}
            target = store.record_path(runs_dir, "workprecision", new["config"])
            if not target.exists():
                store.write_atomic(target, new)
                written += 1
        os.unlink(path)
        split += 1
    return split, written


def _old_workprecision(path: Path) -> dict | None:
    """A work-precision record in the layout before :data:`WORKPRECISION` (its solvers listed), else None."""
    try:
        rec = store.read_json(path)  # a store file is untrusted: never a FIFO, a link or a huge file
    except store.CorruptRecord:
        return None
    ok = (isinstance(rec, dict) and isinstance(rec.get("config"), dict) and "measure" not in rec["config"]
          and isinstance(rec["config"].get("solvers"), list) and isinstance(rec["config"].get("gradient_methods"), list)
          and rec.get("status") == "ok" and isinstance(rec.get("metrics"), dict))
    if not ok or path.stem != store.config_hash(rec["config"]):
        return None  # anything else is left to the store's checks (corrupt, moved aside by run-all)
    probe = {**rec, "config": {**{k: v for k, v in rec["config"].items() if k not in ("solvers", "gradient_methods")},
                               "measure": {"what": "solution", "backend": "hand", "method": "euler"}}}
    try:
        from . import records

        records.validate(probe)
    except records.InvalidRecord:
        return None
    return rec


WORKPRECISION = "workprecision-by-part"
_WHY_WP = ("a work-precision record listed every solver and gradient method it measured, so a new method renamed "
           "it; it became one record per measured part, same rows")
ENGINES = "transfer-engines-explicit"
_WHY_ENGINES = ("a transfer run's engines listed the implicit methods' engine, which its explicit solves never use, so "
                "a change to it renamed every transfer record; the list became the explicit engines alone")


def transfer_engines_explicit(runs_dir: Path | str) -> tuple[int, int]:
    """Move every transfer record whose config's ``engines`` lists the implicit engine to the name without it.
    Returns ``(records moved, records moved)``."""
    from .config import EXPLICIT_ENGINES

    runs_dir, moved = Path(runs_dir), 0
    folder = runs_dir / "transfer"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = store.read_placed(path, tasks.record_schema)
        except store.CorruptRecord:
            continue  # status reports it; run-all moves it aside
        engines = rec["config"].get("engines")
        if not isinstance(engines, str):
            continue
        kept = [e for e in engines.split(",") if e.rsplit("-", 1)[0] in EXPLICIT_ENGINES]
        if kept == engines.split(","):
            continue
        new = {**rec, "config": {**rec["config"], "engines": ",".join(kept)},
               "migration": {"name": ENGINES, "from": f"transfer/{path.stem}", "why": _WHY_ENGINES}}
        target = store.record_path(runs_dir, "transfer", new["config"])
        if not target.exists():
            store.write_atomic(target, new)
        os.unlink(path)
        moved += 1
    return moved, moved


MIGRATIONS = {TRANSFER: transfer_out_of_training, WORKPRECISION: workprecision_by_part,
              ENGINES: transfer_engines_explicit}


def migrate(runs_dir: Path | str) -> dict[str, tuple[int, int]]:
    """Apply every migration to the store at ``runs_dir``: ``{name: counts}``."""
    return {name: fn(runs_dir) for name, fn in MIGRATIONS.items()}
