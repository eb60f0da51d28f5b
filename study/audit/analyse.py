"""What the audit measures on a trained model (or on the given one), beyond its training:

* **solver transfer**: its held-out loss solved by other solvers and by a float64 reference (dopri5 at the budget's
  reference tolerance): a model that is an ODE keeps its loss under the reference; one that learned its solver's
  errors does not;
* **work-precision** of the solution (states at the observation times) and of the loss gradient (every parameter),
  in float64 against the reference solve and the reference's own backpropagated gradient, with evaluations and
  time: fixed-step methods at several steps, dopri5 at several tolerances, every gradient method;
* **stiffness**: the spectral radius ``rho`` of the field's Jacobian ``df/dy`` at states along the reference
  trajectory, times the step ``h`` a method takes there, against that method's stability limit on the negative real
  axis (:data:`study.audit.cells.STABILITY`): ``rho h`` above the limit means the explicit method is stable only
  because the eigenvalue is not on the real axis, or not at all.
"""
from __future__ import annotations

import statistics
import time

import torch

from . import cells
from ..engine.solve import Count, How
from .train import evaluate, is_solver_failure

WP_SAMPLES = 64  # the held-out samples work-precision and stiffness use
STIFF_SAMPLES = 8


def reference_how(budget) -> How:
    return How("hand", "dopri5", None, budget.reference_tol, "direct", 1_000_000)


def _wp_batch(loaded, dtype):
    x, t, y = loaded.test
    x, y = x[:WP_SAMPLES], y[:WP_SAMPLES]
    t = t if t.dim() == 1 else t[:WP_SAMPLES]
    cast = lambda a: a.to(dtype) if a.is_floating_point() else a  # noqa: E731
    return cast(x), cast(t), cast(y)


def transfer(model, loaded, budget) -> list[dict]:
    """The held-out loss (and primary metric) of ``model`` under each transfer solver and the float64 reference."""
    primary = loaded.problem.primary
    rows = []
    solvers = [({"method": m, "steps": s}, How("hand", m, s)) for m in cells.FIXED for s in budget.transfer_steps]
    solvers += [({"method": "dopri5", "tol": tol}, How("hand", "dopri5", None, tol)) for tol in (1e-3, 1e-6)]
    for spec, how in solvers:
        r = evaluate(model, loaded.test, how)
        v = r["values"] or {}
        rows.append({"solver": cells.solver_label(spec), "loss": v.get("loss"), "primary": v.get(primary),
                     "nfe": r["nfe"], "failure": r["failure"]})
    ref = evaluate(model.to(torch.float64), _cast(loaded.test, torch.float64), reference_how(budget))
    v = ref["values"] or {}
    rows.append({"solver": "reference (float64)", "loss": v.get("loss"), "primary": v.get(primary), "nfe": ref["nfe"],
                 "failure": ref["failure"]})
    return rows


def _cast(split, dtype):
    return tuple(a.to(dtype) if a.is_floating_point() else a for a in split)


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _gradient(model, batch, how: How):
    x, t, y = batch
    params = model.parameters()
    counter = Count()
    loss = model.problem.loss(model.predict(x, t, how, counter), y)
    counter.phase = "backward"
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])
    return flat, counter.counts["forward"] + counter.counts["backward"]


def _grids(budget) -> list[dict]:
    return ([{"method": m, "steps": s} for m in cells.FIXED for s in budget.wp_steps]
            + [{"method": "dopri5", "tol": tol} for tol in budget.wp_tolerances])


def workprecision(model, loaded, budget, repeats: int = 1) -> dict:
    """Solution and gradient rows of the float64 copy of ``model`` on the held-out batch (see the module docstring)."""
    m64 = model.to(torch.float64)
    batch = _wp_batch(loaded, torch.float64)
    x, t, _ = batch
    ref_how = reference_how(budget)
    with torch.no_grad():
        ref_states = m64.states(m64.lift(x), t, ref_how)
    exact, _ = _gradient(m64, batch, ref_how)
    solution, gradient = [], []
    for grid in _grids(budget):
        how = How("hand", grid["method"], grid.get("steps"), grid.get("tol"))
        try:
            with torch.no_grad():
                counter = Count()
                ys, secs = _timed(lambda: m64.states(m64.lift(x), t, how, counter), repeats)
            solution.append({**grid, "error": _relative(ys, ref_states), "nfe": counter.counts["forward"] // repeats,
                             "time_s": secs})
        except AssertionError as exc:
            if not is_solver_failure(exc):
                raise
            solution.append({**grid, "error": None, "nfe": None, "time_s": None, "failure": str(exc)})
        for impl, grads in cells.GRADIENTS.items():
            for g in grads:
                if "steps" in grid and g != "direct" and grid["method"] != "rk4-38":
                    continue  # fixed steps: every gradient method on RK4, backpropagation on the others
                gradient.append(_gradient_row(m64, batch, impl, g, grid, exact, repeats))
    return {"solution": solution, "gradient": gradient, "samples": int(x.shape[0])}


def _gradient_row(m64, batch, impl: str, gradient: str, grid: dict, exact, repeats: int) -> dict:
    how = How(impl, grid["method"], grid.get("steps"), grid.get("tol"), gradient)
    row = {"implementation": impl, "gradient": gradient, **grid}
    try:
        (g, nfe), secs = _timed(lambda: _gradient(m64, batch, how), repeats)
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return {**row, "error": None, "nfe": None, "time_s": None, "failure": str(exc)}
    return {**row, "error": _relative(g, exact), "nfe": nfe, "time_s": secs}


def _trajectory(model, loaded, budget):
    """The float64 copy of ``model``, a few held-out samples' reference states ``(B, T, *shape)`` and their times."""
    m64 = model.to(torch.float64)
    x, t, _ = _wp_batch(loaded, torch.float64)
    x, t = x[:STIFF_SAMPLES], (t if t.dim() == 1 else t[:STIFF_SAMPLES])
    with torch.no_grad():
        ys = m64.states(m64.lift(x), t, reference_how(budget))
    return m64, ys, (t.expand(ys.shape[0], -1) if t.dim() == 1 else t)


def field_error(model, loaded, budget) -> float | None:
    """The learned field's relative RMS error against the problem's true field at the reference states (None
    without a true field)."""
    truth = loaded.problem.truth
    if truth is None:
        return None
    m64, ys, times = _trajectory(model, loaded, budget)
    flat = ys.reshape(-1, *m64.sample_shape)
    tt = times.reshape(-1)
    with torch.no_grad():
        learned = torch.stack([m64.field(tt[i], flat[i: i + 1])[0] for i in range(len(tt))])
        true = torch.stack([torch.as_tensor(truth(tt[i], flat[i: i + 1]), dtype=torch.float64)[0]
                            for i in range(len(tt))])
    return float((learned - true).pow(2).sum().sqrt() / true.pow(2).sum().sqrt().clamp_min(1e-300))


def spectral_radii(model, loaded, budget) -> list[float]:
    """``rho(df/dy)`` at each of a few held-out samples' reference states at their observation times."""
    m64, ys, times = _trajectory(model, loaded, budget)
    field, shape = m64.field, m64.sample_shape
    radii = []
    for b in range(ys.shape[0]):
        for k in range(ys.shape[1]):
            f = lambda y: field(times[b, k], y.view(1, *shape)).reshape(-1)  # noqa: E731
            J = torch.func.jacrev(f)(ys[b, k].reshape(-1).detach())
            radii.append(float(torch.linalg.eigvals(J.detach()).abs().max()))
    return radii


def stiffness(radii: list[float], cell: dict, loaded, accepted: int | None) -> dict:
    """``max rho``, the cell's step ``h`` (fixed: the mean observation interval over its steps; dopri5: the held-out
    solve's span over its accepted steps), ``rho h`` and the method's stability limit."""
    t = loaded.test[1]
    span = float((t[..., -1] - t[..., 0]).mean())
    intervals = t.shape[-1] - 1
    if "steps" in cell:
        h = span / (intervals * cell["steps"])
    else:
        h = span / accepted if accepted else None
    rho = max(radii) if radii else None
    rho_h = rho * h if rho is not None and h is not None else None
    return {"rho_max": rho, "h": h, "rho_h": rho_h, "limit": cells.STABILITY[cell["method"]],
            "beyond_limit": None if rho_h is None else rho_h > cells.STABILITY[cell["method"]]}
