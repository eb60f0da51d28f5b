"""Training a trajectory-fitting task's model on random windows of its observations.

Each iteration draws ``batch_size`` start indices per member, solves from the observed state there over the
window's ``batch_time`` observation times with the variant's solver and gradient method (one solve per observation
interval: fixed-step methods take ``steps`` steps per interval, adaptive ones restart their step control at each
observation, on every backend alike), and minimises the mean absolute error against the observations."""
from __future__ import annotations

import numpy as np

from . import data
from .. import loop
from ..loop import History
from ...config import ModelConfig

CURVES = ("loss", "field_err", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")


def batch(obs, gens, P):
    """Each member's windows: starts ``(S, B)`` without replacement, ``y0 (S, d, B)``, targets ``(T, S, d, B)``."""
    import torch

    starts = torch.as_tensor(np.stack([g.choice(P.n_points - P.batch_time, P.batch_size, replace=False)
                                       for g in gens]), device=obs.device)
    member = torch.arange(obs.shape[0], device=obs.device).unsqueeze(1)
    target = torch.stack([obs[member, starts + k] for k in range(P.batch_time)])  # (T, S, B, d)
    target = target.transpose(2, 3)
    return target[0].contiguous(), target


def iterate(flow, opt, obs, gens, t_rel, P):
    """One iteration: each member's loss (mean absolute error over its windows; with RNODE's penalties in the
    objective, not in the loss returned)."""
    counter = flow.counter
    y0, target = batch(obs, gens, P)
    counter.phase = "forward"
    if not P.regularised:
        pred = flow.solve(y0, t_rel)
        per_member = objective = (pred - target).abs().mean((0, 2, 3))
    else:
        import torch

        d = y0.shape[1]
        flow.field = flow.rnode
        try:  # (y, E, F), E and F from 0
            pred = flow.solve(torch.cat([y0, torch.zeros_like(y0[:, :2])], 1), t_rel)
        finally:
            flow.field = flow.plain
        per_member = (pred[:, :, :d] - target).abs().mean((0, 2, 3))
        objective = per_member + P.kinetic * pred[-1, :, d].mean(-1) + P.jacobian * pred[-1, :, d + 1].mean(-1)
    opt.zero_grad(set_to_none=True)
    counter.phase = "backward"
    objective.sum().backward()
    counter.phase = "forward"
    opt.step()
    return per_member.detach().tolist()


def optimizer(params, P):
    """RMSprop (constant, as the demo) or Adam; with weight decay, RMSprop's own or AdamW's decoupled one."""
    from ...engine import optim

    if P.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=P.lr, weight_decay=P.weight_decay)
    if P.weight_decay > 0:
        return optim.AdamW(params, lr=P.lr, weight_decay=P.weight_decay)
    return optim.Adam(params, lr=P.lr)


def fit(task, cfg: ModelConfig, P, seeds, device: str = "cpu", progress=None):
    """Train one field per seed (as one ensemble): ``(flow, history)``."""
    import torch

    from .model import Flow

    cfg.validate()
    P.validate()
    if len(seeds) > 1 and not cfg.batches_seeds:
        raise ValueError(f"{cfg.backend} has one step-size controller per solve: train its seeds one at a time")
    system = task.system
    obs = torch.as_tensor(np.stack([data.observations(system, P, s) for s in seeds]), device=device)
    gens = [data.rng(system, s, data.STREAM_WINDOWS) for s in seeds]
    t_rel = [float(x) for x in data.times(P)[0][: P.batch_time]]
    flow = Flow(task, cfg, seeds, P.field_hidden, device)
    opt = optimizer(flow.params, P)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P.iterations) if P.optimizer == "adam" else None
    h = History(len(seeds), CURVES)
    points = data.field_grid(system, P)
    loop.run(h, flow.counter, lambda: iterate(flow, opt, obs, gens, t_rel, P), P.iterations, P.eval_every, loop.FLOWS,
             sched, progress, evaluate=lambda: {"field_err": [data.field_error(system, v, points)
                                                              for v in flow.values(points)]})
    return flow, h
