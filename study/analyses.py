"""Runners for the experiments that are not a plain training run.

Each takes a run config (plain data, see ``study.experiments``) and returns
its record(s): ``memory`` (saved-tensor bytes and time of one training step),
``convergence`` (solver error against step size on an exact solution),
``gradients`` (adjoint against direct-backprop gradients on trained weights)
and ``trajectories`` (a trained model's states and decision regions).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torchdiffeq

from . import data, solvers
from .measure import activation_bytes, environment, loss_fn, median_spread, sync, time_repeated
from .models import Classifier, ModelConfig
from .train import SCHEMA_VERSION, Protocol, train
from .variants import variant_config


def _record(config: dict, metrics: dict, isolated: bool | None = None, **extra) -> dict:
    rec = {"schema": SCHEMA_VERSION, "kind": config["kind"], "config": config, "status": "ok", "reason": None,
           "env": environment(config.get("device", "cpu")), "metrics": metrics, **extra}
    if isolated is not None:
        rec["timing"] = {"isolated": isolated}
    return rec


def _batch(seed: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    sp = data.make_split(seed, n_test=2)
    return (torch.from_numpy(sp.x_train[:n]).unsqueeze(0).to(device),
            torch.from_numpy(sp.y_train[:n]).unsqueeze(0).to(device))


def training_step_fn(model: Classifier, x: torch.Tensor, y: torch.Tensor, optimizer=None):
    """A closure running one training step (forward + backward [+ optimizer step])."""

    def step():
        model.zero_grad(set_to_none=True)
        model.counter.phase = "forward"
        loss = loss_fn(model(x), y)
        model.counter.phase = "backward"
        loss.backward()
        model.counter.phase = "forward"
        if optimizer is not None:
            optimizer.step()

    return step


def run_memory(config: dict, isolated: bool = True) -> list[dict]:
    """Saved-tensor bytes, NFE and time of one training step (forward + backward) at one N."""
    device = config.get("device", "cpu")
    mcfg = ModelConfig.from_dict(config)
    model = Classifier(mcfg, [config["seed"]]).to(device)
    x, y = _batch(config["seed"], config["batch_size"], device)
    step = training_step_fn(model, x, y)
    model.counter.reset()
    step()
    nfe_f, nfe_b = model.counter.counts["forward"], model.counter.counts["backward"]
    act = activation_bytes(model, x, y)
    times = time_repeated(step, device, warmup=2, repeats=config["repeats"])
    med, spread = median_spread(times)
    metrics = {"activation_bytes": act, "nfe_forward": nfe_f, "nfe_backward": nfe_b, "params": model.param_count(),
               "step_time_s": med, "step_time_spread_s": spread, "step_time_samples": len(times)}
    if torch.device(device).type == "cuda":
        metrics["cuda_peak_bytes"] = cuda_peak_bytes(step, device, model)
    return [_record(config, metrics, isolated)]


def cuda_peak_bytes(step, device, model: Classifier) -> int:
    """Peak CUDA memory allocated during one step, minus what was allocated before it.

    The hand backend keeps its buffers from one step to the next (study.fused); they are
    dropped first, so that the step allocates, and this counts, them like any other backend's.
    """
    model.drop_workspaces()
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


# -- convergence ---------------------------------------------------------------------------------

def _exact_problem(name: str):
    if name != "cos":
        raise ValueError(f"unknown convergence problem {name!r}")
    # y' = cos(t) y, y(0) = y0  ->  y(t) = y0 exp(sin t); float64 throughout.
    y0 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    return (lambda t, y: torch.cos(torch.as_tensor(t, dtype=torch.float64)) * y), y0, (lambda t: y0 * math.exp(math.sin(t)))


def run_convergence(config: dict) -> list[dict]:
    """Global error at ``t1`` against step size for one solver; the fitted log-log slope is its order."""
    backend, method = config["solver"].split("-", 1)
    f, y0, exact = _exact_problem(config["problem"])
    t1 = float(config["t1"])
    errors = []
    for n in config["steps"]:
        if backend == "hand":
            y1 = solvers.odeint_fixed(f, y0, 0.0, t1, n, method)
        else:
            grid = torch.linspace(0.0, t1, n + 1, dtype=torch.float64)
            y1 = torchdiffeq.odeint(f, y0, grid, method={"rk4": "rk4"}.get(method, method))[-1]
        errors.append(float((y1 - exact(t1)).abs().max()))
    h = [t1 / n for n in config["steps"]]
    # The order is the slope over the four finest step sizes whose error is above float64 rounding.
    usable = [(hh, e) for hh, e in zip(h, errors) if e > 1e-13][-4:]
    slope = float(np.polyfit(np.log([u[0] for u in usable]), np.log([u[1] for u in usable]), 1)[0]) if len(usable) >= 2 else None
    tab = solvers.get_tableau("rk4-38" if (backend == "tdq" and method == "rk4") else method)
    return [_record(config, {"steps": list(config["steps"]), "h": h, "error": errors, "slope": slope,
                             "order": tab.order, "tableau": tab.name})]


# -- gradients -----------------------------------------------------------------------------------

def _flat_grad(model: Classifier, x, y) -> tuple[torch.Tensor, int, int, float]:
    model.zero_grad(set_to_none=True)
    model.counter.reset()
    t0 = time.perf_counter()
    training_step_fn(model, x, y)()
    dt = time.perf_counter() - t0
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return g, model.counter.counts["forward"], model.counter.counts["backward"], dt


def run_gradients(config: dict) -> list[dict]:
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
    (train_rec,), trained = train(variant_config(config["train_variant"]), proto, [seed], device, return_model=True,
                                  extra_config={"variant": config["train_variant"]})
    state = trained.state_dict()
    x, y = _batch(seed, config["batch_size"], device)

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
    return [_record(config, {"rows": rows, "trained_test_acc": train_rec["metrics"]["test_acc"]})]


# -- trajectories --------------------------------------------------------------------------------

def run_trajectories(config: dict) -> list[dict]:
    """Train one model, then save its lifted states over t in [0, 1] and its decision regions."""
    device = config.get("device", "cpu")
    seed = config["seed"]
    proto = Protocol.from_dict(config["protocol"])
    (rec,), model = train(variant_config(config["variant"]), proto, [seed], device, return_model=True,
                          extra_config={"variant": config["variant"]})
    sp = data.make_split(seed, proto.n_train, 2, proto.sigma)
    x = torch.from_numpy(sp.x_train[: config["points"]]).unsqueeze(0).to(device)
    g = np.linspace(-1.5, 1.5, config["grid"], dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).unsqueeze(0).to(device)
    with torch.no_grad():
        model.counter.phase = "eval"
        states = model(x, trajectory_points=config["times"])[:, 0]  # (times, points, d)
        prob = torch.softmax(model(grid)[0], -1)[:, 1]
    out = {
        "times": np.linspace(0, 1, config["times"]).round(6).tolist(),
        "labels": sp.y_train[: config["points"]].tolist(),
        "inputs": np.round(sp.x_train[: config["points"]].astype(float), 5).tolist(),
        "states": np.round(states.cpu().numpy().astype(float), 5).tolist(),
        "grid": np.round(g.astype(float), 6).tolist(),
        "prob_class1": np.round(prob.cpu().numpy().reshape(len(g), len(g)).astype(float), 4).tolist(),
    }
    metrics = {k: rec["metrics"][k] for k in ("train_acc", "test_acc", "params", "nfe_forward")}
    return [{**_record(config, metrics), "status": rec["status"], "reason": rec["reason"], "data": out}]
