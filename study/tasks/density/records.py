"""The density task's records: their schema, one record per member of a trained job, what ``study run`` prints."""
from __future__ import annotations


from ..loop import History
from .data import entropy
from .evaluate import member_metrics, transfer_rows
from .field import Flow, member
from .fit import CURVES, fit
from .hooks import config_model
from .protocol import BOX, Protocol


# -- records ---------------------------------------------------------------------------------------------------

SCHEMA = {
    **{f"config.{k}": t for k, t in {"task": "str", "task_version": "int", "variant": "str", "seed": "int",
                                     "device": "str", "model": "str", "backend": "str", "method": "str",
                                     "engine": "str", "density": "str", "iterations": "int", "lr": "float",
                                     "batch_size": "int", "hidden": "int", "t_end": "float", "divergence": "str",
                                     "n_train": "int", "n_test": "int", "grid": "int"}.items()},
    **{f"metrics.{k}": t for k, t in {"params": "int", "nll": "float?", "nll_own": "float?", "nll_bias": "float?",
                                      "gap": "float?", "entropy": "float", "entropy_se": "float", "mass": "float?",
                                      "mass_own": "float?", "final_loss": "float?", "iterations_completed": "int",
                                      "nfe_forward": "int", "nfe_backward": "int", "nfe_eval": "float?",
                                      "accepted_steps": "int", "rejected_steps": "int", "reference_nfe": "float?",
                                      "wall_time_s": "float"}.items()},
    **{f"curves.{k}": t for k, t in {"iteration": "list[int]", "loss": "list[float?]", "val_nll": "list[float?]",
                                     "nfe_forward": "list[int]", "nfe_backward": "list[int]",
                                     "accepted_steps": "list[int]", "rejected_steps": "list[int]"}.items()},
    "data.box": "float", "data.grid_log_density": "list[float?]", "data.samples": "list[list[float?]]",
}
SAME_LENGTH = [("curves.iteration", "curves.loss", "curves.val_nll", "curves.nfe_forward")]


def _member_record(flow: Flow, h: History, s: int, P: Protocol, config: dict, env: dict, counts,
                   transfer: list[dict] | None = None) -> dict:
    from ... import records

    diverged = s in h.diverged
    c = h.curves
    e = h.stopped.get(s, h.done)
    n_curve = sum(1 for it in c["iteration"] if it <= e)
    mine = {k: [row[s] for row in c[k][:n_curve]] for k in CURVES}
    alone = member(flow, s)
    if diverged:  # its weights are not a model: nothing to evaluate or draw
        H = entropy(P.density)
        metrics = {"nll": None, "nll_own": None, "nll_bias": None, "gap": None, "entropy": H[0], "entropy_se": H[1],
                   "mass": None, "mass_own": None, "nfe_eval": None, "reference_nfe": None}
        data_ = {"box": BOX, "grid_log_density": [], "samples": []}
    else:
        metrics, data_ = member_metrics(alone, P)
    if not diverged and transfer:
        metrics["transfer"] = transfer_rows(alone, P, transfer)
    metrics.update({
        "params": flow.param_count(), "final_loss": mine["loss"][-1] if mine["loss"] else None,
        "iterations_completed": e, "nfe_forward": counts["forward"][s], "nfe_backward": counts["backward"][s],
        "accepted_steps": counts["accepted"][s], "rejected_steps": counts["rejected"][s],
        "wall_time_s": h.wall_s / h.S})
    timing = {"isolated": False, "ensemble_members": h.S, "ensemble_seeds": list(flow.seeds),
              "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, measured while other "
                      "runs may share the machine (contended)"}
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s), timing=timing,
                        curves={"iteration": c["iteration"][:n_curve], **mine}, data=data_)


def train(configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (configs that differ only in their seed) and the trained flow."""
    from ...provenance import environment

    first = configs[0]
    cfg, P = config_model(first), Protocol.from_dict(first)
    seeds = [c["seed"] for c in configs]
    flow, h = fit(cfg, P, seeds, first.get("device", "cpu"), progress)
    counts = flow.counter.snapshot(len(seeds))
    env = environment(first.get("device", "cpu"))
    return [_member_record(flow, h, s, P, c, env, counts, transfer) for s, c in enumerate(configs)], flow


def summary(record: dict) -> list[str]:
    m = record["metrics"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return [f"  held-out NLL {fmt(m['nll'])} nats (reference solve; training solver {fmt(m['nll_own'])}, "
            f"bias {fmt(m['nll_bias'])})   entropy {m['entropy']:.4f} +- {m['entropy_se']:.4f}   gap {fmt(m['gap'])}",
            f"  mass on the lattice {fmt(m['mass'])} (reference solve; training solver {fmt(m['mass_own'])})",
            f"  params {m['params']:,}   final loss {fmt(m['final_loss'])}   iterations {m['iterations_completed']:,}",
            f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   wall {m['wall_time_s']:.1f} s"]


