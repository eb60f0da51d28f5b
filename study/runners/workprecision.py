"""The ``workprecision`` runner: what each solver and each gradient method costs for the error it leaves.

On one model's vector field (a task's trained model, and its initial one), the task poses one problem
(:func:`Problem`: a field, its parameters, a batch of initial states, an interval and a scalar loss of the end
state).  In float64 throughout:

* the reference: torchdiffeq's dopri5 at ``rtol = atol = reference_tol`` (1e-12) for the end state, and for the
  loss's gradient backpropagation through torchdiffeq's RK4 (3/8 rule) with ``reference_steps`` (2,048) uniform
  steps, its own error estimated at half the steps and recorded (:func:`reference` says why neither
  backpropagation through dopri5 nor the continuous adjoint);
* **solutions**: each fixed-step method over a sweep of step counts and dopri5 over a sweep of tolerances, on
  the hand engine and through torchdiffeq: the end state's relative RMS error against the reference, the
  evaluations (NFE) and the median time of a solve;
* **gradients**: each gradient method (the hand engine's direct backpropagation, checkpointed adjoint and
  continuous adjoint; torchdiffeq's backpropagation and ``odeint_adjoint``) for each method and sweep point:
  the relative error of the loss's gradient with respect to the field's parameters against the exact one,
  forward and backward NFE, and the median time of a forward and backward pass.

The rows are the log-log work-precision diagrams solver benchmarks are read by (one line per method).
Timing is measured, so the runner runs alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .. import records, tasks

KIND = "workprecision"
REFERENCE_STEPS = 2048  # the reference gradient's RK4 grid
SEGMENT_STEPS = 64  # the reference's solve is checkpointed per this many steps: memory for one segment's graph
ALONE = True  # it times solves
BATCHED = True  # the parts of one job, measured on one model and its references


@dataclass
class Problem:
    """A field (:mod:`study.engine.field`), its raw parameters (float64, one member), initial states
    ``(1, d, B)`` (float64), the interval, and a scalar loss of the end state."""

    field: object
    raw: tuple
    y0: object
    t0: float
    t1: float
    loss: Callable


def cost(config: dict, members: int) -> float:
    return 5e5


def _Count():
    """A counter with the engine's interface (:class:`study.engine.solve.Count`; imported with torch, when used)."""
    from ..engine.solve import Count

    return Count()


def _solve(p: Problem, params, backend: str, method: str, grid: dict, counter):
    """The end state of one solve of ``p`` (differentiable where ``params`` require grad), by the one solve entry."""
    from ..engine.solve import How, solve

    return solve(p.field, params, p.y0, p.t0, p.t1, How.of_backend(backend, method, grid), counter)


def _leaves(raw) -> list:
    return [None if x is None else x.detach().clone().requires_grad_() for x in raw]


def _flat_grad(params) -> "object":
    import torch

    return torch.cat([x.grad.flatten() for x in params if x is not None])


def reference(p: Problem, tol: float, steps: int = REFERENCE_STEPS):
    """``(end state, exact gradient, the gradient's own error estimate)``: the end state by torchdiffeq's dopri5 at
    ``tol``; the gradient by backpropagation through torchdiffeq's RK4 (3/8 rule) on a uniform grid of ``steps``
    steps (the exact gradient of that discretisation, O(h^4) from the true one), its error estimated by the same
    at half the steps.

    Neither of the two other candidates converges everywhere: backpropagation through the adaptive dopri5 solve
    differentiates its step-size control and its dense output at ``t1`` (on the density task's field it moved by
    1e-4 from ``tol = 1e-10`` to ``1e-12``), and the continuous adjoint fails where the trained flow's backward
    reconstruction does (the spiral's, Section "The adjoint, explained")."""
    import torch

    with torch.no_grad():
        y1 = _solve(p, p.raw, "torchdiffeq", "dopri5", {"tol": tol}, _Count())
    fine, coarse = _fixed_gradient(p, steps), _fixed_gradient(p, steps // 2)
    return y1, fine, _relative(coarse, fine)  # the coarse grid's error: about 15x the fine one's, an upper bound


def _fixed_gradient(p: Problem, steps: int):
    """The loss gradient by backpropagation through torchdiffeq's RK4 (3/8) with ``steps`` uniform steps, the solve
    cut into segments that ``torch.utils.checkpoint`` recomputes in the backward pass."""
    import torch
    from torch.utils.checkpoint import checkpoint

    params = _leaves(p.raw)
    counter = _Count()
    segments = max(1, steps // SEGMENT_STEPS)
    if steps % segments:
        raise ValueError(f"reference_steps ({steps}) must be a multiple of {SEGMENT_STEPS} (or below it)")
    edges = [p.t0 + (p.t1 - p.t0) * k / segments for k in range(segments + 1)]
    y = p.y0
    for a, b in zip(edges[:-1], edges[1:]):
        seg = Problem(p.field, p.raw, None, a, b, p.loss)
        y = checkpoint(lambda y_, *w, seg=seg: _solve(Problem(seg.field, seg.raw, y_, seg.t0, seg.t1, seg.loss), list(w),
                                                          "torchdiffeq", "rk4-38", {"steps": steps // segments},
                                                          counter), y, *params, use_reentrant=False)
    p.loss(y).backward()
    return _flat_grad(params)


def _relative(a, b) -> float | None:
    import math

    err = float((a - b).norm() / b.norm()) if float(b.norm()) > 0 else float((a - b).norm())
    return err if math.isfinite(err) else None


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def solution_row(p: Problem, backend: str, method: str, grid: dict, ref_y1, repeats: int) -> dict:
    import torch

    counter = _Count()
    with torch.no_grad():
        try:
            y1 = _solve(p, p.raw, backend, method, grid, counter)
        except AssertionError as exc:
            return {"what": "solution", "backend": backend, "method": method, **grid, "error": None, "nfe": None,
                    "time_s": None, "failure": str(exc)}
        nfe = counter.counts["forward"]
        seconds = _median_time(lambda: _solve(p, p.raw, backend, method, grid, _Count()), repeats)
    return {"what": "solution", "backend": backend, "method": method, **grid, "error": _relative(y1, ref_y1),
            "nfe": nfe, "time_s": seconds, "failure": None}


def gradient_row(p: Problem, backend: str, method: str, grid: dict, exact, repeats: int) -> dict:
    def once(counter):
        params = _leaves(p.raw)
        counter.phase = "forward"
        y1 = _solve(p, params, backend, method, grid, counter)
        counter.phase = "backward"
        p.loss(y1).backward()
        return _flat_grad(params)

    counter = _Count()
    try:
        g = once(counter)
    except AssertionError as exc:
        return {"what": "gradient", "backend": backend, "method": method, **grid, "error": None, "nfe": None,
                "nfe_backward": None, "time_s": None, "failure": str(exc)}
    seconds = _median_time(lambda: once(_Count()), repeats)
    return {"what": "gradient", "backend": backend, "method": method, **grid, "error": _relative(g, exact),
            "nfe": counter.counts["forward"], "nfe_backward": counter.counts["backward"], "time_s": seconds,
            "failure": None}


def _grids(config: dict, method: str) -> list[dict]:
    from ..config import METHODS

    if METHODS[method].adaptive:
        return [{"tol": t} for t in config["tolerances"]]
    return [{"steps": n} for n in config["steps"]]


def part_rows(p: Problem, config: dict, part: dict, ref_y1, exact) -> list[dict]:
    """The rows of one measured part (``{"what", "backend", "method"}``): a solution's or a gradient method's, at
    every step count or tolerance of the sweep."""
    row = solution_row if part["what"] == "solution" else gradient_row
    target = ref_y1 if part["what"] == "solution" else exact
    return [row(p, part["backend"], part["method"], g, target, config["repeats"]) for g in _grids(config, part["method"])]


def measure(p: Problem, config: dict) -> tuple[list[dict], float | None]:
    """Every row of one problem for ``config``'s ``solvers`` and ``gradient_methods`` (``(backend, method)``
    pairs), and the reference gradient's own error estimate."""
    ref_y1, exact, ref_error = reference(p, config["reference_tol"], config.get("reference_steps", REFERENCE_STEPS))
    parts = ([{"what": "solution", "backend": b, "method": m} for b, m in config["solvers"]]
             + [{"what": "gradient", "backend": b, "method": m} for b, m in config["gradient_methods"]])
    return [row for part in parts for row in part_rows(p, config, part, ref_y1, exact)], ref_error


def run(configs: list[dict]) -> list[dict]:
    """One job's records, one per measured part: the parts of one job share its model, its problems and their
    references, which are made once."""
    import torch

    from ..provenance import environment

    base = {k: v for k, v in configs[0].items() if k != "measure"}
    if any({k: v for k, v in c.items() if k != "measure"} != base or not isinstance(c.get("measure"), dict)
           for c in configs):
        raise ValueError("a work-precision job's runs must differ only in what they measure")
    torch.set_num_threads(1)
    task = tasks.of(base)
    models = task.workprecision_models(base)  # field name -> (model, the status of its training)
    rows: list[list[dict]] = [[] for _ in configs]
    ref_errors = {}
    for which, (model, _) in models.items():
        p = task.problem(model, base)
        ref_y1, exact, ref_errors[which] = reference(p, base["reference_tol"], base.get("reference_steps", REFERENCE_STEPS))
        for i, config in enumerate(configs):
            rows[i] += [{"field": which, **row} for row in part_rows(p, base, config["measure"], ref_y1, exact)]
    env = environment("cpu")
    return [records.make(config, {"rows": mine, "trained_status": models["trained"][1],
                                  "reference_gradient_error": ref_errors}, env) for config, mine in zip(configs, rows)]
