"""Store migrations move records to their new names with the same numbers, noting where they came from."""
import json
from pathlib import Path

from study import migrate, store
from study.experiments import plan

SHIPPED = Path(__file__).resolve().parents[2] / "runs"


def _old_format(runs_dir: Path, job) -> dict:
    """The shipped records of ``job``'s first seed as the store held them before the transfer list left the
    training config: one training record carrying the list and the rows.  Returns the shipped records by path."""
    seed = job.seeds[0]
    configs = job.seed_configs(seed)
    shipped = {c["kind"] + "/" + store.config_hash(c): store.read_record(store.record_path(SHIPPED, c["kind"], c))
               for c in configs}
    train = next(r for r in shipped.values() if r["kind"] == "train")
    rows = [{k: v for k, v in r["metrics"].items() if k != "trained_status"}
            for r in shipped.values() if r["kind"] == "transfer"]
    old = {**train, "config": {**train["config"], "transfer": job.transfer},
           "metrics": {**train["metrics"], "transfer": rows}}
    old.pop("migration", None)
    store.write_atomic(store.record_path(runs_dir, "train", old["config"]), old)
    return shipped


def test_the_transfer_migration_round_trips_the_shipped_records(tmp_path):
    job = next(j for j in plan("full", ["dynamics/transfer"]) if j.transfer and len(j.seeds) > 1)
    shipped = _old_format(tmp_path, job)
    assert migrate.migrate(tmp_path)[migrate.TRANSFER] == (1, len(job.transfer))
    assert migrate.migrate(tmp_path)[migrate.TRANSFER] == (0, 0)  # idempotent
    now = {f"{p.parent.name}/{p.stem}": json.loads(p.read_text()) for p in tmp_path.glob("*/*.json")}
    assert set(now) == set(shipped)  # the same names as the shipped (migrated) store
    for name, rec in now.items():
        store.read_placed(tmp_path / f"{name}.json")
        assert rec["migration"]["name"] == migrate.TRANSFER and rec["migration"]["from"].startswith("train/")
        assert {k: v for k, v in rec.items() if k != "migration"} == {
            k: v for k, v in shipped[name].items() if k != "migration"}


def test_an_earlier_record_of_the_same_run_is_kept_aside(tmp_path):
    job = next(j for j in plan("full", ["dynamics/transfer"]) if j.transfer and len(j.seeds) > 1)
    shipped = _old_format(tmp_path, job)
    train_name = next(n for n, r in shipped.items() if r["kind"] == "train")
    earlier = {**shipped[train_name], "metrics": {**shipped[train_name]["metrics"], "wall_time_s": 1.0}}
    store.write_atomic(tmp_path / f"{train_name}.json", earlier)
    migrate.migrate(tmp_path)
    assert json.loads((tmp_path / f"{train_name}.json.superseded").read_text())["metrics"]["wall_time_s"] == 1.0
    assert store.read_placed(tmp_path / f"{train_name}.json")["migration"]["name"] == migrate.TRANSFER


def test_the_workprecision_migration_round_trips_the_shipped_records(tmp_path):
    """The shipped records of one task's work-precision, joined into the record the store held before (its solvers
    and gradient methods listed), split again to exactly the shipped records."""
    job = next(j for j in plan("full", ["dynamics/work-precision"]))
    configs = job.run_configs()
    shipped = {store.config_hash(c): store.read_record(store.record_path(SHIPPED, "workprecision", c)) for c in configs}
    first = shipped[store.config_hash(configs[0])]
    base = {k: v for k, v in configs[0].items() if k != "measure"}
    parts = [c["measure"] for c in configs]
    old_config = {**base, "solvers": [[p["backend"], p["method"]] for p in parts if p["what"] == "solution"],
                  "gradient_methods": [[p["backend"], p["method"]] for p in parts if p["what"] == "gradient"]}
    rows = [r for field in base["fields"] for c in configs
            for r in shipped[store.config_hash(c)]["metrics"]["rows"] if r["field"] == field]
    old = {k: v for k, v in first.items() if k != "migration"}
    old = {**old, "config": old_config, "metrics": {**first["metrics"], "rows": rows}}
    store.write_atomic(store.record_path(tmp_path, "workprecision", old_config), old)
    assert migrate.migrate(tmp_path)[migrate.WORKPRECISION] == (1, len(configs))
    assert migrate.migrate(tmp_path)[migrate.WORKPRECISION] == (0, 0)
    for h, rec in shipped.items():
        mine = json.loads((tmp_path / "workprecision" / f"{h}.json").read_text())
        assert {k: v for k, v in mine.items() if k != "migration"} == {k: v for k, v in rec.items() if k != "migration"}


def test_a_fifo_in_the_store_does_not_stop_a_migration(tmp_path):
    """Store files are untrusted: a FIFO named like a work-precision record is never opened for reading (it would
    wait for a writer forever), and the migration goes on."""
    import os
    import signal

    (tmp_path / "workprecision").mkdir()
    os.mkfifo(tmp_path / "workprecision" / "0123456789abcdef.json")
    class Blocked(BaseException):  # nothing the migration catches
        pass

    def blocked(*_):
        raise Blocked("the migration waited on the FIFO")

    signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    try:
        assert migrate.migrate(tmp_path)[migrate.WORKPRECISION] == (0, 0)
    finally:
        signal.alarm(0)
