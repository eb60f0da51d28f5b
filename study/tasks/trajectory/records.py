"""A trajectory-fitting task's records: their schema, one record per member of a trained job, and what
``study run`` prints."""
from __future__ import annotations

import math

import numpy as np

from . import data
from .evaluate import member_metrics, own_rollout, transfer_rows
from .fit import CURVES, fit

SCHEMA = {
    **{f"config.{k}": t for k, t in {"task": "str", "task_version": "int", "variant": "str", "seed": "int",
                                     "device": "str", "model": "str", "backend": "str", "method": "str",
                                     "engine": "str", "iterations": "int", "lr": "float", "batch_time": "int",
                                     "batch_size": "int", "n_points": "int", "t_end": "float", "noise": "float",
                                     "field_hidden": "int"}.items()},
    **{f"metrics.{k}": t for k, t in {"params": "int", "traj_err": "float?", "extrap_err": "float?",
                                      "field_err": "float?", "traj_err_own": "float?", "final_loss": "float?",
                                      "iterations_completed": "int", "nfe_forward": "int", "nfe_backward": "int",
                                      "nfe_eval": "int", "accepted_steps": "int", "rejected_steps": "int",
                                      "reference_nfe": "int", "wall_time_s": "float"}.items()},
    **{f"curves.{k}": t for k, t in {"iteration": "list[int]", "loss": "list[float?]", "field_err": "list[float?]",
                                     "nfe_forward": "list[int]", "nfe_backward": "list[int]",
                                     "accepted_steps": "list[int]", "rejected_steps": "list[int]"}.items()},
    "data.times": "list[float]", "data.rollout": "list[list[float?]]", "data.rollout_own": "list[list[float?]]",
    "data.quiver": "list[list[float?]]",
}
SAME_LENGTH = [("curves.iteration", "curves.loss", "curves.field_err", "curves.nfe_forward")]
FIGURE_TIMES = 4  # the record's rollout keeps every this many observation times
QUIVER = 15  # the record's field on a QUIVER x QUIVER lattice over the data's box (phase portraits)


def _short(x) -> float | None:
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def figure_data(flow, s: int, P, ref: np.ndarray, own) -> dict:
    """What the figures draw: the reference rollout over ``[0, t_end + t_extrapolate]`` and the training solver's
    over ``[0, t_end]`` at every :data:`FIGURE_TIMES`-th observation time, and the field on a lattice."""
    t_obs, t_ext = data.times(P)
    t_all = np.concatenate([t_obs, t_ext])
    keep = np.arange(0, len(t_all), FIGURE_TIMES)
    lattice = data.field_grid(flow.task.system, P, QUIVER, masked=False)
    f = flow.values(lattice)[s]
    short = lambda a: [[_short(x) for x in row] for row in a]  # noqa: E731 - six digits are plenty for a figure
    return {"times": [_short(x) for x in t_all[keep]], "rollout": short(ref[keep]),
            "rollout_own": short(own[s][keep[keep < len(t_obs)]]), "quiver": short(np.concatenate([lattice, f], 1))}


def training_newton(counter) -> tuple[int, int]:
    """An implicit method's Newton iterations and linear solves in training (its forward and backward passes)."""
    return tuple(sum(getattr(counter, key, {}).get(p, 0) for p in ("forward", "backward"))
                 for key in ("newton", "linear_solves"))


def member_record(flow, h, s: int, P, config: dict, own, env: dict, counts) -> dict:
    from ... import records

    diverged = s in h.diverged
    c = h.curves
    e = h.stopped.get(s, h.done)
    n_curve = sum(1 for it in c["iteration"] if it <= e)
    mine = {k: [row[s] for row in c[k][:n_curve]] for k in CURVES}
    metrics, ref = member_metrics(flow, s, P, own)
    if diverged:
        metrics.update(traj_err=None, extrap_err=None, field_err=None, traj_err_own=None)
    metrics.update({
        "params": flow.param_count(), "final_loss": mine["loss"][-1] if mine["loss"] else None,
        "iterations_completed": e, "nfe_forward": counts["forward"][s], "nfe_backward": counts["backward"][s],
        "nfe_eval": counts["eval"][s], "accepted_steps": counts["accepted"][s], "rejected_steps": counts["rejected"][s],
        "wall_time_s": h.wall_s / h.S})
    if flow.task.STIFF:  # the stiff tasks' records: the stiffness indicator and what the implicit solves did
        from ...config import METHODS
        from .stiffness import indicator

        metrics["stiffness"] = indicator(flow.task, flow, s, P, counts["accepted"][s], e)
        if METHODS[flow.cfg.method].implicit:
            metrics.update(newton_iterations=int(counts["newton"][0]), linear_solves=int(counts["newton"][1]))
    timing = {"isolated": False, "ensemble_members": h.S, "ensemble_seeds": list(flow.seeds),
              "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, measured while other "
                      "runs may share the machine (contended)"}
    curves = {"iteration": c["iteration"][:n_curve], **mine}
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s), timing=timing,
                        curves=curves, data=figure_data(flow, s, P, ref, own))


def train(task, configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (configs that differ only in their seed) and the trained flow."""
    from ...provenance import environment

    first = configs[0]
    cfg, P = task.config_model(first), task.Protocol.from_dict(first)
    seeds = [c["seed"] for c in configs]
    flow, h = fit(task, cfg, P, seeds, first.get("device", "cpu"), progress)
    counts = flow.counter.snapshot(len(seeds))  # training's evaluations; the rollouts below are not counted
    counts["newton"] = training_newton(flow.counter)
    own, own_nfe = own_rollout(flow, data.times(P)[0])
    counts["eval"] = [own_nfe] * len(seeds)
    env = environment(first.get("device", "cpu"))
    recs = [member_record(flow, h, s, P, c, own, env, counts) for s, c in enumerate(configs)]
    if transfer:
        for rec, rows in zip(recs, transfer_rows(flow, P, transfer)):
            if rec["status"] == "ok":
                rec["metrics"]["transfer"] = rows
    return recs, flow


def summary(record: dict) -> list[str]:
    m = record["metrics"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return [f"  trajectory error {fmt(m['traj_err'])} (reference solve; training solver {fmt(m['traj_err_own'])})   "
            f"extrapolation error {fmt(m['extrap_err'])}   field error {fmt(m['field_err'])} (relative)",
            f"  params {m['params']:,}   final loss {fmt(m['final_loss'])}   iterations {m['iterations_completed']:,}",
            f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   wall {m['wall_time_s']:.1f} s"
            ] + ([f"  Newton iterations {m['newton_iterations']:,}   linear solves {m['linear_solves']:,}"]
                 if "newton_iterations" in m else []) + ([_stiffness_line(m["stiffness"])] if "stiffness" in m else [])


def _stiffness_line(s: dict) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return (f"  stiffness: rho {fmt(s['rho_start'])} at the start, {fmt(s['rho_end'])} at the end; h rho "
            f"{fmt(s['h_rho_end'])} (explicit limits: Euler 2, RK4 2.785, dopri5 3.307)")
