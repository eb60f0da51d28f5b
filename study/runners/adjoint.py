"""The ``adjoint`` runner: why the continuous adjoint's gradient is wrong, measured on trained weights.

One run trains ``train_variant`` for one seed (alone), keeps its weights at
the epochs in ``epochs_measured`` and measures on each snapshot, for several
mini-batches of the training set:

* **gradient errors** against the *exact* gradient of the continuous model
  (direct backpropagation through classic RK4 with ``reference_steps`` steps in
  float64; its own error is checked against twice the steps) and against the
  gradient of the *same discretisation* (direct backpropagation through the
  solver and grid the adjoint uses), separately: torchdiffeq's ``odeint_adjoint``
  with Euler and RK4 (3/8) on 20 steps and dopri5 at the training tolerance, in
  float32 (training's precision).  On the last snapshot the full grid: steps up to
  ``steps[-1]``, tolerances down to ``tolerances[-1]``, float32 and float64;
* **reconstruction**: ``y(0)`` recovered from ``y(T)`` by a backward solve (what
  the adjoint's backward pass does), relative RMS error, for the training solver
  in float32, dopri5 at two tolerances and near-exact RK4 in float64;
* **the flow map's singular values**: ``d y(T) / d y(0)`` per point (near-exact
  RK4, float64): its smallest singular value says how much of ``y(0)`` survives
  to ``y(T)``, i.e. how far the trained flow is from invertible in practice.
"""
from __future__ import annotations

import math

import torch

from .. import records
from ..config import Protocol
from ..engine.models import Classifier
from ..tasks.classification import fit
from ..tasks.spiral.step import training_step
from ..provenance import environment
from ..variants import variant_config
from ..tasks import spiral

KIND = "adjoint"
ALONE = False
BATCHED = False
DIAGNOSTIC_MAX_STEPS = 100_000  # tight tolerances on trained weights need far more than training's cap


def cost(config: dict, members: int) -> float:
    """Training's cost plus the measurements (about 3 training runs of Euler's)."""
    train_cost = spiral.cost({**config["protocol"], **variant_config(config["train_variant"]).as_config()}, 1)
    return train_cost + 3 * 80_000


def _batches(seed: int, P: Protocol, size: int, count: int):
    from ..tasks.spiral import data

    sp = data.make_split(seed, P.n_train, 2, P.sigma)
    for b in range(count):
        sl = slice(b * size, (b + 1) * size)
        yield torch.from_numpy(sp.x_train[sl]).unsqueeze(0), torch.from_numpy(sp.y_train[sl]).unsqueeze(0)


class _Weights:
    """One snapshot's weights, loaded into a model of any variant and precision."""

    def __init__(self, state: dict, seed: int):
        self.state, self.seed = state, seed

    def model(self, variant: str, dtype=torch.float32, **overrides) -> Classifier:
        m = Classifier(variant_config(variant, **overrides), [self.seed])
        m.load_state_dict(self.state)
        return m.to(dtype)

    def grad(self, variant: str, x, y, dtype=torch.float32, **overrides) -> tuple[torch.Tensor, int]:
        m = self.model(variant, dtype, **overrides)
        training_step(m, x.to(dtype), y)()
        return torch.cat([p.grad.reshape(-1) for p in m.parameters()]).double(), m.counter.counts["backward"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


FIXED = (("euler", "tdq-euler", "adjoint-euler"), ("rk4-38", "tdq-rk4", "adjoint-rk4"))


def _gradient_rows(w: _Weights, x, y, exact, steps, tolerances, dtypes, tol_dtypes) -> list[dict]:
    rows = []
    for method, direct, adjoint in FIXED:
        for n in steps:
            for dtype in dtypes:
                gd, _ = w.grad(direct, x, y, dtype, steps=n)
                ga, nb = w.grad(adjoint, x, y, dtype, steps=n)
                rows.append({"what": "gradient", "method": method, "steps": n, "tol": None, "dtype": str(dtype)[6:],
                             "adjoint_vs_discrete": _rel(ga, gd), "adjoint_vs_exact": _rel(ga, exact),
                             "discrete_vs_exact": _rel(gd, exact), "nfe_backward": nb})
    for tol in tolerances:
        for dtype in tol_dtypes(tol):
            row = {"what": "gradient", "method": "dopri5", "steps": None, "tol": tol, "dtype": str(dtype)[6:]}
            try:
                kw = {"rtol": tol, "atol": tol, "max_num_steps": DIAGNOSTIC_MAX_STEPS}
                gd, _ = w.grad("tdq-dopri5", x, y, dtype, **kw)
                ga, nb = w.grad("adjoint-dopri5", x, y, dtype, **kw)
            except AssertionError as exc:  # the step control gave up: a result
                rows.append({**row, "failed": str(exc)[:200]})
                continue
            rows.append({**row, "adjoint_vs_discrete": _rel(ga, gd), "adjoint_vs_exact": _rel(ga, exact),
                         "discrete_vs_exact": _rel(gd, exact), "nfe_backward": nb})
    return rows


def _flow_rows(w: _Weights, x, ref_steps: int, train_cfg) -> list[dict]:
    """Reconstruction errors and the flow map's singular values on one batch."""
    import torchdiffeq

    rows = []
    exact = w.model("rk4", torch.float64, steps=ref_steps)
    with torch.no_grad():
        y0, yT = exact.features(x.double())
    recon = {("rk4", ref_steps, None, "float64"): exact.reconstruct(yT)}
    if train_cfg.model == "ode" and not train_cfg.adaptive:
        m = w.model(train_cfg_variant(train_cfg), torch.float32)
        with torch.no_grad():
            z0, zT = m.features(x)
            recon[(train_cfg.method, train_cfg.steps, None, "float32")] = m.reconstruct(zT).double()
            y0_32 = z0.double()
    for tol, dtype in ((1e-3, torch.float32), (1e-6, torch.float64)):
        m = w.model("tdq-dopri5", dtype, rtol=tol, atol=tol, max_num_steps=DIAGNOSTIC_MAX_STEPS)
        key = ("dopri5", None, tol, str(dtype)[6:])
        try:
            with torch.no_grad():
                yT_t = yT if dtype == torch.float64 else m.core(y0.to(dtype))
                with m.core.func.prepared():
                    back = torchdiffeq.odeint(m.core.func, yT_t, torch.tensor([1.0, 0.0], dtype=dtype), rtol=tol,
                                              atol=tol, method="dopri5", options={"max_num_steps": DIAGNOSTIC_MAX_STEPS})
            recon[key] = back[-1].double()
        except AssertionError:  # the step control gave up
            recon[key] = None
    for (method, steps, tol, dtype), est in recon.items():
        ref = y0_32 if dtype == "float32" and method != "dopri5" else y0
        err = None if est is None else _rel(est, ref)
        rows.append({"what": "reconstruction", "method": method, "steps": steps, "tol": tol, "dtype": dtype,
                     "recon_rel": err if err is None or math.isfinite(err) else None})
    y0g = y0.detach().clone().requires_grad_(True)
    yT = exact.core(y0g)
    d = yT.shape[-1]
    jac = torch.stack([torch.autograd.grad(yT[..., i].sum(), y0g, retain_graph=i < d - 1)[0] for i in range(d)], -2)
    sv = torch.linalg.svdvals(jac[0])  # (points, d), descending
    smin, smax = sv[:, -1], sv[:, 0]
    rows.append({"what": "singular_values", "method": "rk4", "steps": ref_steps, "tol": None, "dtype": "float64",
                 "sv_min_median": float(smin.median()), "sv_min_min": float(smin.min()),
                 "sv_max_median": float(smax.median()), "cond_median": float((smax / smin).median())})
    return rows


def train_cfg_variant(cfg) -> str:
    """The fixed-step direct variant with the training model's arithmetic (its solver, forward only)."""
    return {"euler": "tdq-euler", "rk4-38": "tdq-rk4", "rk4": "rk4"}[cfg.method]


def measure(config: dict) -> dict:
    seed, P = config["seed"], Protocol.from_dict(config["protocol"])
    cfg = variant_config(config["train_variant"])
    final = max(config["epochs_measured"])
    h = fit(cfg, P, [seed], "cpu", snapshots=config["epochs_measured"])
    rows, diverged = [], bool(h.diverged)
    for epoch in sorted(e for e in h.snapshots if e <= h.last_epoch(0)):  # a diverged run: up to where it stopped
        w = _Weights(h.snapshots[epoch], seed)
        full = epoch == final
        for b, (x, y) in enumerate(_batches(seed, P, config["batch_size"], config["batches"])):
            exact, _ = w.grad("rk4", x, y, torch.float64, steps=config["reference_steps"])
            check, _ = w.grad("rk4", x, y, torch.float64, steps=2 * config["reference_steps"])
            out = [{"what": "reference", "method": "rk4", "steps": config["reference_steps"], "tol": None,
                    "dtype": "float64", "discrete_vs_exact": _rel(exact, check)}]
            if full:
                out += _gradient_rows(w, x, y, exact, config["steps"], config["tolerances"], (torch.float32, torch.float64),
                                      lambda tol: (torch.float64,) + ((torch.float32,) if tol >= config["float32_min_tol"] else ()))
            else:
                out += _gradient_rows(w, x, y, exact, config["steps"][:1], config["tolerances"][:1], (torch.float32,),
                                      lambda tol: (torch.float32,))
            out += _flow_rows(w, x, config["reference_steps"], cfg)
            rows += [{"epoch": epoch, "batch": b, **r} for r in out]
    metrics = {"rows": [_finite(r) for r in rows], "test_acc": None if diverged else h.test_acc[0],
               "train_acc": None if diverged else h.train_acc[0], "epochs_completed": h.last_epoch(0)}
    return records.make(config, metrics, environment("cpu"), "diverged" if diverged else "ok",
                        next(iter(h.diverged.values()), None))


def _finite(row: dict) -> dict:
    """Non-finite numbers (a gradient that overflowed) are stored as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]
