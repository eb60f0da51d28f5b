"""A user's problem: one Python file that defines ``PROBLEM``, a :class:`Problem` (the contract: ``docs/audit.md``).

The field is any ``torch.nn.Module`` ``f(t, y)`` in torchdiffeq's convention (``y`` batch-major, ``(B, *shape)``;
``t`` a 0-dim tensor), so a model written for ``torchdiffeq.odeint`` works unchanged.  The file is the user's code:
it is run as it is, and whatever goes wrong while loading it or checking what it defines is one
:class:`ProblemError` naming the file and line.
"""
from __future__ import annotations

import hashlib
import math
import runpy
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch


class ProblemError(ValueError):
    """The problem file cannot be loaded or does not define a usable problem; the message is one line."""


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The default loss: mean squared error."""
    return ((pred - target) ** 2).mean()


@dataclass
class Problem:
    """What ``study audit`` measures.  ``field``, ``lift`` and ``head`` are functions that make fresh modules (the
    audit seeds torch before calling them, so each seed starts from its own initial weights).

    * ``inputs`` ``(N, ...)``: each sample's input; without a ``lift`` these are the initial states ``(N, *shape)``;
    * ``times``: the observation times, ``(T,)`` shared by every sample or ``(N, T)`` per sample (each row
      increasing, every row starting at the same time); the solve runs from the first to each later one;
    * ``targets``: what the loss compares the prediction with: ``(N, T, *shape)`` (the states at every observation
      time, the default ``readout="trajectory"``) or what ``head`` makes of the final state (``readout="final"``);
    * ``loss(pred, target) -> scalar`` (default: mean squared error); ``metrics``: ``{name: fn(pred, target) ->
      float}``, each lower-is-better unless its name is in ``higher_is_better``; ``primary``: the one the
      recommendations read (default: the loss);
    * ``truth``: the true field ``f(t, y)`` where it is known (the audit then measures the learned field's error);
    * ``state_dict``: a trained model to audit as it is (a path or a dict ``{"field": ..., "lift": ..., "head": ...}``,
      or the field's own state dict);
    * ``test``: held-out ``(inputs, times, targets)``; without it the last ``test_fraction`` of the samples;
    * the training protocol: ``iterations``, ``batch_size``, ``lr`` (Adam)."""

    field: Callable[[], torch.nn.Module]
    inputs: torch.Tensor
    times: torch.Tensor
    targets: torch.Tensor
    loss: Callable = mse
    lift: Callable[[], torch.nn.Module] | None = None
    head: Callable[[], torch.nn.Module] | None = None
    readout: str = "trajectory"
    metrics: dict = field(default_factory=dict)
    higher_is_better: tuple = ()
    primary: str = "loss"
    truth: Callable | None = None
    state_dict: object = None
    test: tuple | None = None
    test_fraction: float = 0.2
    iterations: int = 300
    batch_size: int = 32
    lr: float = 0.01
    name: str = ""


@dataclass
class Loaded:
    """A checked problem: its train and test splits (float32), its file's content hash and its name."""

    problem: Problem
    train: tuple
    test: tuple
    sha256: str
    name: str
    path: Path


def _where(exc: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of ``exc`` in the problem file (or the last frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
    f = (mine or frames or [None])[-1]
    return f"{f.filename}:{f.lineno}" if f is not None else str(path)


def load(path) -> Loaded:
    """Run the problem file and check its ``PROBLEM``; :class:`ProblemError` (one line) for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"{path}: no such file")
    source = path.read_bytes()
    try:
        namespace = runpy.run_path(str(path), run_name="study_audit_problem")
    except SystemExit as exc:
        raise ProblemError(f"{path}: the file called exit({exc.code}) while loading") from None
    except BaseException as exc:  # noqa: BLE001 - the user's code: any exception is theirs, named in one line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ProblemError(f"{_where(exc, path)}: {type(exc).__name__}: {exc}") from None
    problem = namespace.get("PROBLEM")
    if not isinstance(problem, Problem):
        raise ProblemError(f"{path}: defines no PROBLEM = study.audit.Problem(...) (found {type(problem).__name__})")
    train, test = check(problem, path)
    name = problem.name or path.stem
    return Loaded(problem, train, test, hashlib.sha256(source).hexdigest(), name, path)


def _tensor(x, what: str, path: Path) -> torch.Tensor:
    try:
        t = torch.as_tensor(x)
    except Exception as exc:  # noqa: BLE001
        raise ProblemError(f"{path}: {what} is not a tensor ({type(exc).__name__}: {exc})") from None
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise ProblemError(f"{path}: {what} holds non-finite values")
        t = t.to(torch.float32)
    return t


def _split(p: Problem, path: Path) -> tuple[tuple, tuple]:
    x, t, y = (_tensor(v, n, path) for v, n in ((p.inputs, "inputs"), (p.times, "times"), (p.targets, "targets")))
    n = x.shape[0] if x.dim() else 0
    if n < 2 or y.shape[0] != n or (t.dim() == 2 and t.shape[0] != n):
        raise ProblemError(f"{path}: inputs, targets (and per-sample times) need the same number of samples, at "
                           f"least 2; got {tuple(x.shape)}, {tuple(y.shape)}, times {tuple(t.shape)}")
    if p.test is not None:
        if not (isinstance(p.test, (tuple, list)) and len(p.test) == 3):
            raise ProblemError(f"{path}: test must be (inputs, times, targets)")
        test = tuple(_tensor(v, f"test[{i}]", path) for i, v in enumerate(p.test))
        return (x, t, y), test
    k = max(1, int(round(p.test_fraction * n)))
    if not 0 < p.test_fraction < 1 or k >= n:
        raise ProblemError(f"{path}: test_fraction must leave samples on both sides, got {p.test_fraction}")
    shared = t.dim() == 1
    return (x[:-k], t if shared else t[:-k], y[:-k]), (x[-k:], t if shared else t[-k:], y[-k:])


def _check_times(t: torch.Tensor, what: str, path: Path) -> None:
    if t.dim() not in (1, 2) or t.shape[-1] < 2 or not t.is_floating_point():
        raise ProblemError(f"{path}: {what} must be float (T,) or (N, T) with T >= 2, got {tuple(t.shape)}")
    rows = t.reshape(-1, t.shape[-1])
    if not bool((rows[:, 1:] > rows[:, :-1]).all()):
        raise ProblemError(f"{path}: {what} must increase along each row")
    if not bool((rows[:, 0] == rows[0, 0]).all()):
        raise ProblemError(f"{path}: {what}: every sample's times must start at the same time")


def check(p: Problem, path: Path) -> tuple[tuple, tuple]:
    """The problem's train and test splits, after checking what the problem says of itself."""
    for name in ("field", "loss"):
        if not callable(getattr(p, name)):
            raise ProblemError(f"{path}: {name} must be callable")
    for name in ("lift", "head", "truth"):
        if getattr(p, name) is not None and not callable(getattr(p, name)):
            raise ProblemError(f"{path}: {name} must be callable or None")
    if p.readout not in ("trajectory", "final"):
        raise ProblemError(f"{path}: readout must be 'trajectory' or 'final', got {p.readout!r}")
    for name, low, high in (("iterations", 1, 1_000_000), ("batch_size", 1, 1_000_000)):
        v = getattr(p, name)
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            raise ProblemError(f"{path}: {name} must be an integer from {low} to {high:,}, got {v!r}")
    if not (isinstance(p.lr, (int, float)) and math.isfinite(p.lr) and 0 < p.lr <= 1):
        raise ProblemError(f"{path}: lr must be a number in (0, 1], got {p.lr!r}")
    if p.primary != "loss" and p.primary not in p.metrics:
        raise ProblemError(f"{path}: primary {p.primary!r} is neither 'loss' nor one of the metrics")
    train, test = _split(p, path)
    for split, what in ((train, "times"), (test, "test times")):
        _check_times(split[1], what, path)
    return train, test
