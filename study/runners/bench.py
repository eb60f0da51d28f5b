"""The ``bench`` runner and ``study bench``: the per-step cost of the solvers against a bare PyTorch loop.

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

from .. import data, records
from ..config import METHODS
from ..engine.models import Classifier
from ..engine.step import optimizer_step
from ..engine.timer import median_spread, sync
from ..provenance import environment
from ..variants import variant_config

KIND = "bench"
ALONE = True  # it times things: measured alone, after everything else
BATCHED = False


def cost(config: dict, members: int) -> float:
    return 1e3


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
        fns = {name: optimizer_step(m, x, y, mode, ens) for name, (m, x, y, ens, _) in cands.items()}
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
    rate = matmul_gflops(device)
    return {"rows": add_ratios_and_floors(rows, batch, rate), "matmul_gflops_128": rate}


def add_ratios_and_floors(rows: list[dict], batch: int, gflops: float) -> list[dict]:
    """Each row's ratio to the bare loop of its method and mode, and its arithmetic floor at ``gflops``."""
    for row in rows:
        bare = next(r for r in rows if r["solver"] == f"bare-{row['method']}" and r["mode"] == row["mode"])
        row["ratio_to_bare"] = row["median_us"] / bare["median_us"]
        stages = METHODS[row["method"]].stages
        row["floor_us"] = step_flops(batch, stages=stages, mode=row["mode"]) / (gflops * 1e9) * 1e6
    return rows


def record(config: dict, isolated: bool = True, progress=None) -> dict:
    device = config.get("device", "cpu")
    res = measure(config["steps"], config["batch_size"], config["rounds"], device,
                  with_torchode=config.get("torchode", True), progress=progress)
    return records.make(config, res, environment(device), timing={"isolated": isolated})


def run(configs: list[dict]) -> list[dict]:
    return [record(c) for c in configs]
