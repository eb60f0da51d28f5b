"""The density task's work-precision problem: the flow on a held-out batch."""
from __future__ import annotations


from .data import STREAM_PROBLEM, _rng, data
from .field import EXACT, Flow, log_normal
from .fit import fit
from .hooks import model_config
from .protocol import Protocol


# -- the work-precision kind's problem: the flow on a held-out batch -------------------------------------------

def workprecision_models(config: dict) -> dict:
    """``{name: (flow, status)}`` for the names in ``config["fields"]``: ``trained`` (``train_variant`` trained
    alone on ``seed`` with ``protocol``) and ``initial`` (its initial weights)."""
    P = Protocol.from_dict(config["protocol"])
    cfg = model_config(config["train_variant"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Flow(cfg, [config["seed"]], P.hidden), "ok")
        else:
            flow, h = fit(cfg, P, [config["seed"]])
            out[name] = (flow, "diverged" if h.diverged else "ok")
    return out


def problem(flow: Flow, config: dict):
    """The flow of member 0 (float64) from ``batch`` held-out points and a zero log-density change over
    ``[0, t_end]``; the loss is their NLL."""
    import torch

    from ...runners.workprecision import Problem

    P = Protocol.from_dict(config["protocol"])
    test = data(P, "test")
    idx = _rng(config["seed"], STREAM_PROBLEM).choice(len(test), config["batch"], replace=False)
    x = torch.as_tensor(test[idx].T, dtype=torch.float64).unsqueeze(0)
    y0 = torch.cat([x, torch.zeros_like(x[:, :1])], 1).contiguous()
    return Problem(EXACT, tuple(flow.member_weights(0)), y0, 0.0, P.t_end,
                   lambda y1: -(log_normal(y1[:, :2]) + y1[:, 2]).mean())
