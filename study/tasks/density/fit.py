"""Training the density task's flows: minibatches, one iteration, the likelihoods of a solve, the loop."""
from __future__ import annotations

import math

import numpy as np

from .. import loop
from ..ensemble import is_solver_failure
from ..loop import History
from ...config import ModelConfig
from .data import STREAM_BATCHES, STREAM_STEER, _rng, data
from .field import CNFField, EXACT, Flow, log_normal, member
from .protocol import Protocol

CURVES = ("loss", "val_nll", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")


# -- training --------------------------------------------------------------------------------------------------

def _points(x: np.ndarray, S: int, like):
    """Points ``(n, 2)`` as every member's states ``(S, 2, n)``."""
    import torch

    return torch.as_tensor(x.T, dtype=like.dtype, device=like.device).unsqueeze(0).expand(S, 2, -1).contiguous()


class _Batches:
    """Each member's minibatches (its own generator: the draws depend on its seed alone) and, with Hutchinson's
    estimator, its probes."""

    def __init__(self, train: np.ndarray, seeds, P: Protocol, like):
        import torch

        self.train = torch.as_tensor(train, dtype=like.dtype, device=like.device)
        self.gens = [_rng(s, STREAM_BATCHES) for s in seeds]
        self.probe_gens = [torch.Generator().manual_seed(int(s) * 104729 + 22) for s in seeds]
        self.steer = _rng(P.data_seed, STREAM_STEER)  # one end time per iteration, the same for every seed
        self.P = P

    def end_time(self) -> float:
        """This iteration's end time: ``t_end``, or STEER's draw around it."""
        if self.P.steer == 0:
            return self.P.t_end
        return float(self.P.t_end + self.P.steer * (2.0 * self.steer.random() - 1.0))

    def next(self):
        import torch

        idx = torch.as_tensor(np.stack([g.choice(len(self.train), self.P.batch_size, replace=False)
                                        for g in self.gens]), device=self.train.device)
        x = self.train[idx].transpose(1, 2).contiguous()  # (S, 2, B)
        if self.P.divergence != "hutchinson":
            return x, None
        probe = torch.stack([torch.randn(2, self.P.batch_size, generator=g, dtype=x.dtype) for g in self.probe_gens])
        return x, probe.to(x.device)


def _iterate(flow: Flow, opt, batches: _Batches, P: Protocol) -> list:
    """One iteration: each member's minibatch NLL (what the loss curve shows; the regularisers' terms are in the
    objective, not in it)."""
    x, probe = batches.next()
    counter = flow.counter
    counter.phase = "forward"
    flow.field = EXACT if probe is None and not P.regularised else CNFField(probe, P.regularised)
    y1 = flow.end_state(x, t_end=batches.end_time())
    per_member = -(log_normal(y1[:, :2]) + y1[:, 2]).mean(1)
    objective = per_member
    if P.regularised:
        objective = per_member + P.kinetic * y1[:, 3].mean(1) + P.jacobian * y1[:, 4].mean(1)
    opt.zero_grad(set_to_none=True)
    counter.phase = "backward"
    objective.sum().backward()
    counter.phase = "forward"
    flow.field = EXACT
    opt.step()
    return per_member.detach().tolist()


def evaluate_nll(flow: Flow, x: np.ndarray, cfg: ModelConfig | None = None, t_end: float = 1.0) -> np.ndarray:
    """Every member's mean NLL of the points ``x`` under ``cfg``'s solve (default the training one), no graph, in
    the model's precision (not counted): ``(S,)``, NaN for a member whose solve failed."""
    return -log_likelihoods(flow, x, cfg, t_end)[0].mean(1)


def log_likelihoods(flow: Flow, x: np.ndarray, cfg: ModelConfig | None = None, t_end: float = 1.0,
                    chunk: int = 4096) -> tuple[np.ndarray, list]:
    """``log p`` of every point of ``x`` for every member ``(S, n)`` by ``cfg``'s solve, no graph, and each
    member's evaluations of one solve (the mean over the chunks of ``chunk`` points), counted apart from the
    model's own counter.  A member whose solve failed is NaN."""
    import torch

    from ...engine.models import Counter

    own, flow.counter = flow.counter, Counter()
    S = len(flow.seeds)
    out = np.full((S, len(x)), np.nan)
    flow.counter.phase = "eval"
    solves = 0
    try:
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                solves += 1
                pts = _points(x[i: i + chunk], S, flow.params[0])
                out[:, i: i + chunk] = flow.log_likelihood(pts, cfg, t_end).cpu().double().numpy()
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        out[:] = np.nan
    finally:
        counter, flow.counter = flow.counter, own
    for m in counter.failures:
        out[m] = np.nan
    return out, [n / max(solves, 1) for n in counter.snapshot(S)["eval"]]


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def fit(cfg: ModelConfig, P: Protocol, seeds, device: str = "cpu", progress=None):
    """Train one CNF per seed (as one ensemble): ``(flow, history)``."""
    import torch

    cfg.validate()
    P.validate()
    if len(seeds) > 1 and not cfg.batches_seeds:
        raise ValueError(f"{cfg.backend} has one step-size controller per solve: train its seeds one at a time")
    flow = Flow(cfg, seeds, P.hidden, device)
    batches = _Batches(data(P, "train"), seeds, P, flow.params[0])
    from ...engine import optim

    opt = (optim.AdamW(flow.params, lr=P.lr, weight_decay=P.weight_decay) if P.weight_decay > 0
           else optim.Adam(flow.params, lr=P.lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P.iterations)
    h = History(len(seeds), CURVES)
    val = data(P, "val")
    loop.run(h, flow.counter, lambda: _iterate(flow, opt, batches, P), P.iterations, P.eval_every, loop.FLOWS,
             sched, progress, evaluate=lambda: {"val_nll": [_finite(evaluate_nll(member(flow, s), val, t_end=P.t_end)[0])
                                                            for s in range(h.S)]})
    flow.field = EXACT
    return flow, h


