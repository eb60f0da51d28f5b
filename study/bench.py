"""Honest cost measurements: ``study bench`` and the ``timing`` experiment.

Everything a table compares is measured in one process, interleaved round by
round (so drift and neighbours hit every candidate alike), with warm-up first,
synchronised on CUDA, and reported as a median with its spread (half the
interquartile range) over rounds.  Ratios, not absolute times, are what
transfers between runs on a shared machine.

The *bare* loop is the framework floor: the same layers as ``nn.Linear``
modules on ``[t; y]`` and a hand-unrolled solver loop, no solver abstraction.
The arithmetic floor is the step's FLOPs over the measured matrix-multiply
rate at the step's own matrix sizes.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from . import data
from .measure import environment, loss_fn, median_spread, sync, time_repeated
from .models import Classifier
from .train import SCHEMA_VERSION
from .variants import VARIANTS, variant_config


# -- the framework floor ---------------------------------------------------------------------------

class BareODE(nn.Module):
    """Lift, dynamics on [t; y] and head as plain ``nn.Linear`` modules; the solver loop unrolled by hand."""

    def __init__(self, method: str, steps: int, dim: int = 6, hidden: int = 128, head: int = 64):
        super().__init__()
        self.method, self.steps = method, steps
        self.lift = nn.Linear(2, dim)
        self.l1, self.l2, self.l3 = nn.Linear(dim + 1, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, dim)
        self.h1, self.h2 = nn.Linear(dim, head), nn.Linear(head, 2)

    def f(self, t: float, y: torch.Tensor) -> torch.Tensor:
        ty = torch.cat([y.new_full((y.shape[0], 1), t), y], 1)
        return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(ty)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lift(x)
        h = 1.0 / self.steps
        for i in range(self.steps):
            t = i * h
            if self.method == "euler":
                y = y + h * self.f(t, y)
            else:  # classic RK4
                k1 = self.f(t, y)
                k2 = self.f(t + h / 2, y + (h / 2) * k1)
                k3 = self.f(t + h / 2, y + (h / 2) * k2)
                k4 = self.f(t + h, y + h * k3)
                y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return self.h2(torch.relu(self.h1(y)))


class TorchodeODE(nn.Module):
    """Our classifier's layers, integrated by torchode's Euler with a fixed step (optional extra)."""

    def __init__(self, model: Classifier, steps: int):
        super().__init__()
        import torchode as to

        self.model, self.steps = model, steps
        term = to.ODETerm(lambda t, y: model.core.func(t[0], y.unsqueeze(0))[0])
        self.solver = to.AutoDiffAdjoint(to.Euler(term=term), to.FixedStepController())
        self.to = to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.model.lift(x.unsqueeze(0))[0]
        b = y0.shape[0]
        problem = self.to.InitialValueProblem(y0=y0, t_start=y0.new_zeros(b), t_end=y0.new_ones(b))
        sol = self.solver.solve(problem, dt0=y0.new_full((b,), 1.0 / self.steps))
        y1 = sol.ys[:, -1]
        return self.model.head2(torch.relu(self.model.head1(y1.unsqueeze(0))))[0]


def _step_fn(model: nn.Module, x, y, mode: str, ensemble: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as in training (study.train)
    ce = nn.CrossEntropyLoss()

    if mode == "forward":
        def step():
            with torch.no_grad():
                model(x)
        return step

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y) if ensemble else ce(out, y)
        loss.backward()
        opt.step()
    return step


def candidates(steps: int, batch: int, device, members: int = 5, with_torchode: bool = True) -> dict:
    """name -> (model, x, y, is_ensemble, members)."""
    sp = data.make_split(0, n_test=2)
    x2 = torch.from_numpy(sp.x_train[:batch]).to(device)
    y2 = torch.from_numpy(sp.y_train[:batch]).to(device)
    xe, ye = x2.unsqueeze(0).expand(members, -1, -1).contiguous(), y2.unsqueeze(0).expand(members, -1).contiguous()
    out = {}
    for method in ("euler", "rk4"):
        torch.manual_seed(0)
        out[f"bare-{method}"] = (BareODE(method, steps).to(device), x2, y2, False, 1)
        out[f"hand-{method}"] = (Classifier(variant_config(method, steps=steps, zero_init=False), [0]).to(device),
                                 x2.unsqueeze(0), y2.unsqueeze(0), True, 1)
        tdq = "tdq-euler" if method == "euler" else "tdq-rk4"
        out[tdq] = (Classifier(variant_config(tdq, steps=steps, zero_init=False), [0]).to(device),
                    x2.unsqueeze(0), y2.unsqueeze(0), True, 1)
        out[f"hand-{method}-x{members}"] = (
            Classifier(variant_config(method, steps=steps, zero_init=False), list(range(members))).to(device),
            xe, ye, True, members)
    if with_torchode:
        try:
            m = Classifier(variant_config("euler", steps=steps, zero_init=False), [0]).to(device)
            out["torchode-euler"] = (TorchodeODE(m, steps), x2, y2, False, 1)
        except ImportError:
            pass
    return out


def matmul_gflops(device, n: int = 128, k: int = 128, m: int = 128, repeats: int = 200) -> float:
    """Measured single-process matrix-multiply rate at the given sizes (GFLOP/s)."""
    a, b = torch.randn(n, k, device=device), torch.randn(k, m, device=device)
    for _ in range(20):
        a @ b
    sync(device)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * n * k * m / best / 1e9


def step_flops(batch: int, dim: int = 6, hidden: int = 128, stages: int = 1, mode: str = "forward") -> float:
    """Matrix-multiply FLOPs of one solver step (backward is twice the forward)."""
    per_eval = 2 * batch * ((dim + 1) * hidden + hidden * hidden + hidden * dim)
    return per_eval * stages * (3 if mode == "train" else 1)


def measure(steps: int = 20, batch: int = 128, rounds: int = 15, device: str = "cpu", min_round_s: float = 0.05,
            with_torchode: bool = True, progress=None) -> dict:
    """The bench table: rows of per-step medians, spreads and ratios, all measured in this process."""
    cands = candidates(steps, batch, device, with_torchode=with_torchode)
    rows = []
    for mode in ("forward", "train"):
        fns = {name: _step_fn(m, x, y, mode, ens) for name, (m, x, y, ens, _) in cands.items()}
        inner = {}
        for name, fn in fns.items():  # warm-up, and calls per round so that a round lasts ~min_round_s
            for _ in range(3):
                fn()
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            inner[name] = max(1, int(min_round_s / max(time.perf_counter() - t0, 1e-6)))
        samples = {name: [] for name in fns}
        for r in range(rounds):
            for name, fn in fns.items():
                sync(device)
                t0 = time.perf_counter()
                for _ in range(inner[name]):
                    fn()
                sync(device)
                members = cands[name][4]
                samples[name].append((time.perf_counter() - t0) / inner[name] / steps / members * 1e6)
            if progress:
                progress(mode, r + 1, rounds)
        for name, s in samples.items():
            med, spread = median_spread(s)
            method = "rk4" if "rk4" in name else "euler"
            rows.append({"solver": name, "mode": mode, "steps": steps, "batch": batch, "method": method,
                         "members": cands[name][4], "median_us": med, "spread_us": spread, "rounds": len(s)})
    for row in rows:
        bare = next(r for r in rows if r["solver"] == f"bare-{row['method']}" and r["mode"] == row["mode"])
        row["ratio_to_bare"] = row["median_us"] / bare["median_us"]
    rate = matmul_gflops(device)
    for row in rows:
        stages = 4 if row["method"] == "rk4" else 1
        row["floor_us"] = step_flops(batch, stages=stages, mode=row["mode"]) / (rate * 1e9) * 1e6
    return {"rows": rows, "matmul_gflops_128": rate}


def run_bench(config: dict, isolated: bool = True) -> list[dict]:
    res = measure(config["steps"], config["batch_size"], config["rounds"], config.get("device", "cpu"),
                  with_torchode=config.get("torchode", True))
    return [{"schema": SCHEMA_VERSION, "kind": "bench", "config": config, "status": "ok", "reason": None,
             "env": environment(config.get("device", "cpu")), "metrics": res, "timing": {"isolated": isolated}}]


# -- the timing experiment -------------------------------------------------------------------------

def run_timing(config: dict, isolated: bool = True) -> list[dict]:
    """One variant's training step (forward + backward + Adam step at batch 128), measured alone.

    Also the per-seed step time when ``members`` seeds train as one batched model
    (fixed-step variants).  ``implied_protocol_s`` is the step time times the
    protocol's 500 x 8 steps; for dopri5 the step time depends on the weights
    (NFE per solve), so the record also gives the time per dynamics evaluation.
    """
    device = config.get("device", "cpu")
    cfg = variant_config(config["variant"])
    sp = data.make_split(config["seed"], n_test=2)
    B = config["batch_size"]
    out: dict = {}
    for members in sorted({1, config["members"]} if not cfg.adaptive else {1}):
        model = Classifier(cfg, list(range(config["seed"], config["seed"] + members))).to(device)
        x = torch.from_numpy(sp.x_train[:B]).to(device).unsqueeze(0).expand(members, -1, -1).contiguous()
        y = torch.from_numpy(sp.y_train[:B]).to(device).unsqueeze(0).expand(members, -1).contiguous()
        fn = _step_fn(model, x, y, "train", True)
        for _ in range(config["warmup"]):
            fn()
        model.counter.reset()  # count the timed steps only
        samples = [t / members for t in time_repeated(fn, device, warmup=0, repeats=config["repeats"])]
        med, spread = median_spread(samples)
        nfe = (model.counter.counts["forward"] + model.counter.counts["backward"]) / config["repeats"]
        key = "" if members == 1 else f"_x{members}"
        out[f"step_time_s{key}"] = med
        out[f"step_time_spread_s{key}"] = spread
        out[f"nfe_per_step{key}"] = nfe
        out[f"time_per_nfe_s{key}"] = med / nfe if nfe else None
    batches = -(-1000 // B)
    out["implied_protocol_s"] = out["step_time_s"] * 500 * batches
    if "step_time_s_x" + str(config["members"]) in out:
        out["implied_protocol_s_batched"] = out[f"step_time_s_x{config['members']}"] * 500 * batches
    out["repeats"] = config["repeats"]
    return [{"schema": SCHEMA_VERSION, "kind": "timing", "config": config, "status": "ok", "reason": None,
             "env": environment(device), "metrics": out, "timing": {"isolated": isolated}}]


def timing_configs(repeats: int, device: str = "cpu") -> list[dict]:
    return [{"kind": "timing", "variant": v, "batch_size": 128, "repeats": repeats, "warmup": 5, "members": 5,
             "seed": 0, "device": device} for v in VARIANTS]
