"""Task ``spiral``: the article's two-spiral classifier (lift 2 -> d, a flow, a head), the study's first task.

The data are two interleaving Archimedean spirals with Gaussian noise (:mod:`study.tasks.spiral.data`: seeded training
and held-out sets, and the Bayes-optimal accuracy by quadrature, the task's ceiling); the model is
:class:`study.engine.models.Classifier` (the article's ReLU head, or a linear one with ``head: linear``);
training is the article's protocol (:func:`study.tasks.classification.fit`: Adam 0.01, cosine, 500 epochs,
batch 128).  Several seeds of a fixed-step variant are one job and train as one batched model; each
seed gets its own record.  With ``probe: true`` in the config, each trained member is also probed: a
logistic regression (:mod:`study.engine.probe`) fitted on the training points' input ``x``, lifted
state ``y(0)`` and flow output ``y(T)``, scored on the held-out points (``metrics.probe``), and the
flow's invertibility in practice: the relative RMS error of ``y(0)`` recovered from ``y(T)`` by the same
fixed-step solver run backward (``recon_rel``; null without a fixed-step flow).  With ``transfer``
(a list of solvers) in the config, each trained member is also scored with every one of them
(``metrics.transfer``, :func:`transfer_rows`).

Configs of this task name no task (they predate tasks): it is the default, at version 1.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import ITERATIONS_MAX, Metric, Option, Reference, lr_option
from ... import records
from ...config import METHODS, REMEDIES, ModelConfig, Protocol, run_config as _spiral_run_config, solver_label  # noqa: F401
from ...provenance import environment

NAME = "spiral"
VERSION = 1
TITLE = "Two-spiral classification"
SUMMARY = "the article's benchmark: 1,000 noisy points of two spirals, lift 2 -> 6, flow, head; held-out accuracy"
METRICS = (
    Metric("test_acc", "held-out accuracy", True, percent=True),
    Metric("train_acc", "training accuracy", True, percent=True),
)
PRIMARY = "test_acc"
BENCH_BATCH = 128  # the task bench's batch: the training batch
REFERENCE = Reference("Bayes-optimal accuracy", "the exact class posterior by quadrature (study dataset)")
OPTIONS = (Option("--epochs", "epochs", "int", 1, ITERATIONS_MAX, help="epochs"), lr_option())
ADAPTIVE_NFE_PER_SOLVE = 40  # a rough mean for dopri5 at the study's tolerances (cost estimates only)


def reference_value() -> tuple[float, float]:
    """The Bayes-optimal accuracy and its standard error."""
    from . import data

    return data.bayes_accuracy()


def not_applicable(variant) -> str | None:
    return None  # every variant was made for this task


def model_config(variant: str, overrides: dict | None = None) -> ModelConfig:
    from ...variants import variant_config

    return variant_config(variant, **(overrides or {}))


def run_config(variant: str, model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu",
               extra: dict | None = None) -> dict:
    return _spiral_run_config(model_cfg, protocol, seed, device, {"variant": variant, **(extra or {})})


def cost(config: dict, members: int) -> float:
    """Relative cost, to start the longest jobs first (units: one dynamics evaluation at batch 128)."""
    proto = Protocol.from_dict(config.get("protocol", config))
    method = METHODS.get(config.get("method"))
    adaptive = method is not None and method.adaptive and config.get("model", "ode") == "ode"
    per_pass = ADAPTIVE_NFE_PER_SOLVE if adaptive else config.get("steps", 20) * (method.stages if method else 1)
    factor = 2.0 if config.get("backend") in ("torchdiffeq-adjoint", "hand-adjoint", "hand-checkpoint") else 1.0  # a second solve
    factor *= 2.5 if proto.jacobian else 1.0  # RNODE's Hutchinson tangent, forward and backward
    return proto.epochs * proto.batches * per_pass * factor * (members if members == 1 else 0.6 * members)


def _record(h: History, s: int, config: dict, env: dict) -> dict:
    """Member ``s``'s record (its run's ``config``); a diverged member's record ends where it stopped, as if it had
    trained alone."""
    nan = float("nan")
    S, c, e = len(h.seeds), h.curves, h.last_epoch(s)
    n_test = h.test_evaluations(s)
    diverged = s in h.diverged
    totals = h.model.counter.snapshot(S)
    mine = {k: [row[s] for row in c[k][:e]] for k in ("nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")}
    metrics = {
        "params": h.model.param_count(),
        "train_acc": nan if diverged else h.train_acc[s],
        "test_acc": nan if diverged else h.test_acc[s],
        "final_loss": c["loss"][e - 1][s] if e else nan,
        "epochs_completed": e,
        "nfe_forward": sum(mine["nfe_forward"]),
        "nfe_backward": sum(mine["nfe_backward"]),
        "nfe_eval": totals["eval"][s],
        "nfe_final_eval": h.nfe_final_eval[s],
        "accepted_steps": sum(mine["accepted_steps"]),
        "rejected_steps": sum(mine["rejected_steps"]),
        "wall_time_s": h.wall_s / S,
        "activation_bytes": h.activation_bytes[s],
    }
    if getattr(h.model.counter, "newton", None):  # an implicit method's (one seed a job): training's Newton work
        from ..trajectory.records import training_newton

        metrics["newton_iterations"], metrics["linear_solves"] = training_newton(h.model.counter)
    timing = {"isolated": False, "ensemble_members": S, "ensemble_seeds": list(h.seeds), "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, "
                      "measured while other runs may share the machine (contended)"}
    curves = {
        "epoch": list(range(1, e + 1)),
        "loss": [row[s] for row in c["loss"][:e]],
        "train_acc": [row[s] for row in c["train_acc"][:e]],
        **mine,
        "test_epoch": h.test_epochs[:n_test],
        "test_acc": [row[s] for row in h.test_curve[:n_test]],
    }
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s),
                        timing=timing, curves=curves)


def train_models(model_cfg: ModelConfig, protocol: Protocol, seeds: Sequence[int], device: str = "cpu",
                 progress: Callable[[int, float], None] | None = None, extra_config: dict | None = None,
                 data_=None, config_of: Callable[[int], dict] | None = None):
    """Train one model per seed (as one ensemble): ``(records, trained ensemble)``.  A classification task other
    than the spiral passes its data (:class:`study.tasks.classification.Data`) and its configs (``config_of(seed)``)."""
    from ..classification import fit

    h = fit(model_cfg, protocol, seeds, device, progress, data_=data_)
    env = environment(device)
    if config_of is None:
        config_of = lambda seed: _spiral_run_config(model_cfg, protocol, seed, device, extra_config)  # noqa: E731
    return [_record(h, s, config_of(h.seeds[s]), env) for s in range(len(h.seeds))], h.model


PROBED = ("input", "y0", "yT")  # the representations the probe reads: x, y(0), y(T)


def _relative_rms(estimate, exact) -> float | None:
    """RMS of ``estimate - exact`` over the RMS of ``exact`` (None when not finite)."""
    err = float((estimate.double() - exact.double()).pow(2).mean().sqrt() / exact.double().pow(2).mean().sqrt())
    return err if np.isfinite(err) else None


def probe_members(model, seeds: Sequence[int], P: Protocol, device: str = "cpu") -> list[dict | None]:
    """Each member's linear-probe accuracies (train fit and held-out) on ``x``, ``y(0)`` and ``y(T)``;
    the evaluations it makes are not counted (they would change no record, but keep the counter honest)."""
    import torch

    from ..classification import Data

    d = Data.of(seeds, P, device)
    counter = model.counter
    saved = dict(counter.counts), counter.accepted, counter.rejected
    try:
        with torch.no_grad():
            feats = {"train": (d.xtr, *model.features(d.xtr)), "test": (d.xte, *model.features(d.xte))}
            back = model.reconstruct(feats["test"][2])
    finally:
        counter.counts.update(saved[0])
        counter.accepted, counter.rejected = saved[1], saved[2]
    out: list[dict | None] = []
    for s in range(len(seeds)):
        ytr, yte = d.ytr[s].cpu().numpy(), d.yte[s].cpu().numpy()
        row = {}
        for i, name in enumerate(PROBED):
            ztr, zte = feats["train"][i][s].double().cpu().numpy(), feats["test"][i][s].double().cpu().numpy()
            if not (np.isfinite(ztr).all() and np.isfinite(zte).all()):
                row = None
                break
            from ...engine import probe as linear_probe

            fitted = linear_probe.fit(ztr, ytr)
            row[f"{name}_train"] = fitted.accuracy(ztr, ytr)
            row[f"{name}_test"] = fitted.accuracy(zte, yte)
        if row is not None:
            row["recon_rel"] = None if back is None else _relative_rms(back[s], feats["test"][1][s])
        out.append(row)
    return out


def train(configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (``configs`` differ only in their seed) and the trained ensemble; with ``transfer``
    solvers, each ok record's ``metrics.transfer`` holds its model's rows (:func:`transfer_rows`)."""
    first = configs[0]
    extra = {k: first[k] for k in ("probe",) if first.get(k)}
    P, seeds, device = Protocol.from_dict(first), [c["seed"] for c in configs], first.get("device", "cpu")
    recs, model = train_models(ModelConfig.from_dict(first), P, seeds, device=device, progress=progress,
                               extra_config={"variant": first["variant"], **extra})
    if first.get("probe"):
        for rec, row in zip(recs, probe_members(model, seeds, P, device)):
            if rec["status"] == "ok" and row is not None:
                rec["metrics"]["probe"] = row
    if transfer:
        for rec, rows in zip(recs, transfer_rows(model, seeds, P, transfer, device)):
            if rec["status"] == "ok":
                rec["metrics"]["transfer"] = rows
    return recs, model


def summary(record: dict) -> list[str]:
    m = record["metrics"]
    return [f"  params {m['params']:,}   train acc {100 * m['train_acc']:.2f}%   test acc {100 * m['test_acc']:.2f}%   "
            f"final loss {m['final_loss']:.4f}",
            f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   eval {m['nfe_eval']:,}   "
            f"wall {m['wall_time_s']:.1f} s   activations {m['activation_bytes'] or 0:,} B"]


def transfer_rows(model, seeds: Sequence[int], P: Protocol, solvers: list[dict], device: str = "cpu",
                  data_=None) -> list[list]:
    """Each member's held-out accuracy when its trained weights are solved by each of ``solvers`` (the hand
    engine; ``{"method", "steps"}`` or ``{"method", "tol"}``, ``"dtype": "float64"`` for a float64 solve),
    and the evaluations it took: ``[[{solver, test_acc, nfe}, ...] per member]``.  Models without a flow
    of one vector field (the ResNet, no flow) have no rows."""
    import torch

    from ..classification import Data, evaluate, is_solver_failure
    from ...engine.models import Classifier

    if model.cfg.model != "ode":
        return [[] for _ in seeds]
    d = Data.of(seeds, P, device) if data_ is None else data_
    rows: list[list] = [[] for _ in seeds]
    for solver in solvers:
        over = {"backend": "hand", "method": solver["method"]}
        over.update({"steps": solver["steps"]} if "steps" in solver else {"rtol": solver["tol"], "atol": solver["tol"]})
        cfg = ModelConfig.from_dict({**model.cfg.__dict__, **over})
        dtype = torch.float64 if solver.get("dtype") == "float64" else torch.float32
        other = Classifier(cfg, list(seeds)).to(device)
        other.load_state_dict(model.state_dict())
        other = other.to(dtype)
        other.counter.phase = "eval"
        try:
            acc = evaluate(other, d.xte.to(dtype), d.yte)
        except AssertionError as exc:
            if not is_solver_failure(exc):
                raise
            acc = [float("nan")] * len(seeds)
        nfe = other.counter.snapshot(len(seeds))["eval"]
        for s in range(len(seeds)):
            failed = s in other.counter.failures
            rows[s].append({"solver": solver_label(solver), "test_acc": None if failed else acc[s], "nfe": nfe[s]})
    return rows



# -- the work-precision kind's problem: the trained flow on a held-out batch -----------------------------------

def workprecision_models(config: dict) -> dict:
    """The models whose fields the work-precision runner measures: ``{name: (model, status)}`` for the names in
    ``config["fields"]`` (``trained``: ``train_variant`` trained alone on ``seed`` with ``protocol``;
    ``initial``: its initial weights, whose field is zero with the article's zero initialisation)."""
    from ...engine.models import Classifier
    from ...variants import variant_config

    cfg = variant_config(config["train_variant"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Classifier(cfg, [config["seed"]]), "ok")
        else:
            (rec,), model = train_models(cfg, Protocol.from_dict(config["protocol"]), [config["seed"]])
            out[name] = (model, rec["status"])
    return out


def problem(model, config: dict):
    """The flow of ``model`` (member 0, in float64) from the lifted first ``batch`` held-out points over [0, 1]; the
    loss is the head's cross-entropy on their labels."""
    from . import data

    m = model.member(0).double() if model.members > 1 else model.double()
    P = Protocol.from_dict(config["protocol"])
    sp = data.make_split(config["seed"], P.n_train, P.n_test, P.sigma)
    return flow_problem(m, sp.x_test[: config["batch"]], sp.y_test[: config["batch"]])


def flow_problem(m, x, y):
    """The work-precision problem of a one-member float64 classifier ``m`` on points ``x`` with labels ``y``: its
    flow over [0, 1] from their lifted states; the loss is the head's cross-entropy."""
    import torch

    from ...engine.field import MLP
    from ...runners.workprecision import Problem

    x = torch.as_tensor(x, dtype=torch.float64).unsqueeze(0)
    y = torch.as_tensor(y)
    with torch.no_grad():
        y0 = m.lift(x).transpose(1, 2).contiguous()
    raw = tuple(None if p is None else p.detach() for p in m.core.func.raw())
    head = lambda y1: torch.nn.functional.cross_entropy(m.head(y1.transpose(1, 2))[0], y)  # noqa: E731
    return Problem(MLP, raw, y0, 0.0, 1.0, head)
