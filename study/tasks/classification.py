"""Training: the article's protocol, plain and linear.

:func:`fit` builds the data and the model, loops over epochs of mini-batches
(the one training loop of every task, :mod:`study.tasks.loop`), evaluates and
returns a :class:`History`; turning it into records is the ``train`` runner's
job.  Several seeds of a fixed-step variant train together as one ensemble
model (stacked weights); each member sees its own data,
shuffling and initialisation, exactly as if it were trained alone, and a
member that diverges stops where it would have stopped alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import ModelConfig, Protocol
from ..engine import optim
from ..engine.instrument import activation_bytes
from ..engine.loss import member_losses
from ..engine.models import Classifier
from ..engine.rnode import RegularisedMLP
from ..engine.solve import is_solver_failure  # noqa: F401 - the one failure rule (re-exported)
from . import loop
from .spiral import data

CURVES = ("loss", "train_acc", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")


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


@dataclass
class Data:
    """Every member's training and test set, stacked ``(S, N, ...)``, and its shuffling stream."""

    xtr: torch.Tensor
    ytr: torch.Tensor
    xte: torch.Tensor
    yte: torch.Tensor
    shufflers: list

    @classmethod
    def of(cls, seeds: Sequence[int], P: Protocol, device) -> "Data":
        splits = [data.make_split(s, P.n_train, P.n_test, P.sigma) for s in seeds]
        return cls(_stack([sp.x_train for sp in splits], device), _stack([sp.y_train for sp in splits], device),
                   _stack([sp.x_test for sp in splits], device), _stack([sp.y_test for sp in splits], device),
                   [data.rng(s, data.STREAM_SHUFFLE) for s in seeds])


class History(loop.History):
    """What training did (:class:`study.tasks.loop.History`, rounds are epochs): per-epoch curves (loss and
    accuracies per member), the test curve, divergence, finals."""

    def __init__(self, model: Classifier, seeds: list[int], snapshot_epochs=frozenset()):
        super().__init__(len(seeds), CURVES, "epoch")
        self.model, self.seeds = model, seeds
        self.test_epochs: list[int] = []
        self.test_curve: list[list[float]] = []  # per evaluation, per member
        self.no_eval_at_stop: set[int] = set()  # members that alone would not evaluate the epoch they stopped in
        self.train_acc: list[float] = []
        self.test_acc: list[float] = []
        self.nfe_final_eval: list[int] = []  # per member
        self.activation_bytes: list[int | None] = []
        self.snapshots: dict[int, dict] = {}  # epoch -> the weights after it (0: initial)
        self.snapshot_epochs = frozenset(snapshot_epochs)

    @property
    def epochs_done(self) -> int:
        return self.done

    def snapshot(self, epoch: int) -> None:
        if epoch in self.snapshot_epochs:
            self.snapshots[epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def last_epoch(self, member: int) -> int:
        """The last epoch member ``member`` completed (a diverged member stops there)."""
        return self.stopped.get(member, self.done)

    def test_evaluations(self, member: int) -> int:
        """How many test-curve points member ``member`` would have alone."""
        e = self.last_epoch(member)
        return sum(1 for t in self.test_epochs if t < e or (t == e and member not in self.no_eval_at_stop))


class Remedies:
    """A remedied protocol's draws for each mini-batch: STEER's end time (the member's own stream: a STEER run
    trains one seed) and RNODE's field with each member's Hutchinson probe (its own generator), so a member's
    draws depend on its seed alone."""

    def __init__(self, seeds: Sequence[int], P: Protocol, dim: int):
        self.P, self.dim = P, dim
        self.steer = data.rng(seeds[0], data.STREAM_STEER) if P.steer else None
        self.gens = [torch.Generator().manual_seed(int(data.rng(s, data.STREAM_PROBE).integers(2**62)))
                     for s in seeds] if P.jacobian else None

    def end_time(self) -> float:
        return 1.0 if self.steer is None else float(1.0 + self.P.steer * (2.0 * self.steer.random() - 1.0))

    def field(self, batch: int, like: torch.Tensor):
        if not self.P.regularised:
            return None
        probe = None
        if self.gens is not None:
            probe = torch.stack([torch.randn(self.dim, batch, generator=g) for g in self.gens]).to(like)
        return RegularisedMLP(self.dim, probe, jacobian=self.P.jacobian > 0)

    def logits(self, model: Classifier, xb: torch.Tensor):
        """The logits and the objective's penalty per member (``(S,)``, zero without RNODE)."""
        logits, E, F = model.remedied(xb, self.end_time(), self.field(xb.shape[1], xb))
        if E is None:
            return logits, 0.0
        return logits, self.P.kinetic * E.mean(1) + self.P.jacobian * F.mean(1)


def _run_epoch(model: Classifier, opt, d: Data, P: Protocol, remedies: Remedies | None = None
               ) -> tuple[list[float], list[float]]:
    """One epoch of mini-batches; returns each member's mean loss (the cross-entropy: the remedies' penalties are in
    the objective, not in it) and training accuracy."""
    S = len(d.shufflers)
    device = d.xtr.device
    member = torch.arange(S, device=device).unsqueeze(1)
    perm = _stack([g.permutation(P.n_train) for g in d.shufflers], device)
    loss_sum = torch.zeros(S, device=device)
    correct = torch.zeros(S, device=device)
    counter = model.counter
    for b in range(P.batches):
        idx = perm[:, b * P.batch_size : (b + 1) * P.batch_size]
        xb, yb = d.xtr[member, idx], d.ytr[member, idx]
        counter.phase = "forward"
        if remedies is None:
            logits, penalty = model(xb), 0.0
        else:
            logits, penalty = remedies.logits(model, xb)
        per_member = member_losses(logits, yb)
        opt.zero_grad(set_to_none=True)
        counter.phase = "backward"
        (per_member + penalty).sum().backward()
        counter.phase = "forward"
        opt.step()
        with torch.no_grad():
            loss_sum += per_member.detach() * idx.shape[1]
            correct += (logits.argmax(-1) == yb).sum(1)
    return (loss_sum / P.n_train).tolist(), (correct / P.n_train).tolist()


def _train_epochs(h: History, opt, sched, d: Data, P: Protocol, progress, remedies: Remedies | None = None) -> None:
    """The epochs, by the one training loop (:func:`study.tasks.loop.run`): a curve point every epoch, the test
    curve every ``eval_every`` epochs while a member trains.  The NFE and step curves are per member (equal for
    every member unless their solves have per-member step control)."""

    def epoch():
        losses, accs = _run_epoch(h.model, opt, d, P, remedies)
        h.snapshot(h.done + 1)
        return losses, {"train_acc": accs}

    def test(epoch_done: int) -> None:
        if epoch_done % P.eval_every == 0 or epoch_done == P.epochs:
            h.test_epochs.append(epoch_done)
            h.test_curve.append(evaluate(h.model, d.xte[:, : P.curve_test_points], d.yte[:, : P.curve_test_points]))

    loop.run(h, h.model.counter, epoch, P.epochs, 1, loop.CLASSIFIERS, sched, progress, after_point=test,
             on_stop=h.no_eval_at_stop.add)  # alone, a member that stops would not evaluate that epoch


def _final_evaluation(h: History, d: Data) -> None:
    counter, S = h.model.counter, len(h.seeds)
    before = counter.snapshot(S)["eval"]
    try:
        h.train_acc = evaluate(h.model, d.xtr, d.ytr)
        h.test_acc = evaluate(h.model, d.xte, d.yte)
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        h.train_acc = h.test_acc = [float("nan")] * S
        for s in range(S):
            h.diverge(s, f"solver failure in final evaluation: {exc}", h.epochs_done)
    h.nfe_final_eval = [a - b for a, b in zip(counter.snapshot(S)["eval"], before)]
    for s, why in list(counter.failures.items()):
        if s not in h.diverged:
            h.diverge(s, f"solver failure in final evaluation: {why}", h.epochs_done)
            h.train_acc[s] = h.test_acc[s] = float("nan")


def _member_activation_bytes(h: History, s: int, d: Data, P: Protocol) -> int | None:
    """Saved-tensor bytes of one training step of member ``s`` alone (not counted as training)."""
    model = h.model
    single = model.member(s) if len(h.seeds) > 1 else model
    counter = single.counter
    counter.phase = "forward"
    before = dict(counter.counts), counter.accepted, counter.rejected
    implicit = {k: dict(getattr(counter, k)) for k in ("newton", "linear_solves") if hasattr(counter, k)}
    try:
        act = activation_bytes(single, d.xtr[s : s + 1, : P.batch_size], d.ytr[s : s + 1, : P.batch_size])
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return None
    if single is model:  # the measuring step is not training
        counter.counts.update(before[0])
        counter.accepted, counter.rejected = before[1], before[2]
        counter.__dict__.update(implicit)
    return act


def fit(model_cfg: ModelConfig, protocol: Protocol, seeds: Sequence[int], device: str = "cpu",
        progress: Callable[[int, float], None] | None = None, snapshots: Sequence[int] = (),
        data_: Data | None = None) -> History:
    """Train one model per seed (as one ensemble) and say what happened.

    ``progress(epoch, mean_loss)`` is called after every epoch; the weights after each epoch in
    ``snapshots`` (0: the initial weights) are kept in ``History.snapshots``.  ``data_``: every member's data
    (default: the spiral's, :meth:`Data.of`; another classification task brings its own).  Exceptions
    other than divergence propagate (the executor stores them as ``error``).
    """
    model_cfg.validate()
    protocol.validate()
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if len(seeds) > 1 and not model_cfg.batches_seeds:
        raise ValueError(f"{model_cfg.backend} has one step-size controller per solve: train its seeds one at a time")
    if protocol.remedied and model_cfg.model != "ode":
        raise ValueError(f"RNODE and STEER act on a flow: the {model_cfg.model} model has none")
    if len(seeds) > 1 and protocol.steer:
        raise ValueError("STEER draws each seed's own end times: train its seeds one at a time")
    d = Data.of(seeds, protocol, device) if data_ is None else data_
    model = Classifier(model_cfg, seeds).to(device)
    if protocol.weight_decay:  # decoupled weight decay
        opt = optim.AdamW(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay, fused=True)
    else:
        opt = optim.Adam(model.parameters(), lr=protocol.lr, fused=True)  # one kernel for all parameters
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=protocol.epochs)
    model.counter.reset()
    h = History(model, seeds, snapshot_epochs=frozenset(snapshots))
    h.snapshot(0)
    _train_epochs(h, opt, sched, d, protocol, progress,
                  Remedies(seeds, protocol, model_cfg.lift_dim) if protocol.remedied else None)
    _final_evaluation(h, d)
    h.activation_bytes = [None if s in h.diverged else _member_activation_bytes(h, s, d, protocol)
                          for s in range(len(seeds))]
    return h
