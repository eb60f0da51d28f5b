"""One training run: the article's protocol, measured.

Plain and linear on purpose: build data and model, loop over epochs and
mini-batches, evaluate, measure, return one record per seed.  Several seeds of
a fixed-step variant train together as one ensemble model (stacked weights);
each member sees its own data, shuffling and initialisation, exactly as if it
were trained alone.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from . import data
from .measure import activation_bytes, environment, loss_fn
from .models import Classifier, ModelConfig

SCHEMA_VERSION = 1


@dataclass
class Protocol:
    """The training protocol: the article's defaults, every number configurable."""

    epochs: int = 500
    lr: float = 0.01
    batch_size: int = 128
    n_train: int = 1000
    n_test: int = 10_000
    sigma: float = data.SIGMA
    eval_every: int = 10  # test-accuracy curve every this many epochs (and at the last)
    curve_test_points: int = 2000  # the curve uses the first this many test points; final test_acc uses all

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "n_train", "n_test", "eval_every", "curve_test_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (self.lr > 0 and self.sigma >= 0):
            raise ValueError("lr must be positive and sigma non-negative")


class Diverged(Exception):
    """A run that cannot go on: non-finite loss, step-size underflow, too many steps."""


def _is_solver_failure(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, AssertionError) and ("underflow in dt" in msg or "max_num_steps exceeded" in msg)


@torch.no_grad()
def evaluate(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Accuracy of each member on ``x`` (``(S, N, 2)``), counted as evaluation NFE."""
    counter = model.counter
    phase, counter.phase = counter.phase, "eval"
    acc_before = counter.accepted, counter.rejected
    try:
        pred = model(x).argmax(-1)
    finally:
        counter.phase = phase
        counter.accepted, counter.rejected = acc_before  # steps of evaluation solves are not training steps
    return (pred == y).float().mean(1).tolist()


def _stack(arrays: Sequence[np.ndarray], device) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).to(device)


def run_config(model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu", extra: dict | None = None) -> dict:
    """The full config a training record stores (and its store path is hashed from)."""
    return {"kind": "train", **(extra or {}), "seed": int(seed), "device": device, **asdict(model_cfg), **asdict(protocol)}


def train(
    model_cfg: ModelConfig,
    protocol: Protocol,
    seeds: Sequence[int],
    device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
    extra_config: dict | None = None,
    return_model: bool = False,
):
    """Train one model per seed (as one ensemble) and return one record per seed
    (and, with ``return_model``, the trained ensemble).

    ``progress(epoch, mean_loss)`` is called after every epoch.  Exceptions
    other than divergence propagate (the executor stores them as ``error``).
    """
    model_cfg.validate()
    protocol.validate()
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if len(seeds) > 1 and model_cfg.adaptive:
        raise ValueError("adaptive solvers share one step-size controller: train their seeds one at a time")
    S, P = len(seeds), protocol
    splits = [data.make_split(s, P.n_train, P.n_test, P.sigma) for s in seeds]
    xtr, ytr = _stack([sp.x_train for sp in splits], device), _stack([sp.y_train for sp in splits], device)
    xte, yte = _stack([sp.x_test for sp in splits], device), _stack([sp.y_test for sp in splits], device)
    shufflers = [data.rng(s, data.STREAM_SHUFFLE) for s in seeds]

    model = Classifier(model_cfg, seeds).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=P.lr, fused=True)  # one kernel for all parameters
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P.epochs)
    counter = model.counter
    counter.reset()
    member = torch.arange(S, device=device).unsqueeze(1)
    n_batches = math.ceil(P.n_train / P.batch_size)

    curves = {k: [] for k in ("loss", "train_acc", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")}
    curves["test_epoch"], test_curve = [], []
    diverged: dict[int, str] = {}  # member -> reason
    stopped: dict[int, int] = {}  # member -> last epoch it completed (a diverged member stops there)
    no_eval_at_stop: set[int] = set()
    epochs_done = 0

    t_start = time.perf_counter()
    try:
        for epoch in range(1, P.epochs + 1):
            perm = _stack([g.permutation(P.n_train) for g in shufflers], device)
            before = dict(counter.counts), counter.accepted, counter.rejected
            loss_sum = torch.zeros(S, device=device)
            correct = torch.zeros(S, device=device)
            for b in range(n_batches):
                idx = perm[:, b * P.batch_size : (b + 1) * P.batch_size]
                xb, yb = xtr[member, idx], ytr[member, idx]
                counter.phase = "forward"
                logits = model(xb)
                per_member = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, 2), yb.reshape(-1), reduction="none").view(S, -1).mean(1)
                opt.zero_grad(set_to_none=True)
                counter.phase = "backward"
                per_member.sum().backward()
                counter.phase = "forward"
                opt.step()
                with torch.no_grad():
                    loss_sum += per_member.detach() * idx.shape[1]
                    correct += (logits.argmax(-1) == yb).sum(1)
            sched.step()
            epochs_done = epoch
            losses = (loss_sum / P.n_train).tolist()
            curves["loss"].append(losses)
            curves["train_acc"].append((correct / P.n_train).tolist())
            curves["nfe_forward"].append(counter.counts["forward"] - before[0]["forward"])
            curves["nfe_backward"].append(counter.counts["backward"] - before[0]["backward"])
            curves["accepted_steps"].append(counter.accepted - before[1])
            curves["rejected_steps"].append(counter.rejected - before[2])
            for s, l in enumerate(losses):
                if s not in diverged and not math.isfinite(l):
                    diverged[s] = f"non-finite training loss in epoch {epoch}"
                    stopped[s] = epoch
                    no_eval_at_stop.add(s)  # alone, it would stop before this epoch's evaluation
            if len(diverged) == S:
                raise Diverged(diverged[0])
            if epoch % P.eval_every == 0 or epoch == P.epochs:
                acc = evaluate(model, xte[:, : P.curve_test_points], yte[:, : P.curve_test_points])
                curves["test_epoch"].append(epoch)
                test_curve.append(acc)
            if progress:
                progress(epoch, float(np.nanmean(losses)) if any(map(math.isfinite, losses)) else float("nan"))
    except Diverged:
        pass
    except AssertionError as exc:  # torchdiffeq's adaptive step control gives up this way
        if not _is_solver_failure(exc):
            raise
        for s in range(S):
            diverged.setdefault(s, f"solver failure after epoch {epochs_done}: {exc}")
            stopped.setdefault(s, epochs_done)
    wall = time.perf_counter() - t_start

    # Final measurements, each member on its own.
    nfe_eval_before = counter.counts["eval"]
    try:
        train_acc = evaluate(model, xtr, ytr)
        test_acc = evaluate(model, xte, yte)
    except AssertionError as exc:
        if not _is_solver_failure(exc):
            raise
        train_acc = test_acc = [float("nan")] * S
        for s in range(S):
            diverged.setdefault(s, f"solver failure in final evaluation: {exc}")
            stopped.setdefault(s, epochs_done)
    nfe_final_eval = counter.counts["eval"] - nfe_eval_before

    records = []
    env = environment(device)
    for s, seed in enumerate(seeds):
        single = model.member(s) if S > 1 else model
        act = None
        if s not in diverged:
            try:
                single.counter.phase = "forward"
                before = dict(single.counter.counts), single.counter.accepted, single.counter.rejected
                act = activation_bytes(single, xtr[s : s + 1, : P.batch_size], ytr[s : s + 1, : P.batch_size])
                if single is model:  # the measuring step is not training
                    single.counter.counts.update(before[0])
                    single.counter.accepted, single.counter.rejected = before[1], before[2]
            except AssertionError as exc:
                if not _is_solver_failure(exc):
                    raise
        status = "diverged" if s in diverged else "ok"
        # A diverged member's record ends where it stopped, exactly as if it had trained alone.
        e = stopped.get(s, epochs_done)
        final_loss = curves["loss"][e - 1][s] if e else float("nan")
        n_test = sum(1 for t in curves["test_epoch"] if t < e or (t == e and s not in no_eval_at_stop))
        nan = float("nan")
        config = run_config(model_cfg, P, seed, device, extra_config)
        records.append({
            "schema": SCHEMA_VERSION,
            "kind": "train",
            "config": config,
            "status": status,
            "reason": diverged.get(s),
            "env": env,
            "metrics": {
                "params": model.param_count(),
                "train_acc": nan if s in diverged else train_acc[s],
                "test_acc": nan if s in diverged else test_acc[s],
                "final_loss": final_loss,
                "epochs_completed": e,
                "nfe_forward": sum(curves["nfe_forward"][:e]),
                "nfe_backward": sum(curves["nfe_backward"][:e]),
                "nfe_eval": counter.counts["eval"],
                "nfe_final_eval": nfe_final_eval,
                "accepted_steps": sum(curves["accepted_steps"][:e]),
                "rejected_steps": sum(curves["rejected_steps"][:e]),
                "wall_time_s": wall / S,
                "activation_bytes": act,
            },
            "timing": {
                "isolated": False,
                "ensemble_members": S,
                "ensemble_wall_time_s": wall,
                "note": "wall_time_s is the ensemble's training-loop time divided by its members, "
                        "measured while other runs may share the machine (contended)",
            },
            "curves": {
                "epoch": list(range(1, e + 1)),
                "loss": [row[s] for row in curves["loss"][:e]],
                "train_acc": [row[s] for row in curves["train_acc"][:e]],
                "nfe_forward": curves["nfe_forward"][:e],
                "nfe_backward": curves["nfe_backward"][:e],
                "accepted_steps": curves["accepted_steps"][:e],
                "rejected_steps": curves["rejected_steps"][:e],
                "test_epoch": curves["test_epoch"][:n_test],
                "test_acc": [row[s] for row in test_curve[:n_test]],
            },
        })
    return (records, model) if return_model else records


def error_record(config: dict, exc: BaseException) -> dict:
    """The record of a run that raised: status ``error`` with the traceback."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": config.get("kind", "train"),
        "config": config,
        "status": "error",
        "reason": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
        "env": environment(config.get("device", "cpu")),
        "metrics": {},
    }
