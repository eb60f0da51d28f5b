"""A trajectory-fitting task's work-precision problem: its field over one window of the truth."""
from __future__ import annotations

from . import data
from .fit import fit


def workprecision_models(task, config: dict) -> dict:
    """``{name: (flow, status)}`` for the names in ``config["fields"]``: ``trained`` (``train_variant`` trained
    alone on ``seed`` with ``protocol``) and ``initial`` (its initial weights)."""
    from .model import Flow

    P = task.Protocol.from_dict(config["protocol"])
    cfg = task.model_config(config["train_variant"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Flow(task, cfg, [config["seed"]], P.field_hidden), "ok")
        else:
            flow, h = fit(task, cfg, P, [config["seed"]])
            out[name] = (flow, "diverged" if h.diverged else "ok")
    return out


def problem(task, flow, config: dict):
    """The field of ``flow`` (member 0, float64) from ``batch`` true states at random observation times over one
    window (``batch_time - 1`` observation intervals); the loss is the mean absolute error of the end states
    against the truth there."""
    import torch

    from ...runners.workprecision import Problem

    P = task.Protocol.from_dict(config["protocol"])
    t_obs = data.times(P)[0]
    true = data.truth(task.system, t_obs)
    starts = data.rng(task.system, config["seed"], data.STREAM_PROBLEM).choice(P.n_points - P.batch_time,
                                                                               config["batch"], replace=False)
    y0 = torch.as_tensor(true[starts].T, dtype=torch.float64).unsqueeze(0).contiguous()
    target = torch.as_tensor(true[starts + P.batch_time - 1].T, dtype=torch.float64).unsqueeze(0)
    t1 = float(t_obs[P.batch_time - 1])
    return Problem(flow.plain, tuple(flow.member_weights(0)), y0, 0.0, t1, lambda y1: (y1 - target).abs().mean())
