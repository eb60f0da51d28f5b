"""The experiment registry: every experiment of the study as plain data.

An experiment is a name and a list of runs.  Each run is a config dict (no
code per run): its ``kind`` says which runner executes it (``train``,
``memory``, ``convergence``, ``gradients``, ``trajectories``, ``timing``,
``bench``: a module of ``study.runners``), the rest says what to run.  A run's record lives at
``runs/<kind>/<hash of its config>.json``, so a run that two experiments share
(the 20-step Euler of ``main`` and ``steps``) is one record.

Two profiles: ``full`` (what the paper needs) and ``quick`` (the same
experiments and code paths, tiny; CI and smoke tests use it).

Experiments belong to tasks (:mod:`study.tasks`).  The spiral's, made before there were tasks, keep their
plain names (``main``, ``steps``, ...); every other task's are named ``<task>/<experiment>``.  Every task
has ``main`` (each applicable variant at the profile's seeds), ``transfer`` (each trained model solved by
every solver of :func:`transfer_solvers`) and ``work-precision`` (the ``workprecision`` kind).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .config import EXPLICIT_ENGINES, FIXED_METHODS, METHODS, Protocol, all_engines, engine_label, run_config  # noqa: F401
from .store import config_hash
from . import tasks, variants
from .profiles import REMEDY_ARMS, SPEC, TASK_SPEC  # noqa: F401 - the profiles, as plain data (REMEDY_ARMS re-exported)
from .variants import variant_config

PROFILES = ("full", "quick")

TRANSFER_TOLERANCES = [1e-3, 1e-6]  # dopri5 at the training tolerance and tighter; then the float64 reference
TRANSFER_REFERENCE = {"method": "dopri5", "tol": 1e-8, "dtype": "float64"}
WP_REFERENCE_TOL = 1e-12
WP_REFERENCE_STEPS = 2048  # the reference gradient's RK4 grid (a profile's "wp" may set its own)
def wp_solvers(implicit: bool = False) -> list[tuple[str, str]]:
    """The solutions work-precision measures: every method of the method table, on the hand engine where it has a
    tableau and through torchdiffeq where it has a name there (a new method adds its own records); with
    ``implicit`` (a stiff task) the implicit methods too."""
    return ([("hand", n) for n, m in METHODS.items() if m.tableau is not None]
            + [("torchdiffeq", n) for n, m in METHODS.items() if m.torchdiffeq is not None]
            + ([("hand", n) for n, m in METHODS.items() if m.implicit] if implicit else []))


# The gradient methods it measures, chosen (each gradient method on the methods that say something new about it).
WP_GRADIENTS = [("hand", "euler"), ("hand-adjoint", "euler")] + [
    (b, m) for m in ("rk4", "dopri5") for b in ("hand", "hand-checkpoint", "hand-adjoint")] + [
    (b, m) for m in ("rk4-38", "dopri5") for b in ("torchdiffeq", "torchdiffeq-adjoint")]


# A stiff task's gradient methods besides those: the implicit methods' exact gradients, direct and checkpointed.
WP_IMPLICIT_GRADIENTS = [("hand", "backward-euler"), ("hand", "kvaerno3"), ("hand-checkpoint", "kvaerno3")]


def transfer_solvers(steps: int) -> list[dict]:
    """The solvers every trained model is evaluated with: each fixed-step method at the task's training grid
    (``steps``), dopri5 at :data:`TRANSFER_TOLERANCES`, and the float64 reference solve."""
    return ([{"method": m, "steps": steps} for m in FIXED_METHODS] + [{"method": "dopri5", "tol": t}
            for t in TRANSFER_TOLERANCES] + [dict(TRANSFER_REFERENCE)])


MEMORY_SOLVERS = [  # (label, variant, overrides) measured against the number of steps
    ("hand-euler", "euler", {}),
    ("hand-rk4", "rk4", {}),
    ("resnet", "resnet", {}),
    ("tdq-euler", "tdq-euler", {}),
    ("tdq-rk4", "tdq-rk4", {}),
    ("adjoint-euler", "adjoint-euler", {}),
    ("adjoint-rk4", "adjoint-rk4", {}),
    ("adjoint-dopri5", "adjoint-dopri5", {}),  # tolerance-controlled: does not depend on N
    ("hand-adjoint-euler", "hand-adjoint-euler", {}),  # the hand engine's continuous adjoint: constant in N
    ("checkpoint-euler", "checkpoint-euler", {}),  # the checkpointed adjoint: one state per step
]
def convergence_solvers() -> list[str]:
    """Every fixed-step method of the method table on the hand engine, then through torchdiffeq (by its name)."""
    fixed = [m for m in METHODS.values() if not m.adaptive]
    return [f"hand-{m.name}" for m in fixed if m.tableau is not None] + [f"tdq-{m.torchdiffeq}" for m in fixed
                                                                        if m.torchdiffeq is not None]


@dataclass
class Job:
    """One unit of work: a run config with the seeds it is run for.

    Training jobs of fixed-step variants carry several seeds (they train as one
    batched model); every other job carries one seed (or none).  A training job may also carry ``transfer``
    solvers: each trained model is then solved by each of them, one ``transfer`` record per (seed, solver)
    (:func:`transfer_config`), kept out of the training config so that a new solver adds records and renames
    none.  ``members`` are the seeds the model is trained with (a batched model's members move each other):
    the job's seeds when planned, kept when the job is narrowed to the seeds that still need to run.
    """

    kind: str
    config: dict  # the run config without its seed
    seeds: list
    experiments: list[str] = field(default_factory=list)
    transfer: list[dict] = field(default_factory=list)
    members: list | None = None
    parts: list[dict] = field(default_factory=list)  # one run per part: ``{**config, "measure": part}``

    def __post_init__(self):
        if self.members is None:
            self.members = list(self.seeds)

    def seed_configs(self, seed) -> list[dict]:
        """The configs of one seed's runs: its training (or other) run, then its transfer runs."""
        base = self.config if seed is None else {**self.config, "seed": seed}
        if self.parts:  # a job that measures several things at once, one record each (work-precision)
            return [{**base, "measure": part} for part in self.parts]
        return [base] + [transfer_config(self.config, seed, self.members, s) for s in self.transfer]

    def run_configs(self) -> list[dict]:
        return [c for s in self.seeds for c in self.seed_configs(s)]

    def narrowed(self, seeds: list) -> "Job":
        """The same job for some of its seeds."""
        return Job(self.kind, self.config, list(seeds), self.experiments, self.transfer, self.members, self.parts)

    def describe(self) -> str:
        """One line for progress and failure messages: kind, what, what differs from the variant, seeds."""
        c = self.config
        what = c.get("variant") or c.get("solver") or c.get("train_variant") or self.kind
        extra = ""
        if self.kind == "train":
            keys = [k for k in ("steps", "rtol", "lift_dim", "time_input", "zero_init", "head") if k in c]
            base = variant_config(c["variant"]).__dict__
            diffs = [f"{k}={c[k]}" for k in keys if c[k] != base.get(k)]
            diffs += [f"lr={c['lr']:g}"] if c.get("lr", 0.01) != 0.01 else []
            diffs += ["probe"] if c.get("probe") else []
            diffs += [f"+{len(self.transfer)} transfer solvers"] if self.transfer else []
            extra = (" " + " ".join(diffs)) if diffs else ""
        elif isinstance(c.get("steps"), int):
            extra = f" steps={c['steps']}"
        seeds = [s for s in self.seeds if s is not None]
        return f"{self.kind} {what}{extra}" + (f" seeds {','.join(map(str, seeds))}" if seeds else "")


def transfer_config(train: dict, seed: int, members: list, solver: dict) -> dict:
    """The config of one transfer run: the model trained by ``train`` (a training config without its seed) with
    ``members`` batched, its member ``seed``, solved by ``solver`` (:func:`transfer_solvers`) on the hand engine."""
    return {"kind": "transfer", "train": train, "seed": seed, "members": list(members), "solver": dict(solver),
            "engines": all_engines()}


TIMING_REFERENCE = "euler"  # every timed step alternates with one of this variant's: ratios survive machine drift


def _train_jobs(spec: dict, runs: list[tuple[str, dict]], seeds: int, protocol: dict,
                seed_overrides: dict | None = None, probe: bool = False, extra: dict | None = None,
                transfer: list[dict] | None = None) -> list[Job]:
    jobs = []
    proto = Protocol(**{**spec["protocol"], **protocol})
    for variant, overrides in runs:
        cfg = variant_config(variant, **overrides)
        base = run_config(cfg, proto, 0, "cpu", {"variant": variant, **({"probe": True} if probe else {}),
                                                 **(extra or {})})
        base.pop("seed")
        n = (seed_overrides or {}).get(variant, seeds)
        seed_list = list(n) if isinstance(n, list) else list(range(n))  # a count, or the seeds themselves
        solvers = list(transfer or []) if cfg.model == "ode" else []  # no flow of one field: nothing to transfer
        if cfg.adaptive or not cfg.batches_seeds:  # each seed alone: batched, the members' step counts drift apart in training and every
            # iteration pays for all of them until the slowest is done (5 hand-dopri5 seeds batched: 1.3x alone)
            jobs += [Job("train", base, [s], transfer=solvers) for s in seed_list]
        else:
            jobs.append(Job("train", base, seed_list, transfer=solvers))
    return jobs


def _memory_jobs(spec: dict) -> list[Job]:
    jobs = []
    for label, variant, overrides in MEMORY_SOLVERS:
        for n in spec["memory_steps"]:
            cfg = variant_config(variant, steps=n, zero_init=False, **overrides)
            jobs.append(Job("memory", {"kind": "memory", "solver": label, "variant": variant, "device": "cpu",
                                       "batch_size": 128, "repeats": spec["memory_repeats"], **cfg.as_config(),
                                       "engine": cfg.engine, "reference": TIMING_REFERENCE,
                                       "reference_engine": variant_config(TIMING_REFERENCE).engine}, [0]))
    return jobs


def build(profile: str) -> dict[str, list[Job]]:
    """Every experiment of ``profile`` as a list of jobs."""
    if profile not in SPEC:
        raise KeyError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    spec = copy.deepcopy(SPEC[profile])
    ex: dict[str, list[Job]] = {}
    ex["main"] = _train_jobs(spec, [(v, {}) for v in applicable("spiral") if v not in spec["main_cut"]], spec["main_seeds"],
                             {}, spec["main_seed_overrides"])
    ex["steps"] = _train_jobs(spec, [(m, {"steps": n}) for m, ns in spec["steps"].items() for n in ns], spec["sweep_seeds"], {})
    ex["tolerance"] = _train_jobs(
        spec, [(v, {"rtol": t, "atol": t}) for v in ("tdq-dopri5", "adjoint-dopri5") for t in spec["tolerances"]],
        spec["tolerance_seeds"], spec["tolerance_protocol"])
    ablate = [("euler", {"lift_dim": d}) for d in spec["lift_dims"]]
    ablate += [("euler", {"time_input": False}), ("euler", {"zero_init": False}),
               ("resnet", {}), ("resnet", {"zero_init": False})]  # zero-init ResNet: shared with main
    ex["ablations"] = _train_jobs(spec, ablate, spec["sweep_seeds"], {})
    controls = [(v, {"lift_dim": d, "head": h}) for d in spec["control_lift_dims"] for h in ("mlp", "linear")
                for v in ("euler", "no-flow")]
    controls += [(v, {}) for v in spec["probe_variants"] if v != "euler"]  # euler at lift 6 is already there
    ex["controls"] = _train_jobs(spec, controls, spec["control_seeds"], {}, probe=True)
    ex["learning-rate"] = [j for lr in spec["learning_rates"] for j in _train_jobs(
        spec, [(v, {}) for v in spec["lr_variants"]], spec["lr_seeds"], {"lr": lr}, spec["lr_seed_overrides"])]
    imp = spec["implicit"]  # the implicit method on the spiral (it applies to stiff tasks alone otherwise)
    ex["implicit"] = _train_jobs(spec, [(v, {}) for v in imp["variants"]], imp["seeds"], imp.get("protocol", {}))
    ex["memory"] = _memory_jobs(spec)
    ex["convergence"] = [Job("convergence", {"kind": "convergence", "solver": s, "steps": spec["convergence_steps"],
                                             "problem": "cos", "t1": 2.0}, [None]) for s in convergence_solvers()]
    proto = Protocol(**{**spec["protocol"], "epochs": spec["gradient_epochs"]}).as_config()
    ex["gradients"] = [Job("gradients", {"kind": "gradients", "train_variant": "euler", "protocol": proto,
                                         "engines": engines_of(("euler", *GRADIENTS_MEASURED)),
                                         "steps": spec["gradient_steps"], "tolerances": spec["gradient_tolerances"],
                                         "batch_size": 128, "device": "cpu"}, [0])]
    proto = Protocol(**spec["protocol"]).as_config()
    a = dict(spec["adjoint"])
    ex["adjoint"] = [Job("adjoint", {"kind": "adjoint", "train_variant": v, "protocol": proto,
                                     "engines": engines_of((v, *ADJOINT_MEASURED)),
                                     **{k: a[k] for k in a if k not in ("train_variants", "seeds")}}, [s])
                     for v in a["train_variants"] for s in range(a["seeds"])]
    ex["trajectories"] = [Job("trajectories", {"kind": "trajectories", "variant": v, "protocol": proto,
                                               "engine": variant_config(v).engine,
                                               "points": 400, "times": 21, "grid": 120, "device": "cpu"}, [0])
                          for v in spec["trajectory_variants"]]
    ex["timing"] = [Job("timing", c, [None]) for c in timing_configs(spec["timing_repeats"])]
    ex["bench"] = [Job("bench", {"kind": "bench", "steps": 20, "batch_size": 128, "rounds": spec["bench_rounds"],
                                 "engines": all_engines(), "suite": BENCH_SUITE,
                                 "device": "cpu", "torchode": True}, [None])]
    ex.update(task_experiments(profile, spec["protocol"]))
    for name, jobs in ex.items():
        for j in jobs:
            j.experiments.append(name)
    return ex


def timing_configs(repeats: int, device: str = "cpu") -> list[dict]:
    """The ``timing`` experiment: each variant's training step, alone and with 5 seeds batched."""
    return [{"kind": "timing", "variant": v, "batch_size": 128, "repeats": repeats, "warmup": 5, "members": 5,
             "seed": 0, "device": device, "engine": variant_config(v).engine, "reference": TIMING_REFERENCE,
             "reference_engine": variant_config(TIMING_REFERENCE).engine} for v in applicable("spiral")]


BENCH_SUITE = 6  # which rows the bench measures: 2 added the hand engine's adaptive, adjoint and checkpointed rows,
# 3 the fixed-step solve on the evaluation building block (what the fused path buys), 4 adaptive seeds batched,
# 5 torchode's dopri5, 6 the one-node steps (step-*) in place of the evaluation rows


# The variants the gradient diagnostics run on a trained model's weights, besides the trained variant
# (study.runners.adjoint and study.runners.gradients; a test checks these lists against what they run).
ADJOINT_MEASURED = ("rk4", "tdq-euler", "adjoint-euler", "tdq-rk4", "adjoint-rk4", "tdq-dopri5", "adjoint-dopri5")
GRADIENTS_MEASURED = ADJOINT_MEASURED + ("adjoint-dopri5-seminorm",)


def engines_of(names) -> str:
    """The engines, with their versions, that runs of these variants use: what a run of several variants
    depends on, so that a change to another engine leaves its record current."""
    return ",".join(sorted({variant_config(v).engine for v in names} - {"plain"}))


def plan(profile: str, experiments: list[str] | None = None) -> list[Job]:
    """The de-duplicated jobs of the chosen experiments (a run two experiments share is one job)."""
    ex = build(profile)
    names = list(ex) if not experiments else experiments
    unknown = [n for n in names if n not in ex]
    if unknown:
        raise KeyError(f"unknown experiment(s) {', '.join(unknown)}; choose from: {', '.join(ex)}")
    merged: dict[str, Job] = {}
    for name in names:
        for job in ex[name]:
            # Batched training jobs with the same config merge into one job over the union of seeds;
            # any other job is identified by its config and seeds.
            batched = job.kind == "train" and len(job.seeds) > 1
            key = config_hash(job.config) if batched else config_hash({"c": job.config, "s": job.seeds})
            if key not in merged:
                merged[key] = Job(job.kind, job.config, list(job.seeds), [name], list(job.transfer), list(job.members),
                                  list(job.parts))
                continue
            have = merged[key]
            have.seeds = sorted(set(have.seeds) | set(job.seeds))
            have.members = sorted(set(have.members) | set(job.members))
            have.transfer = have.transfer + [s for s in job.transfer if s not in have.transfer]
            have.parts = have.parts + [p for p in job.parts if p not in have.parts]
            if name not in have.experiments:
                have.experiments.append(name)
    return list(merged.values())


def without_engine(config: dict) -> dict:
    """A config without its engine versions: two records equal here differ only in the code that made them."""
    return {k: v for k, v in config.items() if k not in ("engine", "engines")}


def engine_free_hashes(profile: str) -> dict[str, str]:
    """Planned run's hash -> the hash of its config without engine versions (how stale records are found)."""
    return {config_hash(c): config_hash(without_engine(c)) for jobs in build(profile).values() for j in jobs
            for c in j.run_configs()}


def experiment_hashes(profile: str) -> dict[str, set[str]]:
    """Experiment name -> the config hashes of its runs (how the results view selects an experiment)."""
    return {name: {config_hash(c) for j in jobs for c in j.run_configs()} for name, jobs in build(profile).items()}


# -- tasks ------------------------------------------------------------------------------------------------------

def task_of(experiment: str) -> str:
    """The task an experiment belongs to (the spiral's have plain names)."""
    return experiment.split("/", 1)[0] if "/" in experiment else tasks.DEFAULT


def _task_train_jobs(task: str, spec: dict, variant_names, seeds: int, extra: dict,
                     protocol: dict | None = None, transfer: list[dict] | None = None) -> list[Job]:
    """Training jobs of ``task``: each of ``variant_names`` (a name, or a ``[name, model overrides]`` pair)."""
    module = tasks.get(task)
    proto = module.Protocol(**{**spec.get("protocol", {}), **(protocol or {})})
    jobs = []
    for v in variant_names:
        v, overrides = (v, None) if isinstance(v, str) else v
        cfg = module.model_config(v, overrides)
        base = module.run_config(v, cfg, proto, 0, "cpu", extra)
        base.pop("seed")
        seed_list = list(range(spec.get("seed_overrides", {}).get(v, seeds)))
        alone = cfg.adaptive or not cfg.batches_seeds or getattr(proto, "steer", 0)  # one step control (or Newton
        # iteration) per solve; STEER: each seed's end times
        solvers = list(transfer or []) if cfg.model == "ode" else []
        jobs += ([Job("train", base, [s], transfer=solvers) for s in seed_list] if alone
                 else [Job("train", base, seed_list, transfer=solvers)])
    return jobs


def applicable(task: str) -> list[str]:
    """The variants that apply to ``task``, in registry order."""
    module = tasks.get(task)
    return [v for v, var in variants.VARIANTS.items() if tasks.why_not(module, var) is None]


def _workprecision_job(task: str, spec: dict, protocol) -> Job:
    module = tasks.get(task)
    wp = spec["wp"]
    config = {"kind": "workprecision", **tasks.task_fields(task, module.VERSION), "seed": 0, "protocol": protocol,
              "reference_steps": WP_REFERENCE_STEPS, **wp, "reference_tol": WP_REFERENCE_TOL,
              "reference_gradient": "torchdiffeq-rk4-38",
              "engines": ",".join(engine_label(n) for n in FIELD_ENGINES)}
    implicit = getattr(module, "STIFF", False)
    parts = ([{"what": "solution", "backend": b, "method": m} for b, m in wp_solvers(implicit)]
             + [{"what": "gradient", "backend": b, "method": m} for b, m in WP_GRADIENTS
                + (WP_IMPLICIT_GRADIENTS if implicit else [])])
    return Job("workprecision", config, [None], parts=parts)


def task_experiments(profile: str, spiral_protocol: dict) -> dict[str, list[Job]]:
    """The experiments of every task that are not the spiral's original ones (see the module docstring)."""
    ex: dict[str, list[Job]] = {}
    spec = TASK_SPEC[profile]
    s = spec["spiral"]
    ex["transfer"] = _train_jobs({"protocol": spiral_protocol}, [(v, {}) for v in s["transfer_variants"]],
                                 s["transfer_seeds"], {}, transfer=transfer_solvers(variant_config("euler").steps))
    ex["work-precision"] = [_workprecision_job("spiral", s, Protocol(**spiral_protocol).as_config())]
    ex["remedies"] = _remedy_jobs(tasks.DEFAULT, {**s, "protocol": spiral_protocol}, {})  # "none": main's runs
    for task in tasks.TASKS:  # a stiff task's field blows up the explicit solves the bench times: none there
        if not getattr(tasks.get(task), "STIFF", False):
            ex[tasks.experiment(task, "task-bench")] = [Job("taskbench", taskbench_config(task, TASKBENCH_ROUNDS[profile]),
                                                            [None])]
    for task in tasks.TASKS:
        if task == tasks.DEFAULT:
            continue
        module, t = tasks.get(task), spec[task]
        main = _task_train_jobs(task, t, applicable(task), t["seeds"], {})
        ex[tasks.experiment(task, "main")] = main
        ex[tasks.experiment(task, "transfer")] = _task_train_jobs(task, t, applicable(task), t["seeds"], {},
                                                                  transfer=transfer_solvers(module.DEFAULT_STEPS))
        proto = module.Protocol(**t.get("protocol", {}))
        protocol = proto.as_config()  # remedies named only when on
        ex[tasks.experiment(task, "work-precision")] = [_workprecision_job(task, t, protocol)]
        if "remedies" in t:
            ex[tasks.experiment(task, "remedies")] = _remedy_jobs(task, t, {})
        if "controls" in t:
            ex[tasks.experiment(task, "controls")] = _task_train_jobs(task, t, t["controls"], t["seeds"], {})
    return ex


TASKBENCH_ROUNDS = {"full": 15, "quick": 2}
FIELD_ENGINES = ("evaluation", "step", "torchdiffeq")  # what solves a task's field: the work-precision and task benches


def taskbench_config(task: str, rounds: int, steps: int = 20, tol: float = 1e-3) -> dict:
    """A task bench's config (:mod:`study.runners.taskbench`): the task's version and the engines it times."""
    module = tasks.get(task)
    return {"kind": "taskbench", **tasks.task_fields(task, module.VERSION), "task": task, "rounds": rounds,
            "steps": steps, "tol": tol, "device": "cpu", "engines": ",".join(engine_label(n) for n in FIELD_ENGINES)}


def _remedy_jobs(task: str, spec: dict, extra: dict) -> list[Job]:
    """Each remedy arm (protocol overrides; ``none``: the task's own protocol, so main's runs) for each of the
    remedy variants, ``seeds`` seeds each."""
    r, applies = spec["remedies"], set(tasks.get(task).REMEDIES)
    arms = [arm for arm in r["arms"].values() if set(arm) <= applies]  # STEER has no meaning for some tasks
    return [j for arm in arms for j in _task_train_jobs(task, spec, r["variants"], r["seeds"], extra, arm)]
