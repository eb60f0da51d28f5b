"""The run store against every way a file can break it: each case is reported, moved aside and redone."""
import copy
import errno
import json
import os
import shutil

import pytest

from study import executor, records, store
from study.experiments import Job
from tests.helpers import ROOT

SHIPPED = ROOT / "runs"


def shipped(kind: str) -> dict:
    """One shipped record of ``kind`` (a known-good record to break); ``train:TASK`` is a training record of that
    task (``train`` alone: the spiral's)."""
    from study import tasks

    kind, _, task = kind.partition(":")
    for path in sorted((SHIPPED / kind).glob("*.json")):
        rec = store.read_record(path, tasks.record_schema)
        if rec["config"].get("task", "spiral") == (task or "spiral"):
            return rec
    raise LookupError(f"no shipped {kind} record of task {task or 'spiral'}")


@pytest.fixture
def placed(tmp_path):
    """A store holding one good training record: (runs dir, its path, the record)."""
    rec = shipped("train")
    path = store.record_path(tmp_path, "train", rec["config"])
    store.write_atomic(path, rec)
    return tmp_path, path, rec


def job_of(rec: dict) -> Job:
    cfg = dict(rec["config"])
    seed = cfg.pop("seed")
    return Job("train", cfg, [seed], ["main"])


def pending_after(runs_dir, rec) -> tuple[list[Job], executor.Summary]:
    summary = executor.Summary()
    return executor.pending([job_of(rec)], runs_dir, None, summary), summary


@pytest.mark.parametrize("content,problem", [
    (b'{"schema": 1, "kind": "\xff\xfe"}', "not UTF-8 text (byte 0xff at offset 23)"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    (b'{"schema": 1, "kind": "tr', "not valid JSON"),
    (b'{"schema": NaN}', "NaN is not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_unreadable_bytes_are_corrupt_records_that_get_moved_aside_and_rerun(placed, content, problem):
    runs, path, rec = placed
    path.write_bytes(content)
    with pytest.raises(store.CorruptRecord, match=problem.replace("(", r"\(").replace(")", r"\)")):
        store.read_record(path)
    problems = [p for _, _, p in store.scan(runs) if p]
    assert len(problems) == 1 and problem.split(" (")[0] in problems[0]
    todo, summary = pending_after(runs, rec)
    assert todo and todo[0].seeds == [rec["config"]["seed"]] and problem.split(" (")[0] in summary.quarantined[0]
    assert not path.exists() and path.with_name(path.name + ".corrupt").read_bytes() == content


def test_a_fifo_or_a_directory_named_like_a_record_never_hangs_or_crashes(placed):
    runs, path, rec = placed
    path.unlink()
    os.mkfifo(path)  # opening a FIFO for reading would block until a writer comes
    with pytest.raises(store.CorruptRecord, match="not a regular file"):
        store.read_record(path)
    todo, _ = pending_after(runs, rec)
    assert todo and path.with_name(path.name + ".corrupt").exists()
    path.mkdir()
    assert [p for _, _, p in store.scan(runs) if p] == ["not a regular file"]


def test_repeated_corruption_keeps_every_piece_of_evidence(placed):
    runs, path, rec = placed
    path.with_name(path.name + ".corrupt").mkdir()  # an earlier .corrupt that is a directory
    for i, junk in enumerate((b"first", b"second")):
        path.write_bytes(junk)
        pending_after(runs, rec)
    assert path.with_name(path.name + ".corrupt").is_dir()
    assert path.with_name(path.name + ".corrupt.1").read_bytes() == b"first"
    assert path.with_name(path.name + ".corrupt.2").read_bytes() == b"second"


def test_a_foreign_record_is_not_counted_as_done(placed):
    runs, path, rec = placed
    other = copy.deepcopy(rec)
    other["config"]["seed"] += 100  # a valid record, but of another config
    path.write_text(json.dumps(other))
    with pytest.raises(store.CorruptRecord, match="foreign record: its config hashes to"):
        store.read_placed(path)
    assert not executor.is_result(path)
    todo, summary = pending_after(runs, rec)
    assert todo and "foreign record" in summary.quarantined[0]
    misplaced = runs / "memory" / path.name  # a train record in another kind's directory
    misplaced.parent.mkdir()
    misplaced.write_text(json.dumps(rec))
    with pytest.raises(store.CorruptRecord, match="a 'train' record in the 'memory' directory"):
        store.read_placed(misplaced)


BREAKS = {  # kind -> (dotted field, bad value, the message's words)
    "train": [("metrics.test_acc", "abc", "should be float"), ("curves.loss", [1.0], "one length"),
              ("metrics", {}, "missing field 'metrics.params'"), ("config.seed", True, "should be int")],
    "convergence": [("metrics", {}, "missing field"), ("metrics.error", [1.0, "x"], "should be list[float]")],
    "memory": [("metrics.activation_bytes", 1.5, "should be int"), ("config.solver", None, "should be str")],
    "gradients": [("metrics.rows", [{"method": 3}], "should be str")],
    "trajectories": [("data.states", "x", "should be list")],
    "timing": [("metrics.step_time_s", None, "should be float")],
    "bench": [("metrics.rows", [{"solver": "a"}], "missing field 'row.mode'")],
    "train:dynamics": [("metrics.traj_err", "x", "should be float"), ("curves.loss", [1.0], "one length"),
                       ("data.rollout", None, "should be list"), ("config.task", "nope", "unknown task")],
    "transfer": [("config.solver", {"method": "euler"}, "missing field 'solver.tol'"),
                 ("config.solver", {"method": "euler", "steps": 2, "x": 1}, "is not a solver"),
                 ("config.members", [0.5], "should be list[int]"), ("metrics.trained_status", "maybe", "ok or diverged"),
                 ("metrics.nfe", "x", "should be float"), ("metrics.test_acc", "x", "one metric")],
}


@pytest.mark.parametrize("kind,field,value,words", [(k, *b) for k, bs in BREAKS.items() for b in bs])
def test_every_kind_is_validated_field_by_field(kind, field, value, words):
    from study import tasks

    rec = shipped(kind)
    records.validate(rec, tasks.record_schema)  # the shipped record is valid
    broken = copy.deepcopy(rec)
    *parents, last = field.split(".")
    target = broken
    for p in parents:
        target = target[p]
    target[last] = value
    with pytest.raises(records.InvalidRecord, match=words.replace("[", r"\[").replace("]", r"\]")):
        records.validate(broken, tasks.record_schema)


def test_envelope_validation():
    rec = shipped("convergence")
    for change, words in (({"schema": 99}, "schema 99"), ({"status": "great"}, "status 'great'"),
                          ({"kind": "nope"}, "kind 'nope'"), ({"schema": True}, "should be int")):
        with pytest.raises(records.InvalidRecord, match=words):
            records.validate({**rec, **change})


def test_a_full_disk_leaves_the_old_file_and_names_the_new_one(tmp_path, monkeypatch):
    target = tmp_path / "fig.pdf"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        store.write_text_atomic(target, b"new and longer")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf"]


def test_written_files_get_the_usual_permissions(tmp_path):
    path = store.write_text_atomic(tmp_path / "a.tex", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~store._umask()


def test_symbolic_links_are_never_followed_or_written_through(tmp_path, placed):
    runs, path, rec = placed
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(str(runs / "train"), str(outside / "train"))
    (runs / "train").symlink_to(outside / "train", target_is_directory=True)
    with pytest.raises(store.StoreError, match="symbolic links"):
        store.check_usable(runs)
    with pytest.raises(store.StoreError, match="is a symbolic link"):
        store.write_atomic(path, rec)
    problems = [p for _, _, p in store.scan(runs) if p]
    assert len(problems) == 1 and "a symbolic link" in problems[0]
    (runs / "train").unlink()
    shutil.move(str(outside / "train"), str(runs / "train"))
    lock = path.with_suffix(".lock")
    lock.symlink_to(tmp_path / "planted")
    with pytest.raises(store.StoreError, match="never opens locks through links"):
        store.RunLock(path).acquire()
    assert not (tmp_path / "planted").exists()


def test_force_reruns_only_records_older_than_the_invocation(placed):
    runs, path, rec = placed
    started = path.stat().st_mtime + 1.0  # an invocation that started after the record was written
    assert not executor.is_result(path, force_since=started)
    assert executor.is_result(path, force_since=started - 2.0)  # written during the invocation: keep it
    todo = executor.pending([job_of(rec)], runs, started, executor.Summary())
    assert len(todo) == 1 and todo[0].seeds == [rec["config"]["seed"]]


def test_the_execution_log_tolerates_broken_lines(tmp_path):
    (tmp_path / store.EXECUTION_LOG).write_bytes(b'{"profile": "full", "seconds": 3}\n\xff\n[1]\n')
    entries, problems = store.read_log(tmp_path)
    assert entries == [{"profile": "full", "seconds": 3}] and len(problems) == 2


def test_a_record_made_by_an_older_engine_is_stale_and_rerun(tmp_path, monkeypatch):
    """Bumping an engine's version changes its runs' configs: their old records show as stale, get rerun."""
    from study import config, results
    from study.experiments import plan

    jobs = [j for j in plan("quick", ["convergence", "trajectories"]) if j.kind == "trajectories"][:1]
    cfg = jobs[0].run_configs()[0]
    old = store.record_path(tmp_path, "trajectories", cfg)
    rec = shipped("trajectories")
    rec["config"] = cfg
    store.write_atomic(old, rec)
    assert results.load(tmp_path, "quick").status().set_index("experiment").loc["trajectories", "stale"] == 0
    monkeypatch.setitem(config.ENGINES, "fused", config.ENGINES["fused"] + 1)
    view = results.load(tmp_path, "quick")
    row = view.status().set_index("experiment").loc["trajectories"]
    assert row["stale"] == 1 and row["done"] == 0
    assert executor.pending(plan("quick", ["trajectories"]), tmp_path, None, executor.Summary())


def test_figures_may_go_through_a_linked_directory(tmp_path):
    """Only the store refuses links: an output directory that is a link (to a bigger disk, say) is the user's."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "figures").symlink_to(real, target_is_directory=True)
    store.write_text_atomic(tmp_path / "figures" / "fig.pdf", b"x")
    assert (real / "fig.pdf").read_bytes() == b"x"


def test_a_kind_directory_another_worker_makes_at_the_same_moment_is_used(tmp_path, monkeypatch):
    """Two workers storing their first record of a kind: one finds no directory, the other makes it before the
    first's mkdir; the first then stores into it instead of failing with FileExistsError."""
    real_lstat, target = os.lstat, tmp_path / "runs" / "train"
    (tmp_path / "runs").mkdir()
    raced = []

    def lstat(p, *a, **kw):
        if str(p) == str(target) and not raced:  # not there yet: then the other worker makes it
            raced.append(1)
            os.mkdir(target)
            raise FileNotFoundError(p)
        return real_lstat(p, *a, **kw)

    monkeypatch.setattr(os, "lstat", lstat)
    store._directory(target)
    assert raced and target.is_dir()


@pytest.fixture
def no_blocking():
    """Fail a test that blocks (on a FIFO, say) for 10 s instead of letting it hang the suite."""
    import signal

    def expired(signum, frame):
        raise TimeoutError("blocked for 10 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_an_execution_log_that_is_a_fifo_is_refused_never_waited_on(tmp_path, no_blocking):
    """Opening a FIFO for writing waits for a reader: run-all would hang forever after its runs were done."""
    os.mkfifo(tmp_path / store.EXECUTION_LOG)
    with pytest.raises(store.StoreError, match="run-all.log.jsonl is a FIFO, not the store's execution log"):
        store.check_usable(tmp_path)  # run-all's check before it runs anything
    with pytest.raises(store.StoreError, match="is a FIFO"):
        store.append_log(tmp_path, {"profile": "quick"})
    problem = executor.log_invocation(tmp_path, "quick", None, 1, None, executor.Summary(done=1))
    assert problem and "is a FIFO" in problem  # one appearing while the runs ran: a warning, the runs are stored
    assert store.read_log(tmp_path) == ([], [])


def test_an_execution_log_that_is_a_directory_or_a_link_is_refused(tmp_path):
    (tmp_path / store.EXECUTION_LOG).mkdir()
    with pytest.raises(store.StoreError, match="is not a regular file"):
        store.append_log(tmp_path, {"profile": "quick"})
    (tmp_path / store.EXECUTION_LOG).rmdir()
    (tmp_path / store.EXECUTION_LOG).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(store.StoreError, match="is a symbolic link"):
        store.append_log(tmp_path, {"profile": "quick"})
    assert not (tmp_path / "elsewhere").exists()
    (tmp_path / store.EXECUTION_LOG).unlink()
    store.append_log(tmp_path, {"profile": "quick"})
    assert store.read_log(tmp_path) == ([{"profile": "quick"}], [])


# Values no run can produce: each makes its record invalid (named by status, moved aside and redone by run-all).
ABSURD = [("train:digits", "metrics.test_acc", 7.5), ("train", "metrics.train_acc", -0.1),
          ("train:density", "metrics.nll", -1e300), ("train:density", "metrics.gap", 2e6),
          ("train:density", "metrics.mass", -1.0), ("train:dynamics", "metrics.nfe_forward", -3),
          ("train:dynamics", "metrics.wall_time_s", -1.0), ("train:dynamics", "metrics.traj_err", -0.5),
          ("train", "curves.train_acc", "last:1.5"), ("transfer", "metrics.nfe", -1),
          ("timing", "metrics.step_time_s", -1e-3), ("workprecision", "metrics.rows", [{"error": -1.0}])]


@pytest.mark.parametrize("kind,field,value", ABSURD)
def test_a_value_outside_its_domain_makes_the_record_invalid(kind, field, value):
    from study import tasks

    broken = copy.deepcopy(shipped(kind))
    *parents, last = field.split(".")
    target = broken
    for p in parents:
        target = target[p]
    if last == "rows":  # one row's field
        value = [{**target[last][0], **value[0]}]
    elif isinstance(value, str):  # a curve's last point
        value = target[last][:-1] + [float(value.split(":")[1])]
    target[last] = value
    with pytest.raises(records.InvalidRecord, match="outside its domain"):
        records.validate(broken, tasks.record_schema)


@pytest.mark.parametrize("task", ["dynamics", "density", "digits"])
def test_a_record_that_names_another_task_is_invalid_and_no_exception_escapes(task):
    """One edited field (config.task: "spiral" on another task's record) used to raise AttributeError from every
    reader; whatever the edit, validation says the record is invalid."""
    from study import tasks

    rec = copy.deepcopy(shipped(f"train:{task}"))
    for value in ("spiral", "nope", 3, None, ["x"]):
        rec["config"]["task"] = value
        with pytest.raises(records.InvalidRecord):
            records.validate(rec, tasks.record_schema)
    with pytest.raises(records.InvalidRecord, match="cannot be checked"):
        records.validate(shipped("train"), lambda r: 1 / 0)  # a schema that breaks
