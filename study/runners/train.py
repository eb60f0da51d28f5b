"""The ``train`` runner: one training run per seed, the article's protocol, one record each.

Several seeds of a fixed-step variant are one job and train as one batched
model (:func:`study.engine.train.fit`); each seed gets its own record.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .. import records
from ..config import METHODS, ModelConfig, Protocol, run_config
from ..engine.train import History, fit
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
    counts = h.model.counter.counts
    metrics = {
        "params": h.model.param_count(),
        "train_acc": nan if diverged else h.train_acc[s],
        "test_acc": nan if diverged else h.test_acc[s],
        "final_loss": c["loss"][e - 1][s] if e else nan,
        "epochs_completed": e,
        "nfe_forward": sum(c["nfe_forward"][:e]),
        "nfe_backward": sum(c["nfe_backward"][:e]),
        "nfe_eval": counts["eval"],
        "nfe_final_eval": h.nfe_final_eval,
        "accepted_steps": sum(c["accepted_steps"][:e]),
        "rejected_steps": sum(c["rejected_steps"][:e]),
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
        **{k: c[k][:e] for k in ("nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")},
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


def run(configs: list[dict]) -> list[dict]:
    """The records of one job: ``configs`` differ only in their seed."""
    first = configs[0]
    recs, _ = train(ModelConfig.from_dict(first), Protocol.from_dict(first), [c["seed"] for c in configs],
                    device=first.get("device", "cpu"), extra_config={"variant": first["variant"]})
    return recs
