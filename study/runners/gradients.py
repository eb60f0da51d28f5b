"""The ``gradients`` runner: adjoint against direct-backprop gradients on the same trained weights."""
from __future__ import annotations

import time

import torch

from .. import records
from ..config import Protocol
from ..engine.models import Classifier
from ..tasks.spiral.step import first_batch, training_step
from ..provenance import environment
from ..variants import variant_config
from ..tasks.spiral import train_models as train

KIND = "gradients"
ALONE = False
BATCHED = False


def cost(config: dict, members: int) -> float:
    return 2e5


def _flat_grad(model: Classifier, x, y) -> tuple[torch.Tensor, int, int, float]:
    model.zero_grad(set_to_none=True)
    model.counter.reset()
    t0 = time.perf_counter()
    training_step(model, x, y)()
    dt = time.perf_counter() - t0
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return g, model.counter.counts["forward"], model.counter.counts["backward"], dt


def measure(config: dict) -> dict:
    """Adjoint gradients against direct backpropagation on the same trained weights.

    The weights come from training ``train_variant`` for the configured
    protocol.  For each step count, ``adjoint-euler`` / ``adjoint-rk4`` are
    compared with direct backprop through the same solver on the same grid; for
    each tolerance, ``adjoint-dopri5`` (with and without seminorm) with direct
    backprop through ``dopri5``.  ``reference`` is direct backprop through
    400-step RK4, a near-exact gradient of the continuous model.
    """
    device = config.get("device", "cpu")
    seed = config["seed"]
    proto = Protocol.from_dict(config["protocol"])
    (train_rec,), trained = train(variant_config(config["train_variant"]), proto, [seed], device,
                                  extra_config={"variant": config["train_variant"]})
    state = trained.state_dict()
    x, y = first_batch(seed, config["batch_size"], device)

    def grad_of(variant: str, **overrides):
        m = Classifier(variant_config(variant, **overrides), [seed]).to(device)
        m.load_state_dict(state)
        return _flat_grad(m, x, y)

    ref = grad_of("rk4", steps=400)[0]
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    rows = []
    for n in config["steps"]:
        for direct, adjoint in (("tdq-euler", "adjoint-euler"), ("tdq-rk4", "adjoint-rk4")):
            gd, fd, _, td = grad_of(direct, steps=n)
            ga, fa, ba, ta = grad_of(adjoint, steps=n)
            rows.append({"method": adjoint, "steps": n, "tol": None, "rel_err_vs_direct": rel(ga, gd),
                         "rel_err_vs_reference": rel(ga, ref), "direct_rel_err_vs_reference": rel(gd, ref),
                         "nfe_forward": fa, "nfe_backward": ba, "direct_nfe": fd, "time_s": ta, "direct_time_s": td})
    for tol in config["tolerances"]:
        try:
            gd, fd, _, td = grad_of("tdq-dopri5", rtol=tol, atol=tol)
        except AssertionError as exc:  # dopri5 gave up (step cap or underflow): a result, not a crash
            rows.append({"method": "tdq-dopri5", "steps": None, "tol": tol, "failed": str(exc)})
            continue
        for adjoint in ("adjoint-dopri5", "adjoint-dopri5-seminorm"):
            try:
                ga, fa, ba, ta = grad_of(adjoint, rtol=tol, atol=tol)
            except AssertionError as exc:
                rows.append({"method": adjoint, "steps": None, "tol": tol, "failed": str(exc)})
                continue
            rows.append({"method": adjoint, "steps": None, "tol": tol, "rel_err_vs_direct": rel(ga, gd),
                         "rel_err_vs_reference": rel(ga, ref), "direct_rel_err_vs_reference": rel(gd, ref),
                         "nfe_forward": fa, "nfe_backward": ba, "direct_nfe": fd, "time_s": ta, "direct_time_s": td})
    return records.make(config, {"rows": rows, "trained_test_acc": train_rec["metrics"]["test_acc"]}, environment(device))


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]
