"""The ``taskbench`` runner and ``study bench --task``: each task's solves on the hand engine against torchdiffeq
and against the kernel floor of the task's own field, per evaluation.

The problem is the task's work-precision problem (its field, parameters, a batch of its states and its loss head;
``problem`` and ``workprecision_models`` of the task module) at its initial weights, in float32, with any all-zero
weight (a zero-initialised last layer) redrawn so that the field is not trivially zero.  Rows, all timed in this
process and interleaved round by round (medians over rounds with half their interquartile range):

* ``train``: one solve and the loss's backward pass, per forward evaluation (and backward evaluation for the
  adjoints): the hand engine's direct backpropagation, continuous adjoint and checkpointed adjoint against
  torchdiffeq's ``odeint`` (autograd through the field's plain-torch forward, as the tasks train with it) and
  ``odeint_adjoint``;
* ``forward``: one solve without gradients;
* the kernel floor of the field: the best time of its forward evaluation (``forward``) and of forward plus its
  hand vector-Jacobian product (``train``) on the batch, outside any solver.

Ratios: each hand row to its torchdiffeq counterpart per evaluation (``ratio_to_tdq``) and to the floor
(``ratio_to_floor``).  Fixed-step rows use the task's fixed-step methods on ``steps`` steps over the problem's
interval; adaptive rows dopri5 at ``tol``.
"""
from __future__ import annotations

import math
import time

from .. import records, tasks

KIND = "taskbench"
ALONE = True  # it times things
BATCHED = False
# (name, backend, method, its torchdiffeq counterpart): the rows, per mode
ROWS = (("hand-euler", "hand", "euler", "tdq-euler"), ("tdq-euler", "torchdiffeq", "euler", None),
        ("hand-rk4-38", "hand", "rk4-38", "tdq-rk4"), ("tdq-rk4", "torchdiffeq", "rk4-38", None),
        ("hand-dopri5", "hand", "dopri5", "tdq-dopri5"), ("tdq-dopri5", "torchdiffeq", "dopri5", None),
        ("hand-adjoint-dopri5", "hand-adjoint", "dopri5", "tdq-adjoint-dopri5"),
        ("tdq-adjoint-dopri5", "torchdiffeq-adjoint", "dopri5", None),
        ("checkpoint-dopri5", "hand-checkpoint", "dopri5", "tdq-dopri5"))


def cost(config: dict, members: int) -> float:
    return 1e3


def problem(task: str, seed: int = 0):
    """The task's problem at its initial weights, float32, zero weights redrawn (see the module docstring)."""
    import torch

    from ..experiments import TASK_SPEC
    from .workprecision import Problem

    module = tasks.get(task)
    spec = TASK_SPEC["full"][task]
    proto = module.Protocol(**spec.get("protocol", {}))
    config = {"train_variant": spec["wp"]["train_variant"], "fields": ["initial"], "seed": seed,
              "protocol": proto.as_config(), "batch": module.BENCH_BATCH}
    (model, _), = module.workprecision_models(config).values()
    p = module.problem(model, config)
    g = torch.Generator().manual_seed(seed)
    raw = []
    for w in p.raw:
        if w is not None and not bool(w.abs().sum()):
            w = torch.randn(w.shape, generator=g, dtype=w.dtype) / math.sqrt(w.shape[-1])
        raw.append(None if w is None else w.float())
    loss = lambda y1: p.loss(y1.double())  # noqa: E731 - the head stays in its own precision
    return Problem(p.field, tuple(raw), p.y0.float(), p.t0, p.t1, loss)


class _RHS:
    """torchdiffeq's right-hand side as the tasks train with it: the field's plain-torch forward under autograd."""

    def __init__(self, field, raw, counter):
        self.field, self.raw, self.counter = field, raw, counter

    def __call__(self, t, y):
        self.counter.counts[self.counter.phase] += 1
        if hasattr(self.field, "differentiable"):  # a field whose plain forward builds no graph (autograd's fields)
            return self.field.differentiable(y, t, self.field.fold(self.raw))
        return self.field.forward(y, t, self.field.fold(self.raw))[0]


def _solve(p, raw, backend: str, method: str, steps: int, tol: float, counter):
    """One solve through the solve entry; torchdiffeq calls the field's plain-torch forward under autograd."""
    from ..config import METHODS
    from ..engine.solve import How, solve

    grid = {"tol": tol} if METHODS[method].adaptive else {"steps": steps}
    how = How.of_backend(backend, method, grid)
    return solve(p.field, raw, p.y0, p.t0, p.t1, how, counter, rhs=_RHS(p.field, raw, counter))


def _call(p, backend: str, method: str, mode: str, steps: int, tol: float):
    """A callable doing one solve (and backward pass) and returning its evaluations."""
    import torch

    from ..engine.solve import Count as _Count

    def once():
        counter = _Count()
        if mode == "forward":
            with torch.no_grad():
                _solve(p, p.raw, backend, method, steps, tol, counter)
            return counter.counts["forward"]
        params = [None if x is None else x.detach().requires_grad_() for x in p.raw]
        y1 = _solve(p, params, backend, method, steps, tol, counter)
        counter.phase = "backward"
        p.loss(y1).backward()
        return counter.counts["forward"] + counter.counts["backward"]

    return once


def kernel_floor(p, repeats: int = 200) -> dict[str, float]:
    """The field's forward evaluation and forward plus VJP on the problem's batch, best of ``repeats`` (us)."""
    import torch

    w = p.field.fold(p.raw)
    y, t = p.y0, 0.5 * (p.t0 + p.t1)

    def fwd():
        return p.field.forward(y, t, w)

    def train():
        f, saved = p.field.forward(y, t, w)
        tensors, meta = p.field.backward_weights(w)
        return p.field.vjp(torch.ones_like(f), y, t, saved, tensors, meta)

    out = {}
    with torch.no_grad():
        for name, fn in (("forward", fwd), ("train", train)):
            for _ in range(5):
                fn()
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            out[name] = best * 1e6
    return out


def measure(task: str, rounds: int = 15, steps: int = 20, tol: float = 1e-3, min_round_s: float = 0.05,
            progress=None) -> dict:
    from ..engine.timer import median_spread

    p = problem(task)
    rows = []
    floor = kernel_floor(p)
    for mode in ("forward", "train"):
        names = [r for r in ROWS if not (mode == "forward" and r[1] in ("hand-adjoint", "hand-checkpoint",
                                                                          "torchdiffeq-adjoint"))]
        fns = {n: _call(p, b, m, mode, steps, tol) for n, b, m, _ in names}
        nfe = {n: fn() for n, fn in fns.items()}  # warm-up, and the evaluations of one call
        inner = {}
        for n, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            inner[n] = max(1, int(min_round_s / max(time.perf_counter() - t0, 1e-6)))
        samples: dict = {n: [] for n in fns}
        for r in range(rounds):
            for n, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(inner[n]):
                    fn()
                samples[n].append((time.perf_counter() - t0) / inner[n] / nfe[n] * 1e6)
            if progress:
                progress(mode, r + 1, rounds)
        for n, b, m, ref in names:
            med, spread = median_spread(samples[n])
            rows.append({"task": task, "solver": n, "mode": mode, "backend": b, "method": m, "reference": ref,
                         "nfe_per_call": nfe[n], "median_us": med, "spread_us": spread, "rounds": rounds,
                         "floor_us": floor[mode]})
    for row in rows:
        ref = next((r for r in rows if r["solver"] == row["reference"] and r["mode"] == row["mode"]), None)
        row["ratio_to_tdq"] = None if ref is None else row["median_us"] / ref["median_us"]
        row["ratio_to_floor"] = row["median_us"] / row["floor_us"]
    return {"rows": rows, "kernel_floor_us": floor, "batch": tasks.get(task).BENCH_BATCH, "steps": steps, "tol": tol}


def record(config: dict, progress=None) -> dict:
    import torch

    from ..provenance import environment

    torch.set_num_threads(1)
    res = measure(config["task"], config["rounds"], config["steps"], config["tol"], progress=progress)
    return records.make(config, res, environment(config.get("device", "cpu")), timing={"isolated": True})


def run(configs: list[dict]) -> list[dict]:
    return [record(c) for c in configs]


def profile(task: str, solver: str, mode: str = "train", steps: int = 20, tol: float = 1e-3, calls: int = 20,
            rows: int = 15) -> str:
    """Where one row's time goes, per kernel: torch's profiler over ``calls`` calls, by self CPU time."""
    import torch

    torch.set_num_threads(1)
    p = problem(task)
    (_, backend, method, _), = [r for r in ROWS if r[0] == solver]
    fn = _call(p, backend, method, mode, steps, tol)
    nfe = fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    head = f"task {task}, {solver}, {mode}: {calls} calls of {nfe} evaluations"
    return head + "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


if __name__ == "__main__":  # python -m study.runners.taskbench TASK SOLVER [MODE]
    import sys

    print(profile(sys.argv[1], sys.argv[2], *(sys.argv[3:4] or ["train"])))
