"""The executor: runs planned jobs in local worker processes or on a Dask cluster.

Every job goes through :func:`execute`, a plain top-level function of plain
data (picklable, runs the same in a local process or on a Dask worker): it
takes the run locks, skips runs whose record appeared meanwhile, runs the
rest, writes one record per run atomically and releases the locks.

Jobs whose runner measures time (``ALONE``: ``memory``, ``timing``, ``bench``)
run after all others, one at a time, so that nothing else competes for the machine while they
measure.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import records, runners, store, tasks
from .experiments import Job


def _limit_threads() -> None:
    """A worker's setup: one torch thread, and no warning for what the study does on purpose."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    quiet_warnings()


def quiet_warnings() -> None:
    """The dynamics' NFE counters are also torchdiffeq step callbacks, which its fixed-grid solvers
    do not call; torchdiffeq warns about that once per solve."""
    import warnings

    warnings.filterwarnings("ignore", message=r"Solver '.*' does not support callbacks")


def _die_with_parent() -> None:
    """Local workers die when the run-all process does (kill -9 included); their locks go with them."""
    _limit_threads()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # pragma: no cover - best effort
            pass


def _kept(path: Path, record: dict, force_since: float | None) -> bool:
    """A record is a result to keep if it is ``ok`` or ``diverged`` (``error`` runs are retried) and, when
    forcing, was written at or after ``force_since`` (so that two ``--force`` runs redo each record once)."""
    return record["status"] in ("ok", "diverged") and (force_since is None or os.lstat(path).st_mtime >= force_since)


def is_result(path: Path, force_since: float | None = None) -> bool:
    """Whether ``path`` holds a valid, well-placed record to keep (see :func:`_kept`)."""
    try:
        return _kept(path, store.read_placed(path, tasks.record_schema), force_since)
    except (store.CorruptRecord, OSError):
        return False


def _records(runner, group: list[dict]) -> list[dict]:
    """The runner's records of ``group``, or ``error`` records if it raised (KeyboardInterrupt is not caught)."""
    try:
        recs = runner.run(group)
        for cfg, rec in zip(group, recs, strict=True):
            if rec["config"] != cfg:  # the record must describe exactly the planned run
                raise RuntimeError(f"{runner.KIND} runner returned a record for another config: {rec['config']}")
        return recs
    except Exception as exc:  # a failed run is a result too
        from .provenance import environment

        env = environment(group[0].get("device", "cpu"))
        return [records.error(cfg, exc, env) for cfg in group]


def execute(kind: str, configs: list[dict], runs_dir: str, force_since: float | None = None) -> dict:
    """Run the missing runs among ``configs`` (all of one job) and store their records.

    Returns ``{"done": [(path, status)], "skipped": [path], "busy": [path], "unwritten": [(path, why)],
    "seconds": s}``.  An exception inside a run is stored as an ``error`` record with its traceback; a record
    that cannot be written (a full disk) is reported, never half-written.
    """
    _limit_threads()
    out = {"done": [], "skipped": [], "busy": [], "unwritten": [], "seconds": 0.0}
    locks, todo = [], []
    try:
        for cfg in configs:
            path = store.record_path(runs_dir, cfg["kind"], cfg)  # a training job's transfer runs are another kind
            lock = store.RunLock(path)
            if not lock.acquire():
                out["busy"].append(str(path))
                continue
            if is_result(path, force_since):
                lock.release()
                out["skipped"].append(str(path))
                continue
            locks.append(lock)
            todo.append((cfg, path))
        if not todo:
            return out
        t0 = time.perf_counter()
        runner = runners.get(kind)
        configs = [c for c, _ in todo]
        for group in ([configs] if runner.BATCHED else [[c] for c in configs]):
            for cfg, rec in zip(group, _records(runner, group)):
                path = store.record_path(runs_dir, cfg["kind"], cfg)
                try:
                    store.write_atomic(path, rec)
                except (OSError, store.StoreError) as exc:
                    out["unwritten"].append((str(path), str(getattr(exc, 'strerror', None) or exc)))
                    continue
                out["done"].append((str(path), rec["status"]))
        out["seconds"] = time.perf_counter() - t0
        return out
    finally:
        for lock in locks:
            lock.release()


def estimated_cost(job: Job) -> float:
    """Relative cost, to start the longest jobs first (the job's runner estimates it)."""
    return runners.get(job.kind).cost(job.config, len(job.seeds))


def alone(job: Job) -> bool:
    """Jobs that time things run alone, after everything else."""
    return runners.get(job.kind).ALONE


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    diverged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exclusive_seconds: float = 0.0  # wall time of the jobs that measure alone (after all others)
    job_seconds: dict = field(default_factory=dict)  # kind -> summed seconds of its jobs (worker time)
    # experiment (a job's first) -> kind -> seconds: what a later rerun of the same experiment supersedes
    experiment_seconds: dict = field(default_factory=dict)
    alone_kinds: set = field(default_factory=set)  # kinds whose jobs ran alone
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM; the finished runs are stored
    missing: int = 0  # runs without a record to keep, as :func:`pending` found them


def pending(jobs: list[Job], runs_dir: Path, force_since: float | None, summary: Summary) -> list[Job]:
    """The jobs (narrowed to their missing seeds) that still need to run.

    Runs without a record, with a corrupt or foreign one (moved aside), with an ``error`` record (retried)
    or, when forcing, with a record older than ``force_since`` need to run; ``ok`` and ``diverged`` records
    are results and are kept.
    """
    out = []
    for job in jobs:
        missing = []
        for seed in job.seeds:
            kept, configs = 0, job.seed_configs(seed)
            for cfg in configs:  # its run and the transfer runs of its model
                path = store.record_path(runs_dir, cfg["kind"], cfg)
                if os.path.lexists(path):
                    try:
                        if _kept(path, store.read_placed(path, tasks.record_schema), force_since):
                            kept += 1
                            continue
                    except store.CorruptRecord as exc:
                        summary.quarantined.append(f"{path}: {exc}")
                        store.quarantine(path)
            if kept < len(configs):
                missing.append(seed)  # its kept runs are skipped, and counted, by the job that runs it
                summary.missing += len(configs) - kept
            else:
                summary.skipped += kept
        if missing:
            out.append(job.narrowed(missing))
    return out


def _pool(workers: int, scheduler: str | None):
    """``(executor, dask client or None)``: local spawned processes, or Dask's futures executor."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask: pip install 'study[dask]'") from None
        client = Client(scheduler, timeout="20s")
        return client.get_executor(pure=False), client  # pure=False: identical arguments are still separate tasks
    import multiprocessing as mp

    return cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn"),
                                  initializer=_die_with_parent), None


class _Run:
    """One ``run_jobs`` call: submits jobs, absorbs their results into the summary."""

    def __init__(self, pool, runs_dir: Path, force_since: float | None, summary: Summary, log):
        self.pool, self.runs_dir, self.force_since, self.summary, self.log = pool, runs_dir, force_since, summary, log

    def submit(self, job: Job):
        return self.pool.submit(execute, job.kind, job.run_configs(), str(self.runs_dir), self.force_since)

    def absorb(self, job: Job, fut) -> list[Job]:
        """Record a finished job; return it again (narrowed) if some runs were busy elsewhere."""
        summary = self.summary
        try:
            res = fut.result()
        except Exception as exc:  # the worker itself died (killed, out of memory) or Dask failed
            summary.failed.append(f"{job.describe()}: worker failed: {type(exc).__name__}: {exc}")
            if self.log:
                self.log("failed", job, None)
            return []
        if res["done"]:
            summary.job_seconds[job.kind] = summary.job_seconds.get(job.kind, 0.0) + res["seconds"]
            per = summary.experiment_seconds.setdefault(job.experiments[0] if job.experiments else "", {})
            per[job.kind] = per.get(job.kind, 0.0) + res["seconds"]
            if alone(job):
                summary.alone_kinds.add(job.kind)
        for path, why in res["unwritten"]:
            summary.failed.append(f"{path}: {why}")
        for path, status in res["done"]:
            summary.done += 1
            if status == "diverged":
                summary.diverged.append(path)
            elif status == "error":
                summary.failed.append(path)
        summary.skipped += len(res["skipped"])
        if self.log:
            self.log("done", job, res)
        if not res["busy"]:
            return []
        busy = set(res["busy"])
        return [job.narrowed([s for s in job.seeds if any(str(store.record_path(self.runs_dir, c["kind"], c)) in busy
                                                          for c in job.seed_configs(s))])]

    def all(self, todo: list[Job]) -> None:
        """Parallel jobs longest first, then the jobs that measure alone, then the runs that were busy."""
        parallel = sorted((j for j in todo if not alone(j)), key=estimated_cost, reverse=True)
        retry: list[Job] = []
        futures = {self.submit(j): j for j in parallel}
        for fut in cf.as_completed(futures):
            retry += self.absorb(futures[fut], fut)
        t_alone = time.perf_counter()
        for job in (j for j in todo if alone(j)):
            retry += self.absorb(job, self.submit(job))
        self.summary.exclusive_seconds = time.perf_counter() - t_alone
        while retry:  # runs another process is executing: wait for its records (or its death)
            time.sleep(2.0)
            again = []
            for job in pending(retry, self.runs_dir, self.force_since, self.summary):
                again += self.absorb(job, self.submit(job))
            retry = again


def run_jobs(jobs: list[Job], runs_dir: Path, workers: int = 1, scheduler: str | None = None,
             force_since: float | None = None, log=None) -> Summary:
    """Run ``jobs``; ``log(event, job, result)`` is told about each finished job.  ``force_since``: rerun
    records written before this time (``time.time()``) too, as ``run-all --force`` does."""
    runs_dir = Path(runs_dir)
    summary = Summary()
    t_start = time.perf_counter()
    todo = pending(jobs, runs_dir, force_since, summary)
    pool, client = _pool(workers, scheduler)
    try:
        _Run(pool, runs_dir, force_since, summary, log).all(todo)
    except KeyboardInterrupt as exc:
        if isinstance(pool, cf.ProcessPoolExecutor):
            for p in list(getattr(pool, "_processes", {}).values()):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        summary.seconds, summary.interrupted = time.perf_counter() - t_start, True
        exc.summary = summary  # what finished before the interruption, for the store's log
        raise
    finally:
        if client is not None:
            client.close()
        else:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - t_start
    return summary


def log_invocation(runs_dir: Path, profile, names, workers, scheduler, summary: Summary) -> str | None:
    """Append one ``run-all`` invocation that ran something, or was interrupted while running, to the store's
    log (the profile's wall time is the sum of its entries); returns what went wrong, if anything."""
    import platform

    entry = {"profile": profile, "experiments": names, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "seconds": round(summary.seconds, 1), "done": summary.done, "skipped": summary.skipped,
             "diverged": len(summary.diverged), "failed": len(summary.failed), "workers": workers,
             "scheduler": scheduler, "machine": platform.machine(), "cpu_count": os.cpu_count(),
             "exclusive_seconds": round(summary.exclusive_seconds, 1),
             "job_seconds": {k: round(v, 1) for k, v in sorted(summary.job_seconds.items())},
             "experiment_seconds": {x: {k: round(v, 1) for k, v in sorted(kinds.items())}
                                    for x, kinds in sorted(summary.experiment_seconds.items())},
             "alone_kinds": sorted(summary.alone_kinds),
             **({"interrupted": True} if summary.interrupted else {})}
    if not summary.done and not summary.interrupted:
        return None
    try:
        store.append_log(runs_dir, entry)
    except OSError as exc:
        return f"could not append to {Path(runs_dir) / store.EXECUTION_LOG}: {exc.strerror or exc}"
    except store.StoreError as exc:  # it became a FIFO or a link while the runs ran: the runs are stored
        return f"could not append to the execution log: {exc}"
    return None


def failure_detail(path: str) -> str:
    try:
        rec = store.read_record(path, tasks.record_schema)
        return rec.get("reason") or "error"
    except store.CorruptRecord as exc:
        return str(exc)


