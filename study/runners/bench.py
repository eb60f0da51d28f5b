"""The ``bench`` runner and ``study bench``: the per-step cost of the solvers against a bare PyTorch loop.

Everything a table compares is measured in one process, interleaved round by
round (so drift and neighbours hit every candidate alike), with warm-up first,
synchronised on CUDA, and reported as a median with its spread (half the
interquartile range) over rounds.  Ratios, not absolute times, are what
transfers between runs on a shared machine.

The *bare* loop is the framework floor: the same layers as ``nn.Linear``
modules on ``[t; y]`` and a hand-unrolled solver loop, no solver abstraction.
The arithmetic floor is the step's matrix-multiply FLOPs over the best measured
rate of a 128 x 128 x 128 product, the step's largest: an optimistic floor, since
its width-6 products run at a fraction of that rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from .. import records
from ..tasks.spiral import data
from ..config import METHODS
from ..engine.models import Classifier
from ..tasks.spiral.step import optimizer_step
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
        return self.model.head(y1.unsqueeze(0))[0]


class TorchodeDopri5(nn.Module):
    """Our classifier's layers, integrated by torchode's dopri5 with its integral controller (optional extra).  The
    whole batch is one torchode instance (the state flattened), so its RMS error norm reads every point at once,
    as torchdiffeq's and the hand engine's do; its gradient is backpropagation through the solver loop."""

    def __init__(self, model: Classifier):
        super().__init__()
        import torchode as to

        cfg, f = model.cfg, model.core.func
        self.model, self.to = model, to
        term = to.ODETerm(lambda t, y: f(t[0], y.view(1, -1, cfg.lift_dim)).reshape(1, -1))
        self.solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(cfg.atol, cfg.rtol, term=term),
                                         max_steps=cfg.max_num_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.model.lift(x)  # (1, B, d)
        flat = y0.reshape(1, -1)
        problem = self.to.InitialValueProblem(y0=flat, t_start=flat.new_zeros(1), t_end=flat.new_ones(1))
        y1 = self.solver.solve(problem).ys[:, -1].view_as(y0)
        return self.model.head(y1)

    @property
    def counter(self):
        return self.model.counter


class StepNodeODE(nn.Module):
    """Our classifier with its fixed-step solve on the hand engine's one-node steps (each step one graph node, the
    evaluation's hand VJP inside, autograd between steps: what the adaptive and checkpointed solves run) instead
    of the whole-solve fused engine: the row that shows what the fused fast path buys."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..engine import hand_ode

        m, f = self.model, self.model.core.func
        y0 = m.lift(x).transpose(1, 2).contiguous()
        y1 = hand_ode.direct(y0, f.raw(), hand_ode.Solve(m.cfg.method, m.cfg.steps), f.counter).transpose(1, 2)
        return m.head(y1)

    @property
    def counter(self):
        return self.model.counter


@dataclass
class Candidate:
    """One row of the bench: a model and its batch, how its time is normalised (per solver step, or per dynamics
    evaluation for adaptive solves, whose steps vary) and the row its ratio is taken to."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    ensemble: bool
    method: str
    reference: str
    members: int = 1
    per: str = "step"


def _stiff(model: Classifier) -> Classifier:
    """Weights with a flow that dopri5 needs several steps for (a trained model's are like this; fresh ones
    with a zero last layer need one): the last two layers scaled, the same for every adaptive candidate."""
    with torch.no_grad():
        model.core.func.l3.weight.mul_(30.0)
        model.core.func.l2.weight.mul_(3.0)
    return model


def candidates(steps: int, batch: int, device, members: int = 5, with_torchode: bool = True) -> dict[str, Candidate]:
    """name -> Candidate: the bare loops, hand and torchdiffeq fixed steps, batched seeds, torchode, and the hand
    engine's adaptive, adjoint and checkpointed solves against torchdiffeq's on the same weights."""
    sp = data.make_split(0, n_test=2)
    x2 = torch.from_numpy(sp.x_train[:batch]).to(device)
    y2 = torch.from_numpy(sp.y_train[:batch]).to(device)
    x1, y1 = x2.unsqueeze(0), y2.unsqueeze(0)
    xe, ye = x2.unsqueeze(0).expand(members, -1, -1).contiguous(), y2.unsqueeze(0).expand(members, -1).contiguous()
    model = lambda v, seeds=(0,), **kw: Classifier(variant_config(v, zero_init=False, **kw), list(seeds)).to(device)  # noqa: E731
    out: dict[str, Candidate] = {}
    for method in ("euler", "rk4"):
        torch.manual_seed(0)
        bare = f"bare-{method}"
        out[bare] = Candidate(BareODE(method, steps).to(device), x2, y2, False, method, bare)
        out[f"hand-{method}"] = Candidate(model(method, steps=steps), x1, y1, True, method, bare)
        tdq = "tdq-euler" if method == "euler" else "tdq-rk4"
        out[tdq] = Candidate(model(tdq, steps=steps), x1, y1, True, method, bare)
        out[f"hand-{method}-x{members}"] = Candidate(model(method, range(members), steps=steps), xe, ye, True, method,
                                                     bare, members)
        out[f"step-{method}"] = Candidate(StepNodeODE(model(method, steps=steps)), x1, y1, True, method, bare)
        out[f"checkpoint-{method}"] = Candidate(model(f"checkpoint-{method}", steps=steps), x1, y1, True, method, bare)
    # The adjoints with the same arithmetic: torchdiffeq's rk4 is the 3/8 rule.
    out["adjoint-rk4"] = Candidate(model("adjoint-rk4", steps=steps), x1, y1, True, "rk4", "adjoint-rk4")
    out["hand-adjoint-rk4-38"] = Candidate(model("hand-adjoint-rk4", method="rk4-38", steps=steps), x1, y1, True, "rk4",
                                           "adjoint-rk4")
    for name, reference in (("tdq-dopri5", "tdq-dopri5"), ("hand-dopri5", "tdq-dopri5"), ("checkpoint-dopri5", "tdq-dopri5"),
                            ("adjoint-dopri5", "adjoint-dopri5"), ("hand-adjoint-dopri5", "adjoint-dopri5")):
        torch.manual_seed(0)
        out[name] = Candidate(_stiff(model(name)), x1, y1, True, "dopri5", reference, per="nfe")
    for name in ("hand-dopri5", "hand-adjoint-dopri5"):  # seeds batched, each with its own step-size control
        torch.manual_seed(0)
        out[f"{name}-x{members}"] = Candidate(_stiff(model(name, range(members))), xe, ye, True, "dopri5", name,
                                              members, per="nfe")
    if with_torchode:
        try:
            out["torchode-euler"] = Candidate(TorchodeODE(model("euler", steps=steps), steps), x2, y2, False, "euler",
                                              "bare-euler")
            torch.manual_seed(0)
            out["torchode-dopri5"] = Candidate(TorchodeDopri5(_stiff(model("tdq-dopri5"))), x1, y1, True, "dopri5",
                                               "tdq-dopri5", per="nfe")
        except ImportError:
            pass
    return out


def _nfe_per_call(c: Candidate, fn) -> float:
    """Dynamics evaluations of one call (adaptive candidates: their step count is the weights')."""
    counter = c.model.counter
    counter.reset()
    fn()
    if counter.member_counts is not None:  # per-member step control: each member's own evaluations, per member
        return float(sum(int(v.sum()) for v in counter.member_counts.values())) / c.members
    counts = counter.counts
    return float(counts["forward"] + counts["backward"] + counts["eval"])


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


def _best_us(fn, device, repeats: int) -> float:
    """The best of five blocks of ``repeats`` calls, per call (us)."""
    for _ in range(10):
        fn()
    sync(device)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best * 1e6


def kernel_floor(batch: int, device, dim: int = 6, hidden: int = 128, repeats: int = 200) -> dict[str, float]:
    """Per evaluation of the dynamics, the summed best times (us) of the kernels the fused fixed-step engine
    (study.engine.hand_solve) runs for it, each at its own shape in the feature-major layout: ``forward``
    (three products with their biases, two sigmoids) and ``train`` (those, and the backward's six products,
    two sigmoid backwards and three bias sums).  What the
    evaluation's arithmetic costs on this machine at these sizes, without the solver's bookkeeping, the lift, head,
    loss and optimiser; the matmul-FLOP floor assumes every product runs at the 128^3 rate, which the width-6
    products do not reach and the elementwise kernels do not count."""
    B, d, H = batch, dim, hidden
    r = lambda *s: torch.randn(1, *s, device=device)  # noqa: E731
    a1, a2, a3, c1, c2, c3 = r(H, d), r(H, H), r(d, H), r(H, 1), r(H, 1), r(d, 1)
    a1t, a2t, a3t = (a.transpose(1, 2).contiguous() for a in (a1, a2, a3))
    y, g, s1, s2, gh = r(d, B), r(d, B), r(H, B).sigmoid(), r(H, B).sigmoid(), r(H, B)
    wd, wh = r(d, H), r(H, H)
    out_h, out_h2, out_d, out_w1, out_w2, out_w3 = r(H, B), r(H, B), r(d, B), r(d, H), r(H, H), r(d, H)
    sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
    forward = [lambda: torch.baddbmm(c1, a1, y, out=out_h), lambda: torch.sigmoid(gh, out=out_h),
               lambda: torch.baddbmm(c2, a2, s1, out=out_h), lambda: torch.sigmoid(gh, out=out_h),
               lambda: torch.baddbmm(c3, a3, s2, out=out_d)]
    backward = [lambda: torch.baddbmm(wd, g, s2.transpose(1, 2), out=out_w3),
                lambda: torch.sum(g, -1), lambda: torch.bmm(a3t, g, out=out_h),
                lambda: sigmoid_backward(gh, s2, grad_input=out_h2),
                lambda: torch.baddbmm(wh, gh, s1.transpose(1, 2), out=out_w2), lambda: torch.sum(gh, -1),
                lambda: torch.bmm(a2t, gh, out=out_h), lambda: sigmoid_backward(gh, s1, grad_input=out_h2),
                lambda: torch.baddbmm(wd, y, gh.transpose(1, 2), out=out_w1), lambda: torch.sum(gh, -1),
                lambda: torch.bmm(a1t, gh, out=out_d)]
    fwd = sum(_best_us(k, device, repeats) for k in forward)
    return {"forward": fwd, "train": fwd + sum(_best_us(k, device, repeats) for k in backward)}


def _calibrate(fns: dict, device, min_round_s: float) -> dict[str, int]:
    """Warm-up, and calls per round so that a round lasts about ``min_round_s``."""
    inner = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        inner[name] = max(1, int(min_round_s / max(time.perf_counter() - t0, 1e-6)))
    return inner


def measure(steps: int = 20, batch: int = 128, rounds: int = 15, device: str = "cpu", min_round_s: float = 0.05,
            with_torchode: bool = True, progress=None) -> dict:
    """The bench table: per step (per evaluation for adaptive rows) medians, spreads and ratios, all measured in
    this process, interleaved round by round."""
    cands = candidates(steps, batch, device, with_torchode=with_torchode)
    rows = []
    for mode in ("forward", "train"):
        fns = {name: optimizer_step(c.model, c.x, c.y, mode, c.ensemble) for name, c in cands.items()}
        inner = _calibrate(fns, device, min_round_s)
        units = {name: (_nfe_per_call(c, fns[name]) if c.per == "nfe" else steps) * c.members for name, c in cands.items()}
        samples = {name: [] for name in fns}
        for r in range(rounds):
            for name, fn in fns.items():
                sync(device)
                t0 = time.perf_counter()
                for _ in range(inner[name]):
                    fn()
                sync(device)
                samples[name].append((time.perf_counter() - t0) / inner[name] / units[name] * 1e6)
            if progress:
                progress(mode, r + 1, rounds)
        for name, s in samples.items():
            med, spread = median_spread(s)
            c = cands[name]
            rows.append({"solver": name, "mode": mode, "steps": steps, "batch": batch, "method": c.method,
                         "members": c.members, "per": c.per, "reference": c.reference,
                         "nfe_per_call": units[name] / c.members if c.per == "nfe" else None,
                         "median_us": med, "spread_us": spread, "rounds": len(s)})
    rate = matmul_gflops(device)
    kernels = kernel_floor(batch, device)
    return {"rows": add_ratios_and_floors(rows, batch, rate, kernels), "matmul_gflops_128": rate,
            "kernel_floor_us": kernels}


def add_ratios_and_floors(rows: list[dict], batch: int, gflops: float, kernels: dict | None = None) -> list[dict]:
    """Each row's ratio to its reference row in the same mode (the bare loop of its method unless the row names
    another), its arithmetic floor at ``gflops`` and its kernel floor (:func:`kernel_floor`, per evaluation), per
    step or per evaluation for rows timed per NFE."""
    for row in rows:
        ref_name = row.get("reference") or f"bare-{row['method']}"
        ref = next(r for r in rows if r["solver"] == ref_name and r["mode"] == row["mode"])
        row["ratio_to_bare"] = row["median_us"] / ref["median_us"]
        stages = 1 if row.get("per") == "nfe" else METHODS[row["method"]].stages
        row["floor_us"] = step_flops(batch, stages=stages, mode=row["mode"]) / (gflops * 1e9) * 1e6
        if kernels is not None:
            row["kernel_floor_us"] = kernels[row["mode"]] * stages
    return rows


def record(config: dict, isolated: bool = True, progress=None) -> dict:
    device = config.get("device", "cpu")
    res = measure(config["steps"], config["batch_size"], config["rounds"], device,
                  with_torchode=config.get("torchode", True), progress=progress)
    return records.make(config, res, environment(device), timing={"isolated": isolated})


def run(configs: list[dict]) -> list[dict]:
    return [record(c) for c in configs]
