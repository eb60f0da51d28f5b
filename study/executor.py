"""The executor: runs planned jobs in local worker processes or on a Dask cluster.

Every job goes through :func:`execute`, a plain top-level function of plain
data (picklable, runs the same in a local process or on a Dask worker): it
takes the run locks, skips runs whose record appeared meanwhile, runs the
rest, writes one record per run atomically and releases the locks.

Jobs that time things (``memory``, ``timing``, ``bench``) run after all others,
one at a time, so that nothing else competes for the machine while they
measure.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .experiments import Job


def _runner(kind: str):
    from . import analyses

    runners = {
        "train": _run_train,
        "memory": analyses.run_memory,
        "convergence": analyses.run_convergence,
        "gradients": analyses.run_gradients,
        "trajectories": analyses.run_trajectories,
    }
    try:
        from . import bench

        runners.update({"timing": bench.run_timing, "bench": bench.run_bench})
    except ImportError:  # pragma: no cover
        pass
    if kind not in runners:
        raise ValueError(f"no runner for kind {kind!r}")
    return runners[kind]


def _run_train(configs: list[dict]) -> list[dict]:
    from .models import ModelConfig
    from .train import Protocol, train

    first = configs[0]
    return train(ModelConfig.from_dict(first), Protocol.from_dict(first), [c["seed"] for c in configs],
                 device=first.get("device", "cpu"), extra_config={"variant": first["variant"]})


def _limit_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


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


def _status(path: Path) -> str | None:
    try:
        return store.read_record(path)["status"]
    except store.CorruptRecord:
        return None


def execute(kind: str, configs: list[dict], runs_dir: str, force: bool = False) -> dict:
    """Run the missing runs among ``configs`` (all of one job) and store their records.

    Returns ``{"done": [(path, status)], "skipped": [path], "busy": [path], "seconds": s}``.
    An exception inside a run is stored as an ``error`` record with its traceback.
    """
    _limit_threads()
    out = {"done": [], "skipped": [], "busy": [], "seconds": 0.0}
    locks, todo = [], []
    try:
        for cfg in configs:
            path = store.record_path(runs_dir, kind, cfg)
            lock = store.RunLock(path)
            if not lock.acquire():
                out["busy"].append(str(path))
                continue
            if path.exists() and not force and _status(path) in ("ok", "diverged"):
                lock.release()
                out["skipped"].append(str(path))
                continue
            locks.append(lock)
            todo.append((cfg, path))
        if not todo:
            return out
        t0 = time.perf_counter()
        run = _runner(kind)
        if kind == "train":
            groups = [[c for c, _ in todo]]
        else:
            groups = [[c] for c, _ in todo]
        for group in groups:
            try:
                records = run(group) if kind == "train" else run(group[0])
                for cfg, rec in zip(group, records):
                    if rec["config"] != cfg:  # the record must describe exactly the planned run
                        raise RuntimeError(f"{kind} runner returned a record for another config: {rec['config']}")
            except Exception as exc:  # a failed run is a result too; KeyboardInterrupt is not caught
                from .train import error_record

                records = [error_record(cfg, exc) for cfg in group]
            for cfg, rec in zip(group, records):
                path = store.write_atomic(store.record_path(runs_dir, kind, cfg), rec)
                out["done"].append((str(path), rec["status"]))
        out["seconds"] = time.perf_counter() - t0
        return out
    finally:
        for lock in locks:
            lock.release()


def estimated_cost(job: Job) -> float:
    """Relative cost, to start the longest jobs first (units: one dynamics evaluation at batch 128)."""
    c = job.config
    if job.kind not in ("train", "trajectories"):
        return {"gradients": 2e5, "memory": 1e3, "convergence": 1.0}.get(job.kind, 1e3)
    proto = c.get("protocol", c)
    if job.kind == "trajectories":
        from .variants import variant_config

        c = {**c, **variant_config(c["variant"]).__dict__}
    stages = {"euler": 1, "midpoint": 2, "rk4": 4, "rk4-38": 4, "dopri5": 40}.get(c.get("method"), 1)
    per_pass = (c.get("steps", 20) if c.get("method") != "dopri5" else 1) * stages
    factor = 2.0 if c.get("backend") == "torchdiffeq-adjoint" else 1.0
    batches = -(-proto["n_train"] // proto["batch_size"])
    members = len(job.seeds)
    return proto["epochs"] * batches * per_pass * factor * (members if members == 1 else 0.6 * members)


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


def _describe(job: Job) -> str:
    c = job.config
    what = c.get("variant") or c.get("solver") or c.get("train_variant") or job.kind
    extra = ""
    if job.kind == "train":
        keys = [k for k in ("steps", "rtol", "lift_dim", "time_input", "zero_init") if k in c]
        from .variants import variant_config

        base = variant_config(c["variant"]).__dict__
        diffs = [f"{k}={c[k]}" for k in keys if c[k] != base.get(k)]
        extra = (" " + " ".join(diffs)) if diffs else ""
    elif isinstance(c.get("steps"), int):
        extra = f" steps={c['steps']}"
    seeds = [s for s in job.seeds if s is not None]
    s = f" seeds {','.join(map(str, seeds))}" if seeds else ""
    return f"{job.kind} {what}{extra}{s}"


def pending(jobs: list[Job], runs_dir: Path, force: bool, summary: Summary) -> list[Job]:
    """The jobs (narrowed to their missing seeds) that still need to run.

    Runs without a record, with a corrupt one (moved aside) or with an ``error`` record (retried)
    need to run; ``ok`` and ``diverged`` records are results and are kept.
    """
    out = []
    for job in jobs:
        missing = []
        for seed, cfg in zip(job.seeds, job.run_configs()):
            path = store.record_path(runs_dir, job.kind, cfg)
            if path.exists() and not force:
                try:
                    if store.read_record(path)["status"] != "error":  # a failed run is retried
                        summary.skipped += 1
                        continue
                except store.CorruptRecord as exc:
                    summary.quarantined.append(f"{path}: {exc}")
                    store.quarantine(path)
            missing.append(seed)
        if missing:
            out.append(Job(job.kind, job.config, missing, job.experiments))
    return out


def run_jobs(jobs: list[Job], runs_dir: Path, workers: int = 1, scheduler: str | None = None,
             force: bool = False, log=None) -> Summary:
    """Run ``jobs``; ``log(event, job, result)`` is told about each finished job."""
    runs_dir = Path(runs_dir)
    summary = Summary()
    t_start = time.perf_counter()
    todo = pending(jobs, runs_dir, force, summary)
    parallel = sorted((j for j in todo if not j.exclusive), key=estimated_cost, reverse=True)
    exclusive = [j for j in todo if j.exclusive]

    client = pool = None
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask: pip install 'study[dask]'") from None
        client = Client(scheduler, timeout="20s")
        pool = client.get_executor(pure=False)  # pure=False: identical arguments are still separate tasks
    else:
        import multiprocessing as mp

        pool = cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn"),
                                      initializer=_die_with_parent)

    def submit(job: Job):
        return pool.submit(execute, job.kind, job.run_configs(), str(runs_dir), force)

    def absorb(job: Job, fut) -> list[Job]:
        """Record a finished job; return it again (narrowed) if some runs were busy elsewhere."""
        try:
            res = fut.result()
        except Exception as exc:  # the worker itself died (killed, out of memory) or Dask failed
            summary.failed.append(f"{_describe(job)}: worker failed: {type(exc).__name__}: {exc}")
            if log:
                log("failed", job, None)
            return []
        if res["done"]:
            summary.job_seconds[job.kind] = summary.job_seconds.get(job.kind, 0.0) + res["seconds"]
        for path, status in res["done"]:
            summary.done += 1
            if status == "diverged":
                summary.diverged.append(path)
            elif status == "error":
                summary.failed.append(path)
        summary.skipped += len(res["skipped"])
        if log:
            log("done", job, res)
        if res["busy"]:
            busy = set(res["busy"])
            seeds = [s for s, c in zip(job.seeds, job.run_configs())
                     if str(store.record_path(runs_dir, job.kind, c)) in busy]
            return [Job(job.kind, job.config, seeds, job.experiments)]
        return []

    try:
        retry: list[Job] = []
        futures = {submit(j): j for j in parallel}
        for fut in cf.as_completed(futures):
            retry += absorb(futures[fut], fut)
        t_exclusive = time.perf_counter()
        for job in exclusive:
            fut = submit(job)
            retry += absorb(job, fut)
        summary.exclusive_seconds = time.perf_counter() - t_exclusive
        while retry:  # runs another process is executing: wait for its records (or its death)
            time.sleep(2.0)
            again = []
            for job in pending(retry, runs_dir, force=False, summary=summary):
                again += absorb(job, submit(job))
            retry = again
    except KeyboardInterrupt:
        if isinstance(pool, cf.ProcessPoolExecutor):
            for p in list(getattr(pool, "_processes", {}).values()):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if client is not None:
            client.close()
        else:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - t_start
    return summary


def failure_detail(path: str) -> str:
    try:
        rec = store.read_record(path)
        return rec.get("reason") or "error"
    except store.CorruptRecord as exc:
        return str(exc)


