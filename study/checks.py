"""What a user may type, checked before anything is created: each problem is one :class:`UserError` line.

The limits are the study's documented bounds (README, "Commands"): seeds fit the
initialisation's 64-bit seed arithmetic, thread and worker counts are bounded by
the machine's cores, and steps, epochs and bench rounds by what can finish or
fit in memory.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

SEED_MAX = 2**32 - 1  # seed * 7919 + 17 must stay a 64-bit integer (the initialisation's generator seed)
STEPS_MAX = 10_000  # 10,000 RK4 steps keep about 5 GiB of activations at batch 128
BENCH_STEPS_MAX = 1_000
BENCH_ROUNDS_MAX = 1_000
BATCH_MAX = 1_000  # the training set
SIGMA_RANGE = (0.01, 1.0)  # noise std: below 0.01 the Bayes quadrature cannot resolve it; the spirals have radius 1
SHOWN = 60  # characters of a user's string echoed back in an error


class UserError(Exception):
    """Bad input: reported as one line ``study: error: ...``, exit code 2."""


def shown(text: str) -> str:
    """``text`` as an error message quotes it: repr, cut to :data:`SHOWN` characters."""
    r = repr(text)
    return r if len(r) <= SHOWN else r[: SHOWN - 4] + "...'"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def number(value: float) -> float:
    """A float option's value as a config stores it: a float, and -0.0 as 0.0 (JSON writes them apart, so the
    two would name two runs of one config)."""
    return float(value) + 0.0  # -0.0 + 0.0 is +0.0


def int_in(name: str, value, lo: int, hi: int, why: str = "") -> int | None:
    """``value`` (None passes) if ``lo <= value <= hi``, else a UserError naming the range."""
    if value is None:
        return None
    if not lo <= value <= hi:
        raise UserError(f"{name} must be an integer from {lo:,} to {hi:,}{' (' + why + ')' if why else ''}, got {value}")
    return value


def seed(value: int, name: str = "--seed") -> int:
    return int_in(name, value, 0, SEED_MAX)


BATCH_SEEDS_MAX = 64


def batch_seeds(text: str | None, seed_: int) -> list[int]:
    """``--batch-with 0,1,2``: the seeds trained as one batched model, which must include ``--seed``."""
    if text is None:
        return [seed_]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--batch-with must be comma-separated integers, got {shown(text)}") from None
    for s in seeds:
        int_in("--batch-with", s, 0, SEED_MAX)
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) > BATCH_SEEDS_MAX:
        raise UserError(f"--batch-with must list 1 to {BATCH_SEEDS_MAX} distinct seeds, got {shown(text)}")
    if seed_ not in seeds:
        raise UserError(f"--batch-with must include --seed {seed_} (the seeds a record says it was batched with)")
    return seeds


def threads(value: int) -> int:
    return int_in("--threads", value, 1, cores(), f"this machine has {cores()} cores")


def workers(value: int | None) -> int:
    return int_in("--workers", value, 1, cores(), f"one process per core at most; this machine has {cores()}") or cores()


def sigma(value: float) -> float:
    lo, hi = SIGMA_RANGE
    if not (math.isfinite(value) and lo <= value <= hi):
        raise UserError(f"--sigma must be a noise standard deviation from {lo:g} to {hi:g}, got {value!r}")
    return number(value)


def device(name: str) -> str:
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device {shown(name)} requested but CUDA is not available here; use --device cpu")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise UserError(f"device {shown(name)} does not exist ({torch.cuda.device_count()} CUDA device(s))")
        return name
    raise UserError(f"unknown device {shown(name)}; choose cpu, cuda or cuda:N")


def output_dir(option: str, path: Path) -> Path:
    """A directory we may create and write into (nothing is created here; the CLI rejects empty paths)."""
    dangling(option, path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{option} {shown(str(path))} is a file, not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{option} {shown(str(path))} is not writable")
        return path
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UserError(f"{option} {shown(str(path))} cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {shown(str(path))} cannot be created: {parent} is not writable")
    return path


def store_dir(option: str, path: Path, new_store: bool = False) -> Path:
    """A directory a run store may be written into: a new or empty one, or one that already holds a store's entries
    (``new_store``: any directory).  A slip like ``--runs-dir ~`` or ``/`` is refused before anything is written or
    walked.  Writability is probed by making (and removing) a directory in it: permission bits say nothing on a
    pseudo file system such as /proc."""
    from . import records, store

    output_dir(option, path)
    if not path.is_dir():
        return path
    try:
        with os.scandir(path) as it:
            entries = sorted(e.name for _, e in zip(range(10_000), it))
    except OSError as exc:
        raise UserError(f"{option} {shown(str(path))} cannot be read: {exc.strerror or exc}") from None
    known = set(records.SCHEMA) | {store.SINGLE, store.EXECUTION_LOG}
    if entries and not set(entries) & known and not new_store:
        raise UserError(f"{option} {shown(str(path))} is not a run store and not empty (it holds {shown(entries[0])}"
                        f"{f' and {len(entries) - 1} more' if len(entries) > 1 else ''}): a store is made in a new or "
                        "empty directory, or pass --new-store to make one there")
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".study-probe-", dir=path))
    except OSError as exc:
        raise UserError(f"{option} {shown(str(path))} cannot be written: {exc.strerror or exc}") from None
    return path


def dangling(option: str, path: Path) -> None:
    """A UserError if ``path`` is a symbolic link to nothing (it is neither a file nor a missing directory)."""
    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError:  # pragma: no cover - removed meanwhile
            target = "?"
        raise UserError(f"{option} {shown(str(path))} is a dangling symbolic link (to {shown(target)}, "
                        "which does not exist)")


def run_store(option: str, path: Path) -> Path:
    """An existing run store to read: a directory that is empty or holds the store's entries."""
    from . import records, store

    dangling(option, path)
    if not path.exists():
        raise UserError(f"runs directory {shown(str(path))} does not exist; run 'study run-all' first")
    if not path.is_dir():
        raise UserError(f"{option} {shown(str(path))} is a file, not a runs directory")
    try:
        entries = set(os.listdir(path))
    except OSError as exc:
        raise UserError(f"runs directory {shown(str(path))} cannot be read: {exc.strerror}") from None
    known = set(records.SCHEMA) | {store.SINGLE, store.EXECUTION_LOG}
    if entries and not entries & known:
        raise UserError(f"{shown(str(path))} is not a run store: it holds none of {', '.join(sorted(known))}")
    return path


def task_names(names: str | None) -> list[str] | None:
    """The tasks chosen by ``--tasks a,b`` (None: all)."""
    from .tasks import TASKS

    if names is None:
        return None
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise UserError(f"--tasks names no task; choose from: {', '.join(TASKS)}")
    bad = [n for n in chosen if n not in TASKS]
    if bad:
        raise UserError(f"unknown task(s) {', '.join(shown(b) for b in bad)}; choose from: {', '.join(TASKS)}")
    return list(dict.fromkeys(chosen))


def experiments(profile: str, names: str | None, tasks: list[str] | None = None) -> list[str] | None:
    """The profile's experiments chosen by ``--experiments a,b`` among those of ``tasks`` (None: all of them; a
    plain name such as ``main`` means that experiment of each chosen task that has one)."""
    from .experiments import PROFILES, build, task_of

    if profile not in PROFILES:
        raise UserError(f"unknown profile {shown(profile)}; choose one of: {', '.join(PROFILES)}")
    known = [n for n in build(profile) if tasks is None or task_of(n) in tasks]
    if names is None:
        return None if tasks is None else known
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise UserError(f"--experiments names no experiment; choose from: {_listing(known)}")
    out, bad = [], []
    for n in chosen:
        if tasks is None:
            matches = [n] if n in known else []
        else:
            matches = [k for k in known if k == n or k.endswith("/" + n)]
        if matches:
            out.extend(matches)
        else:
            bad.append(n)
    if bad:
        raise UserError(f"unknown experiment(s) {', '.join(shown(b) for b in bad)}"
                        + (f" for task(s) {', '.join(tasks)}" if tasks else "") + f"; choose from: {_listing(known)}")
    return list(dict.fromkeys(out))


def _listing(names: list[str]) -> str:
    """Experiment names, those of a task other than the first as ``task/{a,b}``: one line however many tasks."""
    from .experiments import task_of
    from .tasks import DEFAULT

    plain = [n for n in names if task_of(n) == DEFAULT]
    groups: dict[str, list[str]] = {}
    for n in names:
        if task_of(n) != DEFAULT:
            groups.setdefault(task_of(n), []).append(n.split("/", 1)[1])
    return ", ".join(plain + [f"{t}/{{{','.join(kinds)}}}" for t, kinds in groups.items()])


def scheduler(address: str | None) -> str | None:
    """A Dask scheduler address, checked and reached (before anything is written)."""
    if address is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
    except ValueError:  # an unbalanced IPv6 bracket: 'tcp://[::1', 'tcp://]'
        raise UserError(f"--scheduler needs an address like tcp://host:8786 (IPv6: tcp://[::1]:8786), "
                        f"got {shown(address)}") from None
    if parts.scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss") or not parts.netloc:
        raise UserError(f"--scheduler needs an address like tcp://host:8786, got {shown(address)}")
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask: pip install 'study[dask]'") from None
    try:
        Client(address, timeout="10s").close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the user's address or network
        raise UserError(f"cannot reach the Dask scheduler at {shown(address)}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None
    return address


def task(name: str):
    """The module of task ``name`` (``--task``)."""
    from . import tasks

    if name not in tasks.TASKS:
        raise UserError(f"unknown task {shown(name)}; choose one of: {', '.join(tasks.TASKS)} (see 'study tasks')")
    return tasks.get(name)




PROTOCOL_PREFIX = "protocol_"  # the command line's parameter name of a task's protocol option


def protocol_options(given: dict) -> dict:
    """The protocol options given to ``study run`` (``{protocol_FIELD: value or None}``), each checked against the
    bounds of the tasks' option of that name (:class:`study.tasks.Option`): ``{flag: value}``."""
    from . import tasks

    by_field = {o.field: o for o, _ in tasks.options().values()}
    out = {}
    for name, value in given.items():
        if value is None:
            continue
        opt = by_field[name.removeprefix(PROTOCOL_PREFIX)]
        try:
            out[opt.flag] = opt.check(value)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return out


def options_apply(task, given: dict) -> None:
    """Refuse an option that does not apply to ``task`` (its ``OPTIONS`` say which do)."""
    flags = [o.flag for o in task.OPTIONS]
    bad = [k for k in given if k not in flags]
    if bad:
        raise UserError(f"{', '.join(bad)} does not apply to task {task.NAME}; its options: {', '.join(flags)}")


REMEDY_MAX = {"kinetic": 100.0, "jacobian": 100.0, "weight_decay": 10.0}  # beyond these a penalty is the objective
REMEDY_OPTIONS = {"kinetic": "--kinetic", "jacobian": "--jacobian", "steer": "--steer", "weight_decay": "--weight-decay"}
ON_A_FLOW = ("kinetic", "jacobian", "steer")  # act on the flow's solve: a model without one has nothing to act on


def remedies(task, variant, given: dict) -> dict:
    """The stiffness remedies' options that were given (``{field: value}``), checked: finite, in range, applying to
    ``task`` (its ``REMEDIES``) and to ``variant`` (RNODE and STEER need a flow)."""
    out = {}
    for field, value in given.items():
        if value is None:
            continue
        option = REMEDY_OPTIONS[field]
        if field not in getattr(task, "REMEDIES", ()):
            why = " (its loss compares states at fixed times)" if field == "steer" else ""
            raise UserError(f"{option} does not apply to task {task.NAME}{why}")
        hi = REMEDY_MAX.get(field)
        if hi is None:
            if not (math.isfinite(value) and 0 <= value < 1):
                raise UserError(f"{option} must be a number from 0 to below 1 (the end time's spread), got {value}")
        elif not (math.isfinite(value) and 0 <= value <= hi):
            raise UserError(f"{option} must be a number from 0 to {hi:g}, got {value}")
        if field in ON_A_FLOW and variant.model_config.model != "ode":
            raise UserError(f"{option} acts on a flow's solve: {variant.name} has none")
        out[field] = number(value)
    return out
