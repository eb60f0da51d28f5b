"""The ``train`` runner: one training run per seed, the article's protocol, one record each.

Several seeds of a fixed-step variant are one job and train as one batched
model (:func:`study.engine.train.fit`); each seed gets its own record.  With
``probe: true`` in the config, each trained member is also probed: a logistic
regression (:mod:`study.engine.probe`) fitted on the training points' input
``x``, lifted state ``y(0)`` and flow output ``y(T)``, scored on the held-out
points (``metrics.probe``), and the flow's invertibility in practice: the
relative RMS error of ``y(0)`` recovered from ``y(T)`` by the same fixed-step
solver run backward (``recon_rel``; null without a fixed-step flow).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import records
from ..config import METHODS, ModelConfig, Protocol, run_config
from ..engine import probe as linear_probe
from ..engine.train import Data, History, fit
from ..provenance import environment

KIND = "train"
ALONE = False  # runs beside other jobs
BATCHED = True  # the configs of one job (its seeds) run in one call
ADAPTIVE_NFE_PER_SOLVE = 40  # a rough mean for dopri5 at the study's tolerances (cost estimates only)


def cost(config: dict, members: int) -> float:
    """Relative cost, to start the longest jobs first (units: one dynamics evaluation at batch 128)."""
    proto = Protocol.from_dict(config.get("protocol", config))
    method = METHODS.get(config.get("method"))
    adaptive = method is not None and method.adaptive and config.get("model", "ode") == "ode"
    per_pass = ADAPTIVE_NFE_PER_SOLVE if adaptive else config.get("steps", 20) * (method.stages if method else 1)
    factor = 2.0 if config.get("backend") in ("torchdiffeq-adjoint", "hand-adjoint", "hand-checkpoint") else 1.0  # a second solve
    return proto.epochs * proto.batches * per_pass * factor * (members if members == 1 else 0.6 * members)


def _record(h: History, s: int, model_cfg: ModelConfig, P: Protocol, device: str, extra: dict | None, env: dict) -> dict:
    """Member ``s``'s record; a diverged member's record ends where it stopped, as if it had trained alone."""
    nan = float("nan")
    S, c, e = len(h.seeds), h.curves, h.last_epoch(s)
    n_test = h.test_evaluations(s)
    diverged = s in h.diverged
    totals = h.model.counter.snapshot(S)
    mine = {k: [row[s] for row in c[k][:e]] for k in ("nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")}
    metrics = {
        "params": h.model.param_count(),
        "train_acc": nan if diverged else h.train_acc[s],
        "test_acc": nan if diverged else h.test_acc[s],
        "final_loss": c["loss"][e - 1][s] if e else nan,
        "epochs_completed": e,
        "nfe_forward": sum(mine["nfe_forward"]),
        "nfe_backward": sum(mine["nfe_backward"]),
        "nfe_eval": totals["eval"][s],
        "nfe_final_eval": h.nfe_final_eval[s],
        "accepted_steps": sum(mine["accepted_steps"]),
        "rejected_steps": sum(mine["rejected_steps"]),
        "wall_time_s": h.wall_s / S,
        "activation_bytes": h.activation_bytes[s],
    }
    timing = {"isolated": False, "ensemble_members": S, "ensemble_seeds": list(h.seeds), "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, "
                      "measured while other runs may share the machine (contended)"}
    curves = {
        "epoch": list(range(1, e + 1)),
        "loss": [row[s] for row in c["loss"][:e]],
        "train_acc": [row[s] for row in c["train_acc"][:e]],
        **mine,
        "test_epoch": h.test_epochs[:n_test],
        "test_acc": [row[s] for row in h.test_curve[:n_test]],
    }
    config = run_config(model_cfg, P, h.seeds[s], device, extra)
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s),
                        timing=timing, curves=curves)


def train(model_cfg: ModelConfig, protocol: Protocol, seeds: Sequence[int], device: str = "cpu",
          progress: Callable[[int, float], None] | None = None, extra_config: dict | None = None):
    """Train one model per seed (as one ensemble): ``(records, trained ensemble)``."""
    h = fit(model_cfg, protocol, seeds, device, progress)
    env = environment(device)
    return [_record(h, s, model_cfg, protocol, device, extra_config, env) for s in range(len(h.seeds))], h.model


PROBED = ("input", "y0", "yT")  # the representations the probe reads: x, y(0), y(T)


def _relative_rms(estimate, exact) -> float | None:
    """RMS of ``estimate - exact`` over the RMS of ``exact`` (None when not finite)."""
    err = float((estimate.double() - exact.double()).pow(2).mean().sqrt() / exact.double().pow(2).mean().sqrt())
    return err if np.isfinite(err) else None


def probe_members(model, seeds: Sequence[int], P: Protocol, device: str = "cpu") -> list[dict | None]:
    """Each member's linear-probe accuracies (train fit and held-out) on ``x``, ``y(0)`` and ``y(T)``;
    the evaluations it makes are not counted (they would change no record, but keep the counter honest)."""
    import torch

    d = Data.of(seeds, P, device)
    counter = model.counter
    saved = dict(counter.counts), counter.accepted, counter.rejected
    try:
        with torch.no_grad():
            feats = {"train": (d.xtr, *model.features(d.xtr)), "test": (d.xte, *model.features(d.xte))}
            back = model.reconstruct(feats["test"][2])
    finally:
        counter.counts.update(saved[0])
        counter.accepted, counter.rejected = saved[1], saved[2]
    out: list[dict | None] = []
    for s in range(len(seeds)):
        ytr, yte = d.ytr[s].cpu().numpy(), d.yte[s].cpu().numpy()
        row = {}
        for i, name in enumerate(PROBED):
            ztr, zte = feats["train"][i][s].double().cpu().numpy(), feats["test"][i][s].double().cpu().numpy()
            if not (np.isfinite(ztr).all() and np.isfinite(zte).all()):
                row = None
                break
            fitted = linear_probe.fit(ztr, ytr)
            row[f"{name}_train"] = fitted.accuracy(ztr, ytr)
            row[f"{name}_test"] = fitted.accuracy(zte, yte)
        if row is not None:
            row["recon_rel"] = None if back is None else _relative_rms(back[s], feats["test"][1][s])
        out.append(row)
    return out


def run(configs: list[dict]) -> list[dict]:
    """The records of one job: ``configs`` differ only in their seed."""
    first = configs[0]
    extra = {"variant": first["variant"], **({"probe": True} if first.get("probe") else {})}
    P, seeds, device = Protocol.from_dict(first), [c["seed"] for c in configs], first.get("device", "cpu")
    recs, model = train(ModelConfig.from_dict(first), P, seeds, device=device, extra_config=extra)
    if first.get("probe"):
        for rec, row in zip(recs, probe_members(model, seeds, P, device)):
            if rec["status"] == "ok" and row is not None:
                rec["metrics"]["probe"] = row
    return recs
