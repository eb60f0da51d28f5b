"""run-all: resume after kill -9, concurrent run-alls, corrupt records, divergence, errors, Dask, the quick profile."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from study import executor, store, tasks
from study.experiments import Job
from study.results import load
from study.experiments import applicable

MAIN = applicable("spiral")  # the spiral's main: one quick run a variant that applies to it
from tests.helpers import ENV, interruptible, study
from tests.helpers import strip as comparable


def records(runs_dir):
    out = {}
    for path, rec, problem in store.scan(runs_dir, tasks.record_schema):
        assert problem is None, (path, problem)
        out[str(path.relative_to(runs_dir))] = rec
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The quick `main` experiment, uninterrupted."""
    d = tmp_path_factory.mktemp("reference")
    r = study("run-all", "--profile", "quick", "--experiments", "main", "--runs-dir", str(d), "--workers", "2")
    assert r.returncode == 0, r.stderr
    return d


def started_until_first_record(d, **popen) -> subprocess.Popen:
    """A one-worker quick run-all of `main` into ``d``, returned once its first record is written (or 120 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "study", "run-all", "--profile", "quick", "--experiments", "main",
                             "--runs-dir", str(d), "--workers", "1"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)
    deadline = time.time() + 120
    while time.time() < deadline and not (d.exists() and list((d / "train").glob("*.json"))):
        time.sleep(0.05)
    return proc


def test_resume_after_kill_9(tmp_path, reference):
    d = tmp_path / "runs"
    proc = started_until_first_record(d, start_new_session=True)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)  # the run-all process; its workers die with it
    proc.wait()
    partial = records(d)
    assert 1 <= len(partial) < len(MAIN)  # stopped part-way; whatever is there is complete and valid
    r = study("run-all", "--profile", "quick", "--experiments", "main", "--runs-dir", str(d), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"{len(partial)} already done" in r.stdout
    after, ref = records(d), records(reference)
    assert sorted(after) == sorted(ref)  # every run present once, at the same path
    for key in ref:
        assert comparable(after[key]) == comparable(ref[key]), key
    assert not list(d.rglob("*.tmp")) and not list(d.rglob("*.lock"))


def test_sigterm_stops_like_ctrl_c_logs_the_invocation_and_resumes(tmp_path, reference):
    d = tmp_path / "runs"
    proc = started_until_first_record(d, text=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted: finished runs are stored" in err and "Traceback" not in err
    log, problems = store.read_log(d)
    assert not problems and len(log) == 1 and log[0]["interrupted"] and log[0]["seconds"] > 0
    r = study("run-all", "--profile", "quick", "--experiments", "main", "--runs-dir", str(d), "--workers", "2")
    assert r.returncode == 0, r.stderr
    after, ref = records(d), records(reference)
    assert sorted(after) == sorted(ref) and all(comparable(after[k]) == comparable(ref[k]) for k in ref)
    log, _ = store.read_log(d)
    assert len(log) == 2 and "interrupted" not in log[1]


def test_two_concurrent_forced_run_alls_redo_each_record_once(tmp_path, reference):
    d = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(reference), str(d)], check=True)
    cmd = [sys.executable, "-m", "study", "run-all", "--profile", "quick", "--experiments", "main",
           "--runs-dir", str(d), "--workers", "1", "--force"]
    a = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0
    ran = [int(line.split()[1]) for out in outs for line in out.splitlines() if line.startswith("run-all:") and " run," in line]
    assert sum(ran) == len(MAIN)  # every record redone (quick main: one seed a variant), by exactly one of them
    after = records(d)
    assert all(os.stat(d / k).st_mtime > os.stat(reference / k).st_mtime for k in after)


def test_a_full_disk_is_reported_per_run_and_loses_nothing(tmp_path):
    """A 24 KiB tmpfs (six pages) as the runs directory: the quick main experiment's records (one a variant) do not fit."""
    d = tmp_path / "tiny"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        r = study("run-all", "--profile", "quick", "--experiments", "main", "--runs-dir", str(d), "--workers", "2")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        failed = [line for line in r.stderr.splitlines() if line.startswith("failed:")]
        assert failed and all("No space left on device" in line for line in failed)
        assert re.search(r"^run-all: \d+ run, 0 skipped \(already done\), 0 diverged, \d+ failed", r.stdout, re.M)
        written = records(d)  # whatever was written is complete and valid; nothing half-written is left
        assert len(written) + len(failed) == len(MAIN) and not list(d.rglob("*.tmp"))
        r = study("figures", "--profile", "quick", "--runs-dir", str(d), "--out", str(d / "f"), "--tables-out", str(d / "g"))
        assert r.returncode in (1, 3) and "Traceback" not in r.stderr
        assert all(p.stat().st_size > 0 for p in (d / "f").glob("*")) if (d / "f").exists() else True
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_two_concurrent_run_alls(tmp_path, reference):
    d = tmp_path / "runs"
    cmd = [sys.executable, "-m", "study", "run-all", "--profile", "quick", "--experiments", "main",
           "--runs-dir", str(d), "--workers", "1"]
    a = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_a, _ = a.communicate(timeout=600)
    out_b, _ = b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0
    ran = [int(line.split()[1]) for out in (out_a, out_b) for line in out.splitlines() if line.startswith("run-all:") and " run," in line]
    assert sum(ran) == len(MAIN)  # each run executed by exactly one of them
    after, ref = records(d), records(reference)
    assert sorted(after) == sorted(ref)
    for key in ref:
        assert comparable(after[key]) == comparable(ref[key]), key


def test_status_cost_totals_every_training_run_once(reference):
    r = study("status", "--profile", "quick", "--runs-dir", str(reference), "--cost")
    assert r.returncode == 0 and "training cost, from the records" in r.stdout
    total = next(line for line in r.stdout.splitlines() if line.startswith("all") and "(all variants)" in line)
    runs = load(reference, "quick").runs(kind="train")
    assert int(total.split()[3]) == len(runs) > 0


def test_corrupt_and_foreign_records_are_reported_and_redone(tmp_path, reference):
    d = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(reference), str(d)], check=True)
    victim = sorted((d / "train").glob("*.json"))[0]
    victim.write_text('{"schema": 1, "kind": "tr')  # a torn write
    (d / "train" / "0123456789abcdef.json").write_text(json.dumps({"hello": "world"}))  # foreign file
    r = study("status", "--profile", "quick", "--runs-dir", str(d))
    assert r.returncode == 3  # the store holds corrupt records
    assert f"corrupt: {victim}: not valid JSON" in r.stderr
    assert "0123456789abcdef.json: missing field 'schema'" in r.stderr
    main_row = next(line for line in r.stdout.splitlines() if line.startswith("main"))
    n = str(len(MAIN))
    assert main_row.split()[1:] == [n, str(len(MAIN) - 1), "0", "0", "0", "0", "1"]
    view = load(d, "quick")
    assert len(view.problems) == 2 and len(view.runs("main")) == len(MAIN) - 1  # corrupt files are never used
    r = study("run-all", "--profile", "quick", "--experiments", "main", "--runs-dir", str(d))
    assert r.returncode == 0 and "corrupt record moved aside and rerun" in r.stderr
    assert comparable(store.read_record(victim)) == comparable(store.read_record(reference / victim.relative_to(d)))
    assert victim.with_name(victim.name + ".corrupt").exists()


def test_an_edited_or_absurd_record_is_corrupt_to_every_reader_and_redone(tmp_path, quick_store):
    """config.task "spiral" on another task's record (it raised AttributeError from every reader) and a digits
    accuracy of 7.5 (it was published as 750.0): status names both and exits 3, figures draw without them, run-all
    moves them aside, says so and makes the runs again."""
    d = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(quick_store[0]), str(d)], check=True)
    by_task = {}
    for p in sorted((d / "train").glob("*.json")):
        by_task.setdefault(json.loads(p.read_text())["config"].get("task"), p)
    renamed, absurd = by_task["dynamics"], by_task["digits"]
    rec = json.loads(renamed.read_text())
    rec["config"]["task"] = "spiral"  # edited in place
    new = renamed
    new.write_text(json.dumps(rec))
    rec = json.loads(absurd.read_text())
    rec["metrics"]["test_acc"] = 7.5
    absurd.write_text(json.dumps(rec))
    r = study("status", "--profile", "quick", "--runs-dir", str(d))
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert f"corrupt: {new}: config.task 'spiral'" in r.stderr
    assert f"corrupt: {absurd}: field 'metrics.test_acc' is 7.5, outside its domain [0, 1]" in r.stderr
    r = study("figures", "--profile", "quick", "--runs-dir", str(d), "--out", str(tmp_path / "f"),
              "--tables-out", str(tmp_path / "t"), "--partial", "--tasks", "dynamics,digits")
    assert "Traceback" not in r.stderr and "750.0" not in (tmp_path / "t" / "digits.tex").read_text()
    r = study("run-all", "--profile", "quick", "--tasks", "dynamics,digits", "--runs-dir", str(d))
    assert r.returncode == 0 and r.stderr.count("corrupt record moved aside and rerun") == 2, r.stderr
    assert new.with_name(new.name + ".corrupt").exists() and absurd.with_name(absurd.name + ".corrupt").exists()
    assert store.read_record(absurd, tasks.record_schema)["metrics"]["test_acc"] <= 1


def _job(variant, seeds, **over):
    from study.config import Protocol, run_config
    from study.variants import variant_config

    proto = Protocol(epochs=2, n_train=256, n_test=200, curve_test_points=100, **over.pop("protocol", {}))
    cfg = run_config(variant_config(variant, **over), proto, 0, "cpu", {"variant": variant})
    cfg.pop("seed")
    return Job("train", cfg, seeds, ["test"])


def test_diverged_runs_are_stored_and_errors_fail_loudly(tmp_path):
    diverging = _job("euler", [0, 1], steps=3, zero_init=False, protocol={"lr": 1e30})
    failing = _job("euler", [0], steps=3)
    failing.config["method"] = "no-such-method"  # raises inside the run
    summary = executor.run_jobs([diverging, failing], tmp_path, workers=2)
    assert len(summary.diverged) == 2 and len(summary.failed) == 1 and summary.done == 3
    rec = store.read_record(summary.failed[0])
    assert rec["status"] == "error" and "no-such-method" in rec["reason"] and "Traceback" in rec["traceback"]
    for p in summary.diverged:
        assert store.read_record(p)["status"] == "diverged"
    again = executor.run_jobs([diverging, failing], tmp_path, workers=1)  # resume: diverged kept, error retried
    assert again.skipped == 2 and again.done == 1 and len(again.failed) == 1


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        jobs = [_job("euler", [0, 1], steps=2), _job("euler", [2], steps=2), _job("tdq-dopri5", [0])]
        summary = executor.run_jobs(jobs, tmp_path, scheduler=cluster.scheduler_address)
    assert summary.done == 4 and not summary.failed
    recs = records(tmp_path)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    assert {r["env"]["torch_threads"] for r in recs.values()} == {1}


def test_quick_profile_end_to_end(quick_store):
    d, seconds, r = quick_store
    assert r.returncode == 0, r.stderr
    r = study("status", "--profile", "quick", "--runs-dir", str(d))
    for line in r.stdout.splitlines()[1:]:
        cols = line.split()
        assert cols[1] == cols[2] and cols[3] == "0", line  # everything done, nothing missing
    r = study("run-all", "--profile", "quick", "--runs-dir", str(d))
    assert re.search(r"^run-all: 0 run,", r.stdout, re.M) and re.search(r"[^0-9]0 to run", r.stdout), r.stdout
    log = (d / "run-all.log.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["profile"] == "quick"  # a run-all that ran nothing is not logged
    entry = json.loads(log[0])
    # Where the wall time went: the alone-measured phase and worker time per kind of job.
    assert 0 < entry["exclusive_seconds"] < entry["seconds"]
    assert {"train", "memory", "timing", "bench"} <= set(entry["job_seconds"])
    assert sum(entry["job_seconds"].values()) > entry["exclusive_seconds"]


def test_run_all_exits_1_and_names_failed_runs(tmp_path, monkeypatch, capsys):
    from study import cli

    failing = _job("euler", [0], steps=2)
    failing.config["method"] = "no-such-method"
    monkeypatch.setattr("study.experiments.plan", lambda profile, names=None: [failing])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run-all", "--profile", "quick", "--runs-dir", str(tmp_path), "--workers", "1"])
    assert exit_info.value.code == 1
    out = capsys.readouterr()
    assert "1 failed" in out.out
    (line,) = [l for l in out.err.splitlines() if l.startswith("failed:")]
    assert "no-such-method" in line and str(tmp_path) in line


def test_probe_records_are_mains_own_models(quick_store):
    """A probe run retrains main's config with main's seed batch: the same model, the same record numbers, plus
    the probe; the learning-rate arm's 0.01 cell is main's runs themselves."""
    from study.report.results import load

    d, _, r = quick_store
    assert r.returncode == 0, r.stderr
    view = load(d, profile="quick")
    main, ctl = view.runs("main"), view.runs("controls")
    for v in ("euler", "resnet"):
        a = main[(main["variant"] == v)].set_index("seed")["test_acc"]
        b = ctl[(ctl["variant"] == v) & (ctl["head"] == "mlp") & (ctl["lift_dim"] == 6)].set_index("seed")
        assert len(b) and (b["test_acc"] == a.loc[b.index]).all() and b["probe.yT_test"].notna().all()
    arm = view.runs("learning-rate")
    assert set(arm[arm["lr"] == 0.01]["hash"]) <= set(main["hash"])


NEW_TASKS = ["--tasks", "dynamics,density,digits", "--experiments", "main"]


@pytest.fixture(scope="module")
def new_tasks_reference(tmp_path_factory):
    """The quick `main` experiments of the tasks beyond the spiral, uninterrupted."""
    d = tmp_path_factory.mktemp("new_tasks")
    r = study("run-all", "--profile", "quick", *NEW_TASKS, "--runs-dir", str(d), "--workers", "2")
    assert r.returncode == 0, r.stderr
    return d


def _started(d, args, **popen) -> subprocess.Popen:
    """A one-worker quick run-all of ``args`` into ``d``, returned once its first record is written (or 120 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "study", "run-all", "--profile", "quick", *args, "--runs-dir", str(d),
                             "--workers", "1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    deadline = time.time() + 120
    while time.time() < deadline and not (d.exists() and list((d / "train").glob("*.json"))):
        time.sleep(0.05)
    return proc


def _resumes_to_the_reference(d, reference, partial: int) -> None:
    r = study("run-all", "--profile", "quick", *NEW_TASKS, "--runs-dir", str(d), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"{partial} already done" in r.stdout
    after, ref = records(d), records(reference)
    assert sorted(after) == sorted(ref)
    for key in ref:
        assert comparable(after[key]) == comparable(ref[key]), key
    assert not list(d.rglob("*.tmp")) and not list(d.rglob("*.lock"))


def test_kill_9_during_the_new_tasks_leaves_no_partial_record_and_resumes_identically(tmp_path, new_tasks_reference):
    d = tmp_path / "runs"
    proc = _started(d, NEW_TASKS, start_new_session=True)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # run-all and its workers at once, mid-run
    proc.wait()
    partial = records(d)  # every record there is complete and valid
    assert 1 <= len(partial) < len(records(new_tasks_reference))
    _resumes_to_the_reference(d, new_tasks_reference, len(partial))


def test_ctrl_c_during_the_new_tasks_stops_cleanly_and_resumes_identically(tmp_path, new_tasks_reference):
    d = tmp_path / "runs"
    proc = _started(d, NEW_TASKS, start_new_session=True, text=True, preexec_fn=interruptible)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and "interrupted: finished runs are stored" in err and "Traceback" not in err
    _resumes_to_the_reference(d, new_tasks_reference, len(records(d)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("task,args", [("density", ["hand-dopri5", "--iterations", "100000"]),
                                       ("dynamics", ["tdq-dopri5", "--iterations", "100000"])])
def test_a_single_new_task_run_interrupted_writes_nothing(tmp_path, task, args, sig):
    proc = subprocess.Popen([sys.executable, "-m", "study", "run", *args, "--task", task, "--runs-dir",
                             str(tmp_path / "runs")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=interruptible)
    try:
        time.sleep(6)  # training, well before its end
        assert proc.poll() is None
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:  # a failed check must not leave a 100,000-iteration run behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and err.strip().splitlines() == ["study: error: interrupted"]
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
