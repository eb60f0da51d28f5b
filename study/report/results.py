"""The pandas view of the run store: the only way figures, tables and claims read runs.

``view = load("runs", profile="full")`` scans the store once (validating every
record; corrupt files are listed in ``view.problems``, never used) and offers
tidy frames:

* ``view.runs(experiment=None, kind=None)``: one row per run, config columns
  (nested config dicts flattened as ``protocol.epochs``), scalar metrics, status;
* ``view.curves(experiment=None)``: long form, one row per (run, epoch);
* ``view.convergence()``, ``view.gradients()``, ``view.adjoint()``: one row per measured point;
* ``view.trajectories()``, ``view.regions()``: trained models' states and decision regions;
* ``view.bench()``: the bench table; ``view.executions()``: the ``run-all`` log.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import store, tasks
from ..config import LATER_DEFAULTS, Protocol
from ..experiments import engine_free_hashes, experiment_hashes, without_engine
from .order import part_order as _part_order, solver_order as _solver_order
from .outcome import MissingRuns, Outcome, attempt, failure, raised_at  # noqa: F401 - the report's items' outcomes


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def _loss_summary(record: dict) -> dict:
    """A training run's lowest and last epoch loss (what the failure rule reads)."""
    losses = [v for v in (record.get("curves") or {}).get("loss", []) if v is not None]
    return {"loss_min": min(losses) if losses else float("nan"), "loss_last": losses[-1] if losses else float("nan")}


def _train_hash(transfer_config: dict) -> str:
    """The hash of the training run a transfer run's model comes from."""
    return store.config_hash({**transfer_config["train"], "seed": transfer_config["seed"]})


@dataclass
class View:
    records: dict[str, dict]  # hash -> record
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)
    membership: dict[str, set[str]] = field(default_factory=dict)  # experiment -> hashes
    execution_log: list[dict] = field(default_factory=list)  # run-all invocations (run-all.log.jsonl)
    profile: str = "full"
    runs_dir: str = "runs"
    engine_free: dict[str, str] = field(default_factory=dict)  # planned hash -> hash without engine versions

    def stale(self) -> set[str]:
        """Planned runs without a record whose config, but for its engine versions, has one: made by older code."""
        have = {store.config_hash(without_engine(r["config"])) for r in self.records.values()}
        return {h for h, free in self.engine_free.items() if h not in self.records and free in have}

    def progress(self, experiment: str) -> tuple[int, int]:
        """``(done, planned)`` runs of an experiment; done means an ``ok`` or ``diverged`` record."""
        hashes = self.membership.get(experiment, set())
        done = sum(1 for h in hashes if h in self.records and self.records[h]["status"] in ("ok", "diverged"))
        return done, len(hashes)

    def complete(self, experiment: str) -> bool:
        done, planned = self.progress(experiment)
        return planned > 0 and done == planned

    def command(self, experiments: list[str]) -> str:
        """The exact ``run-all`` command that completes ``experiments`` in this view's store and profile, quoted
        for a POSIX shell (a runs directory with a space or a quote pastes as one argument)."""
        args = ["study", "run-all", "--experiments", ",".join(experiments)]
        if self.profile != "full":
            args += ["--profile", self.profile]
        if Path(self.runs_dir) != Path("runs"):
            args += ["--runs-dir", str(self.runs_dir)]
        return " ".join(shlex.quote(a) for a in args)

    def missing(self, experiment: str) -> MissingRuns:
        done, planned = self.progress(experiment)
        return MissingRuns(experiment, done, planned, self.command([experiment]))

    def _select(self, experiment: str | None, kind: str | None = None) -> list[tuple[str, dict]]:
        if experiment is not None and experiment not in self.membership:
            raise KeyError(f"unknown experiment {experiment!r}")
        chosen = self.membership[experiment] if experiment else set(self.records)
        return [(h, r) for h, r in self.records.items() if h in chosen and (kind is None or r["kind"] == kind)]

    def records_of(self, experiment: str, kind: str) -> list[dict]:
        """The finished records of ``kind`` in ``experiment``."""
        return [r for _, r in self._select(experiment, kind) if r["status"] == "ok"]

    def experiments_of(self, h: str) -> list[str]:
        return [name for name, hashes in self.membership.items() if h in hashes]

    def runs(self, experiment: str | None = None, kind: str | None = None) -> pd.DataFrame:
        rows = []
        for h, r in self._select(experiment, kind):
            row = {"hash": h, "kind": r["kind"], "status": r["status"], "reason": r.get("reason"),
                   "experiments": ",".join(self.experiments_of(h)), "task": tasks.name_of(r["config"])}
            row.update(_flatten(r["config"]))
            row.update(_flatten(r["metrics"]))  # nested metrics (the probe's) as "probe.yT_test"
            if r["kind"] == "train":
                row.update(_loss_summary(r))
            row.update({f"timing.{k}": v for k, v in (r.get("timing") or {}).items() if not isinstance(v, (list, dict))})
            row["gpu"] = r["env"].get("gpu")
            rows.append(row)
        df = pd.DataFrame(rows)
        if not rows:
            return df
        for col, default in LATER_DEFAULTS.items():  # options added later: absent from older configs
            df[col] = df[col].fillna(default) if col in df else default
        df["probe"] = df["probe"].fillna(False).astype(bool) if "probe" in df else False
        return df.sort_values([c for c in ("kind", "variant", "seed") if c in df]).reset_index(drop=True)

    def curves(self, experiment: str | None = None) -> pd.DataFrame:
        frames = []
        for h, r in self._select(experiment, "train"):
            c = r.get("curves") or {}
            if not c.get("epoch"):
                continue
            df = pd.DataFrame({k: c[k] for k in ("epoch", "loss", "train_acc", "nfe_forward", "nfe_backward",
                                                  "accepted_steps", "rejected_steps")})
            test = pd.Series(c["test_acc"], index=c["test_epoch"], dtype=float)
            df["test_acc"] = df["epoch"].map(test)
            df["hash"] = h
            df["status"] = r["status"]
            for k in ("variant", "seed", "backend", "method", "steps", "rtol", "adjoint_norm", "lift_dim",
                      "time_input", "zero_init", "model"):
                df[k] = r["config"].get(k)
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def task_curves(self, experiment: str) -> pd.DataFrame:
        """The training curves of a task: one row per (run, curve point), at the ``iteration`` it was taken (a task
        trained by epochs, the spiral, has its curves per epoch: its iteration is the epoch times its batches)."""
        frames = []
        for h, r in self._select(experiment, "train"):
            c = r.get("curves") or {}
            if not c.get("iteration") and c.get("epoch"):
                batches = Protocol.from_dict(r["config"]).batches
                c = {**c, "iteration": [e * batches for e in c["epoch"]]}
            if not c.get("iteration"):
                continue
            df = pd.DataFrame({k: v for k, v in c.items() if isinstance(v, list) and len(v) == len(c["iteration"])})
            df["hash"], df["status"] = h, r["status"]
            for k in ("variant", "seed", "backend", "method", "task"):
                df[k] = r["config"].get(k)
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def transfer(self, experiment: str) -> pd.DataFrame:
        """Each trained model scored by each transfer solver: one row per (run, solver) with the metric's name and
        value, the evaluations, and the trained variant, seed and task (the ``transfer`` records of the models
        that trained; ``hash`` is the training run's)."""
        rows = []
        for _, r in sorted(self._select(experiment, "transfer"), key=lambda hr: (_train_hash(hr[1]["config"]),
                                                                                 _solver_order(hr[1]["config"]["solver"]))):
            c, m = r["config"], r["metrics"]
            if r["status"] != "ok" or m["trained_status"] != "ok":
                continue
            metric = next(k for k in m if k not in ("solver", "nfe", "trained_status"))
            rows.append({"hash": _train_hash(c), "variant": c["train"]["variant"], "seed": c["seed"],
                         "task": tasks.name_of(c["train"]), "status": m["trained_status"], "solver": m["solver"],
                         "metric": metric, "value": m[metric], "nfe": m["nfe"]})
        return pd.DataFrame(rows)

    def workprecision(self, experiment: str) -> pd.DataFrame:
        """The work-precision rows: one per (field, solution or gradient, backend, method, steps or tolerance), each
        field's rows together, its parts in :func:`_part_order`."""
        rows = []
        for h, r in self._select(experiment, "workprecision"):
            fields = r["config"]["fields"]
            for i, row in enumerate(r["metrics"]["rows"]):
                key = (fields.index(row["field"]) if row.get("field") in fields else len(fields),
                       *_part_order(r["config"]["measure"]), i)
                rows.append((key, {"hash": h, "task": tasks.name_of(r["config"]),
                                   "train_variant": r["config"]["train_variant"], "steps": None, "tol": None,
                                   "nfe_backward": None, **row}))
        return pd.DataFrame([row for _, row in sorted(rows, key=lambda kr: kr[0])])

    def workprecision_reference_errors(self, experiment: str) -> list[dict]:
        """Each work-precision record's reference gradient error estimate per field (``{field: error}``)."""
        return [r["metrics"].get("reference_gradient_error") or {} for _, r in self._select(experiment, "workprecision")]

    def figure_data(self, experiment: str) -> list[dict]:
        """The ``data`` sections of an experiment's training records, with their variant, seed and status."""
        return [{"variant": r["config"]["variant"], "seed": r["config"]["seed"], "status": r["status"], **r["data"]}
                for _, r in self._select(experiment, "train") if r.get("data")]

    def adjoint(self) -> pd.DataFrame:
        """The adjoint diagnostics: one row per measured (model, epoch, batch, quantity)."""
        rows = []
        for h, r in self._select("adjoint", "adjoint"):
            c = r["config"]
            for row in r["metrics"]["rows"]:
                rows.append({"hash": h, "train_variant": c["train_variant"], "seed": c["seed"], "status": r["status"],
                             "test_acc": r["metrics"].get("test_acc"), **row})
        return pd.DataFrame(rows)

    def convergence(self) -> pd.DataFrame:
        rows = []
        for h, r in self._select("convergence", "convergence"):
            m = r["metrics"]
            for n, hh, e in zip(m["steps"], m["h"], m["error"]):
                rows.append({"solver": r["config"]["solver"], "steps": n, "h": hh, "error": e, "slope": m["slope"],
                             "order": m["order"], "tableau": m["tableau"]})
        return pd.DataFrame(rows)

    def gradients(self) -> pd.DataFrame:
        rows = []
        for h, r in self._select("gradients", "gradients"):
            for row in r["metrics"]["rows"]:
                rows.append({"hash": h, "seed": r["config"]["seed"], **row})
        return pd.DataFrame(rows)

    def _trained_models(self):
        """(record, its saved data) of every successful trajectories run."""
        for _, r in self._select("trajectories", "trajectories"):
            if r.get("data") and r["status"] == "ok":
                yield r, r["data"]

    def trajectories(self) -> pd.DataFrame:
        """Long form: variant, time, point, label, x0, x1 (the input) and s0..s{d-1} (the state)."""
        frames = []
        for r, d in self._trained_models():
            states = np.asarray(d["states"], dtype=float)  # (times, points, dim)
            T, P, D = states.shape
            df = pd.DataFrame(states.reshape(T * P, D), columns=[f"s{i}" for i in range(D)])
            df.insert(0, "point", np.tile(np.arange(P), T))
            df.insert(0, "time", np.repeat(np.asarray(d["times"]), P))
            df.insert(0, "variant", r["config"]["variant"])
            df["label"] = np.tile(np.asarray(d["labels"]), T)
            inputs = np.asarray(d["inputs"])
            df["x0"], df["x1"] = np.tile(inputs[:, 0], T), np.tile(inputs[:, 1], T)
            df["test_acc"] = r["metrics"]["test_acc"]
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def regions(self) -> pd.DataFrame:
        """Long form: variant, x, y, prob_class1 on the saved grid."""
        frames = []
        for r, d in self._trained_models():
            g = np.asarray(d["grid"])
            gx, gy = np.meshgrid(g, g)
            frames.append(pd.DataFrame({"variant": r["config"]["variant"], "x": gx.ravel(), "y": gy.ravel(),
                                        "prob_class1": np.asarray(d["prob_class1"]).ravel(),
                                        "test_acc": r["metrics"]["test_acc"]}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def bench(self) -> pd.DataFrame:
        """The bench table of the profile's ``bench`` run: one row per (solver, mode)."""
        ok = [r for _, r in self._select("bench", "bench") if r["status"] == "ok"]
        if not ok:
            return pd.DataFrame()
        rec = min(ok, key=lambda r: store.config_hash(r["config"]))  # the profile's bench config: one record
        return pd.DataFrame(rec["metrics"]["rows"]).assign(matmul_gflops_128=rec["metrics"]["matmul_gflops_128"],
                                                            suite=rec["config"].get("suite", 1))

    def status(self) -> pd.DataFrame:
        """Per experiment: runs planned, done (ok or diverged), missing, diverged, failed, corrupt."""
        corrupt, stale = {Path(p).stem for p, _ in self.problems}, self.stale()
        rows = []
        for name, hashes in self.membership.items():
            st = [self.records[h]["status"] if h in self.records else
                  ("corrupt" if h in corrupt else "stale" if h in stale else "missing") for h in hashes]
            rows.append({"experiment": name, "runs": len(st), "done": sum(s in ("ok", "diverged") for s in st),
                         "missing": st.count("missing") + st.count("stale"), "stale": st.count("stale"),
                         "diverged": st.count("diverged"), "failed": st.count("error"), "corrupt": st.count("corrupt")})
        return pd.DataFrame(rows, columns=["experiment", "runs", "done", "missing", "stale", "diverged", "failed", "corrupt"])

    def costs(self, shared: str = "each") -> pd.DataFrame:
        """What the profile's training runs cost, from their records: one row per (experiment, variant) with the
        runs, the seeds trained together in one job (``members``), and worker-seconds in all and per run (a
        batched job's wall time shared among its members).  Times are as measured, usually with another run
        beside them on the machine.  A run several experiments share counts in each (``shared="each"``) or in the
        first of them in the profile's order (``"first"``: the experiments' rows then add up to ``all``, which
        counts every run once)."""
        rows = []

        def row(experiment: str, h: str, r: dict) -> dict:
            t, c = r.get("timing") or {}, r["config"]
            members = t.get("ensemble_members", 1)
            wall = t.get("ensemble_wall_time_s")
            seconds = wall / members if wall is not None else r["metrics"].get("wall_time_s", float("nan"))
            return {"experiment": experiment, "variant": c.get("variant"), "status": r["status"],
                    "members": members, "seconds": seconds}

        if shared not in ("each", "first"):
            raise ValueError(f"shared must be 'each' or 'first', got {shared!r}")
        counted: set[str] = set()
        for name, hashes in self.membership.items():
            mine = [h for h in sorted(hashes) if h in self.records and self.records[h]["kind"] == "train"
                    and (shared == "each" or h not in counted)]
            counted.update(mine)
            rows += [row(name, h, self.records[h]) for h in mine]
        every = set().union(*self.membership.values()) if self.membership else set()
        rows += [row("all", h, self.records[h]) for h in every if h in self.records and self.records[h]["kind"] == "train"]
        df = pd.DataFrame(rows, columns=["experiment", "variant", "status", "members", "seconds"])
        if df.empty:
            return df
        out = df.groupby(["experiment", "variant"], sort=False).agg(
            runs=("seconds", "size"), diverged=("status", lambda s: int((s == "diverged").sum())),
            members=("members", "max"), worker_seconds=("seconds", "sum"), per_run=("seconds", "median")).reset_index()
        order = {n: i for i, n in enumerate([*self.membership, "all"])}
        return out.sort_values(["experiment", "worker_seconds"], key=lambda c: c.map(order) if c.name == "experiment"
                               else -c).reset_index(drop=True)

    def job_seconds(self, exclude: str | None = None) -> dict[str, float]:
        """Worker-seconds per record kind (but ``exclude``) from the ``run-all`` log: the cost of the runs whose
        records carry no time of their own.  An invocation that logs its seconds per experiment supersedes what
        earlier invocations spent on the same experiment and kind (a rerun replaced those records); older
        entries, which log only per kind, count unless a later per-experiment entry covers every experiment of
        theirs that has records of that kind."""
        kinds_of: dict[str, set] = {}
        for name, hashes in self.membership.items():
            kinds_of[name] = {self.records[h]["kind"] for h in hashes if h in self.records}
        seen: set[tuple[str, str]] = set()
        total: dict[str, float] = {}

        def add(kind, sec):
            if kind != exclude and isinstance(sec, (int, float)):
                total[kind] = total.get(kind, 0.0) + sec

        for entry in reversed(self.execution_log):
            per = entry.get("experiment_seconds")
            if isinstance(per, dict):
                for name, kinds in per.items():
                    for kind, sec in (kinds.items() if isinstance(kinds, dict) else ()):
                        if (name, kind) not in seen:
                            add(kind, sec)
                seen |= {(n, k) for n, kinds in per.items() if isinstance(kinds, dict) for k in kinds}
                continue
            jobs = entry.get("job_seconds")
            names = entry.get("experiments") or list(self.membership)
            for kind, sec in (jobs.items() if isinstance(jobs, dict) else ()):  # older entries may lack it
                covered = {n for n in names if kind in kinds_of.get(n, ())}
                if not (covered and all((n, kind) in seen for n in covered)):
                    add(kind, sec)
        return total

    def alone_kinds(self) -> set[str] | None:
        """The record kinds whose jobs ran alone, as the log names them (None: no entry names them)."""
        named = [e["alone_kinds"] for e in self.execution_log if isinstance(e.get("alone_kinds"), list)]
        return set().union(*map(set, named)) if named else None

    def exclusive_seconds(self) -> float:
        """Seconds the ``run-all`` log's invocations spent on the runs that measure alone (reruns included)."""
        return sum(e.get("exclusive_seconds") or 0.0 for e in self.execution_log
                   if isinstance(e.get("exclusive_seconds"), (int, float)))

    def scratch_hours(self, workers: int = 2) -> tuple[float, float, float, float]:
        """``(hours, training, other, alone)``: what the profile costs from scratch on ``workers`` workers, the
        training runs once each (worker-seconds from their records) and the runs that do not train from the
        ``run-all`` log (:meth:`job_seconds`; entries too old to say which experiments they reran count, so the
        estimate may err long), of which ``alone`` run with nothing beside them.  Jobs run longest first, so the workers stay busy to the end."""
        first = self.costs(shared="first")
        train = float(first[first.experiment == "all"].worker_seconds.sum()) if not first.empty else 0.0
        per_kind = self.job_seconds(exclude="train")
        other, kinds = sum(per_kind.values()), self.alone_kinds()
        alone = (sum(v for k, v in per_kind.items() if k in kinds) if kinds is not None
                 else min(self.exclusive_seconds(), other))
        return ((train + other - alone) / workers + alone) / 3600, train, other, alone

    def executions(self) -> pd.DataFrame:
        """One row per ``run-all`` invocation: profile, seconds, runs done, skipped, failed."""
        return pd.DataFrame(self.execution_log)


def load(runs_dir: Path | str = "runs", profile: str = "full") -> View:
    """Scan and validate the store; experiment membership is that of ``profile``."""
    records, problems = {}, []
    if Path(runs_dir).exists():
        for path, rec, problem in store.scan(runs_dir, tasks.record_schema):
            if problem:
                problems.append((str(path), problem))
            elif path.parent.name == rec["kind"]:  # runs/<kind>/<hash>.json; `study run`'s single/ is not the store
                records[path.stem] = rec
    log, log_problems = store.read_log(runs_dir)
    return View(records, problems + log_problems, experiment_hashes(profile), log, profile, str(runs_dir),
                engine_free_hashes(profile))
