"""Training the user's model in one solver x gradient cell, one seed: Adam on random minibatches, every iteration's
loss and evaluations kept (the NFE trend), a solver that gives up or a non-finite loss stopping the run."""
from __future__ import annotations

import math
import time

import torch

from ..engine.solve import Count, How, is_solver_failure
from .model import Model, model_for

LOSS_BOUND = 1e6  # a loss beyond this is a divergence (the store keeps likelihood-like numbers within +-1e6)


def how_of(cell: dict, max_steps: int = 100_000) -> How:
    return How(cell["implementation"], cell["method"], cell.get("steps"), cell.get("tol"), cell["gradient"],
               max_steps)


def _batch(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen)[: min(size, n)]


def _rows(split, idx):
    x, t, y = split
    return x[idx], (t if t.dim() == 1 else t[idx]), y[idx]


def evaluate(model: Model, split, how: How, limit: int = 512) -> dict:
    """The loss and the metrics on (at most ``limit`` samples of) ``split`` under ``how``, without gradients, and the
    evaluations and accepted steps it took; a failed solve gives None values and its reason."""
    p = model.problem
    x, t, y = _rows(split, slice(0, limit))
    counter = Count()
    try:
        with torch.no_grad():
            pred = model.predict(x, t, how, counter)
            values = {"loss": float(p.loss(pred, y))}
            values.update({name: float(fn(pred, y)) for name, fn in p.metrics.items()})
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return {"values": None, "nfe": counter.counts["forward"], "accepted": counter.accepted, "failure": str(exc)}
    values = {k: (v if math.isfinite(v) and abs(v) <= LOSS_BOUND else None) for k, v in values.items()}
    return {"values": values, "nfe": counter.counts["forward"], "accepted": counter.accepted, "failure": None}


def train(loaded, cell: dict, seed: int, iterations: int, progress=None) -> tuple[Model, dict]:
    """Train a fresh model of seed ``seed`` in ``cell``: ``(model, {status, reason, curves, wall_time_s})``."""
    p = loaded.problem
    model = model_for(loaded, seed)
    how = how_of(cell)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    gen = torch.Generator().manual_seed(10_007 * int(seed) + 3)
    n = loaded.train[0].shape[0]
    curves = {"iteration": [], "loss": [], "nfe_forward": [], "nfe_backward": []}
    status, reason = "ok", None
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        x, t, y = _rows(loaded.train, _batch(n, p.batch_size, gen))
        counter = Count()
        try:
            loss = p.loss(model.predict(x, t, how, counter), y)
            value = float(loss.detach())
            if not (math.isfinite(value) and abs(value) <= LOSS_BOUND):
                status, reason = "diverged", f"loss {value:.3g} in iteration {it}"
                break
            opt.zero_grad(set_to_none=True)
            counter.phase = "backward"
            loss.backward()
            opt.step()
        except AssertionError as exc:
            if not is_solver_failure(exc):
                raise
            status, reason = "diverged", f"solver failure in iteration {it}: {exc}"
            break
        for k, v in (("iteration", it), ("loss", value), ("nfe_forward", counter.counts["forward"]),
                     ("nfe_backward", counter.counts["backward"])):
            curves[k].append(v)
        if progress is not None:
            progress(it, value)
    return model, {"status": status, "reason": reason, "curves": curves,
                   "wall_time_s": time.perf_counter() - start, "iterations_completed": len(curves["iteration"])}


def nfe_trend(curves: dict) -> float | None:
    """Evaluations per iteration (forward and backward) at the end of training over those at its start (the mean
    of the last tenth over the first tenth); None for fewer than 10 iterations."""
    n = len(curves["iteration"])
    if n < 10:
        return None
    per = [f + b for f, b in zip(curves["nfe_forward"], curves["nfe_backward"])]
    k = max(1, n // 10)
    first, last = sum(per[:k]) / k, sum(per[-k:]) / k
    return last / first if first > 0 else None
