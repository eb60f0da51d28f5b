"""``study audit``: train the user's model in every cell of a budget, measure each trained model, keep one record per
(cell, seed) in the store, and write the report.  Resumable: a record is named by the problem file's content hash and
its config, so a second run does only what is missing, and a changed file starts afresh."""
from __future__ import annotations

import math
import os
import traceback
from pathlib import Path

import torch

from .. import records, store
from ..engine.module_field import FieldError
from ..provenance import environment
from . import analyse, cells
from .model import given_modules, model_for
from .problem import load
from .train import evaluate, how_of, nfe_trend, train

AUDIT_VERSION = 1  # bumped when what an audit record measures changes: it renames every audit record


def config(loaded, budget, cell: dict | None, seed: int | None, iterations: int) -> dict:
    """An audit record's config: the problem (its file's hash), the budget's grids, the cell and seed (None, None:
    the given trained model)."""
    p = loaded.problem
    return {"kind": "audit", "audit_version": AUDIT_VERSION, "problem": loaded.sha256, "problem_name": loaded.name,
            "budget": budget.name, "cell": cell, "seed": seed, "iterations": iterations, "batch_size": p.batch_size,
            "lr": p.lr, "transfer_steps": list(budget.transfer_steps), "wp_steps": list(budget.wp_steps),
            "wp_tolerances": list(budget.wp_tolerances), "reference_tol": budget.reference_tol}


def plan(loaded, budget, seeds: int) -> list[dict]:
    """Every record of the audit: each cell x seed, and the given model where the problem names one."""
    iterations = min(loaded.problem.iterations, budget.iterations or loaded.problem.iterations)
    out = [config(loaded, budget, c, s, iterations) for c in cells.cells(budget) for s in range(seeds)]
    if loaded.problem.state_dict is not None:
        out.append(config(loaded, budget, None, None, 0))
    return out


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _measured(model, loaded, budget, cell: dict, rho_start) -> dict:
    """Everything measured on a trained (or given) model in its cell's solver."""
    own = evaluate(model, loaded.test, how_of(cell)) if cell else None
    hand = None  # the hand engine's steps of the cell's solver (the step size of the stiffness indicator)
    if cell:  # a hand cell's own evaluation is that solve: every gradient method's forward pass is the same
        hand = own if cell["implementation"] == "hand" else evaluate(
            model, loaded.test, how_of({**cell, "implementation": "hand", "gradient": "direct"}))
    rows = analyse.transfer(model, loaded, budget)
    ref = rows[-1]
    radii = analyse.spectral_radii(model, loaded, budget)
    primary = loaded.problem.primary
    metrics = {"params": sum(p.numel() for p in model.parameters()),
               "test_loss_ref": _finite(ref["loss"]), "test_primary_ref": _finite(ref["primary"]),
               "rho_start": rho_start, "rho_end": max(radii) if radii else None,
               "field_err": analyse.field_error(model, loaded, budget)}
    if cell:
        vals = own["values"] or {}
        metrics.update(test_loss_own=_finite(vals.get("loss")), test_primary_own=_finite(vals.get(primary)),
                       nfe_eval=own["nfe"], eval_failure=own["failure"])
        own_p, ref_p = metrics["test_primary_own"], metrics["test_primary_ref"]
        metrics["ode_gap"] = (abs(ref_p - own_p) / max(abs(own_p), 1e-12)
                              if own_p is not None and ref_p is not None else None)
        metrics.update(analyse.stiffness(radii, cell, loaded, hand["accepted"] if hand else None))
    else:
        metrics["stiffness"] = [{"solver": cells.solver_label(c), **analyse.stiffness(radii, c, loaded, None)}
                                for c in cells.cells(budget) if c["implementation"] == "hand"
                                and c["gradient"] == "direct" and "steps" in c]
    if budget.wp_on_every_model or not cell or (cell["implementation"], cell["gradient"]) == ("hand", "direct"):
        wp = analyse.workprecision(model, loaded, budget, 3 if budget.name == "standard" else 1)
    else:
        wp = {"solution": [], "gradient": [], "samples": 0,
              "skipped": f"the {budget.name} budget measures work-precision on the hand engine's backpropagation-"
                         "trained models only"}
    return {"metrics": metrics, "transfer": rows, "workprecision": wp}


def user_error(exc: BaseException, loaded, what: str, always: bool = False) -> BaseException:
    """``exc`` as a one-line :class:`ProblemError` where the problem's own code raised it (its file is in the
    traceback, or the field broke the field contract); ``exc`` itself otherwise (a fault of the audit)."""
    from .problem import ProblemError, _where

    frames = traceback.extract_tb(exc.__traceback__)
    theirs = any(Path(f.filename).resolve() == loaded.path.resolve() for f in frames)
    if always or isinstance(exc, FieldError) or theirs:
        where = loaded.path if isinstance(exc, FieldError) and not theirs else _where(exc, loaded.path)
        return ProblemError(f"{where}: {type(exc).__name__}: {exc} (while {what})")
    return exc


def smoke(loaded) -> None:
    """One forward and backward pass on two samples (one Euler step an interval), so that a problem that cannot run
    fails at once, in one line, before anything is trained."""
    from ..engine.solve import How
    from .train import _rows

    try:
        model = model_for(loaded, 0)
        x, t, y = _rows(loaded.train, slice(0, 2))
        loss = loaded.problem.loss(model.predict(x, t, How("hand", "euler", 1)), y)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            from .problem import ProblemError

            raise ProblemError(f"{loaded.path}: loss(pred, target) must return a scalar tensor, got "
                               f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}")
        loss.backward()
    except Exception as exc:  # noqa: BLE001 - the user's code ran: whatever it raised is theirs, in one line
        from .problem import ProblemError

        if isinstance(exc, ProblemError):
            raise
        raise user_error(exc, loaded, "trying the model on two samples", always=True) from None


def run_one(loaded, budget, cfg: dict, rho_start: dict | None = None) -> dict:
    """The record of one config (training, then every measurement); an error of the problem's own code is one
    :class:`ProblemError` line.  ``rho_start``: the initial models' spectral radii by seed, kept across the cells
    (every cell of a seed starts from the same weights)."""
    what = f"training {cells.label(cfg['cell'])}, seed {cfg['seed']}" if cfg["cell"] else "measuring the given model"
    try:
        return _run_one(loaded, budget, cfg, {} if rho_start is None else rho_start)
    except Exception as exc:  # noqa: BLE001 - the user's errors become one line; the audit's own propagate
        raise user_error(exc, loaded, what) from None


def _run_one(loaded, budget, cfg: dict, rho_start: dict) -> dict:
    env = environment(str(loaded.train[0].device))
    if cfg["cell"] is None:  # the given trained model, as it is
        model = model_for(loaded, 0, given_modules(loaded))
        m = _measured(model, loaded, budget, None, None)
        return records.make(cfg, {**m["metrics"], "given": True}, env, transfer=m["transfer"],
                            workprecision=m["workprecision"])
    seed = cfg["seed"]
    if seed not in rho_start:
        rho_start[seed] = max(analyse.spectral_radii(model_for(loaded, seed), loaded, budget) or [0.0])
    model, t = train(loaded, cfg["cell"], seed, cfg["iterations"])
    m = _measured(model, loaded, budget, cfg["cell"], rho_start[seed])
    c = t["curves"]
    metrics = {**m["metrics"], "iterations_completed": t["iterations_completed"],
               "final_loss": c["loss"][-1] if c["loss"] else None, "wall_time_s": t["wall_time_s"],
               "time_per_iteration_s": t["wall_time_s"] / max(1, t["iterations_completed"]), "nfe_trend": nfe_trend(c),
               "nfe_per_iteration": (sum(c["nfe_forward"]) + sum(c["nfe_backward"])) / max(1, len(c["iteration"]))}
    return records.make(cfg, metrics, env, t["status"], t["reason"], curves=c, transfer=m["transfer"],
                        workprecision=m["workprecision"])


def audit(path, budget: str = "quick", seeds: int | None = None, out=None, runs_dir=None, device: str = "cpu",
          log=print, progress: bool = True) -> dict:
    """The audit of the problem file ``path`` (see ``docs/audit.md``); returns the report's summary
    (:func:`study.audit.report.write`).  Records go to ``runs_dir`` (default ``audit/<name>/runs``), the report to
    ``out`` (default ``audit/<name>``)."""
    from tqdm import tqdm

    from .report import write

    torch.set_num_threads(1)
    b = cells.BUDGETS[budget]
    loaded = load(path)
    if device != "cpu":
        loaded.train, loaded.test = (tuple(a.to(device) for a in s) for s in (loaded.train, loaded.test))
    seeds = b.seeds if seeds is None else int(seeds)
    out = Path(out) if out is not None else Path("audit") / loaded.name
    runs = Path(runs_dir) if runs_dir is not None else out / "runs"
    smoke(loaded)
    todo = plan(loaded, b, seeds)
    done, recs, rho_start = 0, [], {}
    bar = tqdm(todo, desc=f"audit {loaded.name} ({budget})", unit="run", disable=not progress or None)
    for cfg in bar:
        path_ = store.record_path(runs, "audit", cfg)
        rec = _existing(path_, cfg)
        if rec is None:
            bar.set_postfix_str(cells.label(cfg["cell"]) + f" seed {cfg['seed']}" if cfg["cell"] else "given model")
            rec = run_one(loaded, b, cfg, rho_start)
            store.write_atomic(path_, rec)
        else:
            done += 1
        recs.append(rec)
    log(f"audit {loaded.name}: {len(todo)} runs ({done} already in {runs}), report in {out}")
    return write(recs, out, loaded.name, loaded.problem.primary, loaded.problem.primary in loaded.problem.higher_is_better)


def _existing(path: Path, cfg: dict) -> dict | None:
    """A valid record of ``cfg`` already at ``path``; one that is unreadable, invalid or of another config (an
    edited file) is moved aside and redone."""
    if not os.path.lexists(path):
        return None
    try:
        rec = store.read_record(path)
        if rec["config"] != cfg:
            raise ValueError("the record's config is not the one its name says")
    except Exception:  # noqa: BLE001 - a store file is untrusted: anything wrong with it means the run is redone
        store.quarantine(path)
        return None
    return rec if rec.get("status") in ("ok", "diverged") else None
