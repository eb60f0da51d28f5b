"""The task registry: what the study's models are trained to do, one folder (or module) per task.

A run is ``(task, variant, seed, overrides)``.  The variants (:mod:`study.variants`), the solvers and
gradient methods (:mod:`study.engine`), the store, the executor and the report layer know nothing of
any task; a task owns everything specific to it, torch-free at import (torch is imported by
the functions that train and evaluate).  A task (its package, or the ``TASK`` object its package delegates its
attributes to) exports:

* ``NAME``, ``VERSION`` (bumped when its data, model or metrics change: it is part of every config
  of the task but the first one's, so a change renames the records it makes), ``TITLE``, ``SUMMARY``;
* ``METRICS``: its metrics, each a :class:`Metric` with its direction, and ``PRIMARY``, the one its
  tables and transfer are read by; ``REFERENCE``: its ceiling or floor (:class:`Reference`);
* ``Protocol``: its training protocol (a dataclass with ``from_dict`` and ``validate``) and
  ``OPTIONS``: the command-line options that set its fields (:class:`Option`, with bounds and help);
* ``not_applicable(variant) -> str | None``: why a variant does not apply to it (None: it does);
* ``model_config(variant, overrides)``, ``run_config(variant, model_cfg, protocol, seed, device, extra) -> dict``:
  a training run's config; ``DEFAULT_STEPS``; ``REMEDIES``: the protocol's remedy weights it takes;
* ``train(configs, progress, transfer) -> (records, trained)``: train one job (seeds that differ only in their
  seed) and make its records, with each trained model's transfer rows; ``cost(config, members)``: a relative cost;
* ``SCHEMA`` and ``SAME_LENGTH``: the fields its training records hold (:mod:`study.records` checks them);
* ``summary(record) -> list[str]``: what ``study run`` prints;
* the work-precision and task-bench hooks: ``workprecision_models(config)``, ``problem(model, config)`` and
  ``BENCH_BATCH``.

Adding a task is one folder here and its name in :data:`TASKS` (and its lines in the profiles' ``TASK_SPEC``).  A
task that fits a known vector field from one trajectory of it is a :class:`study.tasks.trajectory.System` made a
task by :func:`study.tasks.trajectory.define` (``dynamics`` is one; README, "Extending the study", adds a pendulum).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

TASKS = ("spiral", "dynamics", "density", "digits", "stiff")
DEFAULT = "spiral"  # configs made before there were tasks name none: they are the spiral's, version 1


@dataclass(frozen=True)
class Metric:
    """One of a task's metrics: its record field, label, unit and direction."""

    name: str
    label: str
    higher_is_better: bool
    unit: str = ""
    percent: bool = False  # stored as a fraction, shown in percent
    target: float | None = None  # where set, closer to it is better (higher_is_better is then ignored)

    @property
    def direction(self) -> str:
        if self.target is not None:
            return f"closer to {self.target:g} is better"
        return f"{'higher' if self.higher_is_better else 'lower'} is better"


@dataclass(frozen=True)
class Reference:
    """A task's reference: the best any model can do (a ceiling or a floor), and what it is."""

    label: str
    description: str
    value: float | None = None  # None: computed (see the task's ``reference_value``)


@dataclass(frozen=True)
class Option:
    """A field of a task's ``Protocol`` that ``study run --task T`` sets: its flag, its type (``int``, ``float`` or
    ``choice``), its bounds or choices, and what it means.  The command line's options, their help and their
    checks are made from these (:func:`options`); ``study tasks`` lists them."""

    flag: str
    field: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def bounds(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        word = "an integer" if self.kind == "int" else "a number"
        fmt = (lambda x: f"{x:,}") if self.kind == "int" else (lambda x: f"{x:g}")  # noqa: E731
        return f"{word} from {fmt(self.low)} to {fmt(self.high)}"

    def check(self, value):
        """``value`` as the protocol stores it (a float option's -0.0 as 0.0), or ValueError in one line."""
        import math

        if self.kind == "choice":
            if value not in self.choices:
                from ..checks import shown

                raise ValueError(f"unknown {self.field} {shown(value)}; choose one of: {', '.join(self.choices)}")
            return value
        ok = math.isfinite(value) and self.low <= value <= self.high
        if not ok:
            raise ValueError(f"{self.flag} must be {self.bounds()}, got {value}")
        return int(value) if self.kind == "int" else float(value) + 0.0


ITERATIONS_MAX = 100_000  # epochs or iterations of one run (the article trains 500 epochs)
LR_RANGE = (1e-6, 1.0)


def check_fields(protocol, positive_ints=(), positive_numbers=(), non_negative=()) -> None:
    """The checks the flow tasks' protocols share: each named field a positive integer, a positive number or a
    non-negative number (finite), else one ValueError naming it."""
    import math

    for name in positive_ints:
        v = getattr(protocol, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name, positive in [(n, True) for n in positive_numbers] + [(n, False) for n in non_negative]:
        v = getattr(protocol, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {v!r}")


def lr_option() -> "Option":
    return Option("--lr", "lr", "float", *LR_RANGE, help="learning rate")


def options() -> dict[str, tuple[Option, list[str]]]:
    """Every task's options by flag: ``{flag: (the option, the tasks that take it)}``; one flag means one type in
    every task that takes it."""
    out: dict[str, tuple[Option, list[str]]] = {}
    for name in TASKS:
        for opt in get(name).OPTIONS:
            have = out.setdefault(opt.flag, (opt, []))
            if have[0].kind != opt.kind:
                raise RuntimeError(f"option {opt.flag} is {have[0].kind} in one task and {opt.kind} in another")
            have[1].append(name)
    return out


def option(module: ModuleType, flag: str) -> Option | None:
    """Task ``module``'s option ``flag``, or None when it takes no such option."""
    return next((o for o in module.OPTIONS if o.flag == flag), None)


def why_not(task, variant) -> str | None:
    """Why ``variant`` does not apply to ``task`` (None: it does): an implicit method applies to a stiff task
    alone (``STIFF``), then the task's own rule (``not_applicable``)."""
    from ..config import METHODS

    cfg = variant.model_config
    if cfg.model == "ode" and METHODS[cfg.method].implicit and not getattr(task, "STIFF", False):
        return "an implicit method is for stiff problems: it applies to the stiff tasks alone (study tasks)"
    return task.not_applicable(variant)


def get(name: str) -> ModuleType:
    """The module of task ``name``."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    if module.NAME != name:
        raise RuntimeError(f"task module {module.__name__} declares name {module.NAME!r}, not {name!r}")
    return module


def record_schema(record: dict) -> tuple[dict, list] | None:
    """The schema a task's training record is validated against (:func:`study.records.validate`'s ``schemas``):
    ``(fields, same-length groups)``, None for every other record (its kind's own schema).  A KeyError names an
    unknown task, or a task whose records have no schema of their own (the first task's configs name none)."""
    task = record["config"].get("task") if record.get("kind") == "train" else None
    if task is None:
        return None
    module = get(task)
    if not hasattr(module, "SCHEMA"):
        raise KeyError(f"config.task {task!r}: that task's records carry no task name (the field was edited)")
    return module.SCHEMA, module.SAME_LENGTH


def of(config: dict) -> ModuleType:
    """The task of a run's config (configs of the first task name none)."""
    return get(config.get("task", DEFAULT))


def name_of(config: dict) -> str:
    return config.get("task", DEFAULT)


def experiment(name: str, kind: str) -> str:
    """The name of task ``name``'s experiment ``kind`` (``main``, ``transfer``, ``work-precision``): the first
    task's experiments keep their bare names, every other task's are ``TASK/KIND``."""
    return kind if name == DEFAULT else f"{name}/{kind}"


def primary(name: str) -> Metric:
    """The metric task ``name``'s tables and transfer are read by."""
    module = get(name)
    return next(m for m in module.METRICS if m.name == module.PRIMARY)


def task_fields(name: str, version: int) -> dict:
    """What a config says of its task: nothing for the first task at its first version (its records predate
    tasks), else its name and version."""
    return {} if (name, version) == (DEFAULT, 1) else {"task": name, "task_version": version}
