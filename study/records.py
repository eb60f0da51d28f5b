"""The run record: one JSON object per run, the only thing a run leaves behind.

Every record has ``schema`` (:data:`SCHEMA_VERSION`), ``kind`` (which runner
made it), ``config`` (exactly what was run: the store's file name is its
hash), ``status`` (``ok``, ``diverged`` or ``error``), ``reason``, ``env``
(where it ran, see ``study.provenance``) and ``metrics``; runners add their
own sections (``curves``, ``timing``, ``data``, ``traceback``).  Records are
built here and nowhere else, and validated here when read.  Torch-free.
"""
from __future__ import annotations

import functools
import math
import traceback as _traceback

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "error")
REQUIRED = {"schema": int, "kind": str, "config": dict, "status": str, "env": dict, "metrics": dict}


class InvalidRecord(Exception):
    """A JSON object that is not a valid record; the message says what is wrong."""


def make(config: dict, metrics: dict, env: dict, status: str = "ok", reason: str | None = None, **sections) -> dict:
    """A record of ``config``'s run (its kind is ``config["kind"]``)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return {"schema": SCHEMA_VERSION, "kind": config["kind"], "config": config, "status": status, "reason": reason,
            "env": env, "metrics": metrics, **sections}


def error(config: dict, exc: BaseException, env: dict) -> dict:
    """The record of a run that raised: status ``error``, the exception and its traceback."""
    return make(config, {}, env, "error", f"{type(exc).__name__}: {exc}",
                traceback="".join(_traceback.format_exception(exc)))


# What each kind's ok and diverged records hold: dotted path -> type.  Types: int, float (an int is a float too;
# never NaN: non-finite numbers are stored as null), str, bool, dict, list[T]; a trailing "?" allows null.
_TRAIN_METRICS = {
    "params": "int", "train_acc": "float", "test_acc": "float", "final_loss": "float?", "epochs_completed": "int",
    "nfe_forward": "int", "nfe_backward": "int", "nfe_eval": "int", "nfe_final_eval": "int", "accepted_steps": "int",
    "rejected_steps": "int", "wall_time_s": "float", "activation_bytes": "int?",
}
_TRAIN_CURVES = {"epoch": "list[int]", "loss": "list[float?]", "train_acc": "list[float?]", "nfe_forward": "list[int]",
                 "nfe_backward": "list[int]", "accepted_steps": "list[int]", "rejected_steps": "list[int]",
                 "test_epoch": "list[int]", "test_acc": "list[float?]"}
_MODEL = {"model": "str", "backend": "str", "method": "str", "steps": "int", "rtol": "float?", "atol": "float?",
          "adjoint_norm": "str?", "lift_dim": "int", "hidden": "int", "head_hidden": "int", "time_input": "bool",
          "zero_init": "bool", "max_num_steps": "int"}
_PROTOCOL = {"epochs": "int", "lr": "float", "batch_size": "int", "n_train": "int", "n_test": "int", "sigma": "float",
             "eval_every": "int", "curve_test_points": "int"}
SCHEMA: dict[str, dict[str, str]] = {
    "train": {**{f"config.{k}": t for k, t in {**_MODEL, **_PROTOCOL, "variant": "str", "seed": "int", "device": "str",
                                               "engine": "str"}.items()},
              **{f"metrics.{k}": t for k, t in _TRAIN_METRICS.items()},
              **{f"curves.{k}": t for k, t in _TRAIN_CURVES.items()}},
    "memory": {**{f"config.{k}": t for k, t in {**_MODEL, "solver": "str", "variant": "str", "seed": "int",
                                                "batch_size": "int", "repeats": "int", "device": "str",
                                                "engine": "str"}.items()},
               "metrics.activation_bytes": "int", "metrics.nfe_forward": "int", "metrics.nfe_backward": "int",
               "metrics.params": "int", "metrics.step_time_s": "float", "metrics.step_time_spread_s": "float",
               "metrics.step_time_samples": "int"},
    "convergence": {"config.solver": "str", "config.steps": "list[int]", "config.problem": "str", "config.t1": "float",
                    "metrics.steps": "list[int]", "metrics.h": "list[float]", "metrics.error": "list[float]",
                    "metrics.slope": "float?", "metrics.order": "int", "metrics.tableau": "str"},
    "gradients": {"config.train_variant": "str", "config.seed": "int", "config.steps": "list[int]",
                  "config.tolerances": "list[float]", "config.batch_size": "int", "config.protocol": "dict",
                  "config.engines": "str",
                  "metrics.rows": "list[dict]", "metrics.trained_test_acc": "float?"},
    "adjoint": {"config.train_variant": "str", "config.seed": "int", "config.protocol": "dict",
                "config.epochs_measured": "list[int]", "config.steps": "list[int]", "config.tolerances": "list[float]",
                "config.engines": "str", "metrics.rows": "list[dict]", "metrics.test_acc": "float?",
                "metrics.epochs_completed": "int"},
    "trajectories": {"config.variant": "str", "config.seed": "int", "config.points": "int", "config.times": "int",
                     "config.grid": "int", "config.protocol": "dict", "config.engine": "str", "metrics.train_acc": "float?",
                     "metrics.test_acc": "float?", "metrics.params": "int", "metrics.nfe_forward": "int",
                     "data.times": "list[float]", "data.labels": "list[int]", "data.inputs": "list[list[float]]",
                     "data.states": "list[list[list[float]]]", "data.grid": "list[float]",
                     "data.prob_class1": "list[list[float]]"},
    "timing": {"config.variant": "str", "config.batch_size": "int", "config.repeats": "int", "config.members": "int",
               "config.seed": "int", "config.engine": "str", "metrics.step_time_s": "float", "metrics.step_time_spread_s": "float",
               "metrics.nfe_per_step": "float", "metrics.time_per_nfe_s": "float?", "metrics.implied_protocol_s": "float",
               "metrics.repeats": "int"},
    "workprecision": {"config.train_variant": "str", "config.seed": "int", "config.protocol": "dict",
                      "config.fields": "list[str]", "config.steps": "list[int]", "config.tolerances": "list[float]",
                      "config.reference_tol": "float", "config.engines": "str", "config.measure.what": "str",
                      "config.measure.backend": "str", "config.measure.method": "str", "metrics.rows": "list[dict]",
                      "metrics.trained_status": "str"},
    "audit": {"config.problem": "str", "config.problem_name": "str", "config.budget": "str", "config.seed": "int?",
              "config.cell": "dict?", "config.audit_version": "int", "metrics.params": "int",
              "metrics.test_loss_ref": "float?", "metrics.rho_end": "float?", "transfer": "list[dict]",
              "workprecision.solution": "list[dict]", "workprecision.gradient": "list[dict]"},
    "bench": {"config.steps": "int", "config.batch_size": "int", "config.rounds": "int", "config.engines": "str",
              "metrics.rows": "list[dict]",
              "metrics.matmul_gflops_128": "float"},
    "transfer": {"config.train": "dict", "config.seed": "int", "config.members": "list[int]", "config.solver": "dict",
                 "config.engines": "str", "metrics.solver": "str", "metrics.trained_status": "str"},
    "taskbench": {"config.task": "str", "config.rounds": "int", "config.steps": "int", "config.tol": "float",
                  "config.engines": "str", "metrics.rows": "list[dict]", "metrics.kernel_floor_us": "dict"},
}
ROWS: dict[str, dict[str, str]] = {  # the entries of metrics.rows
    "adjoint": {"epoch": "int", "batch": "int", "what": "str", "method": "str", "steps": "int?", "tol": "float?",
                "dtype": "str"},
    "gradients": {"method": "str", "steps": "int?", "tol": "float?"},
    "workprecision": {"field": "str", "what": "str", "backend": "str", "method": "str", "error": "float?",
                      "nfe": "int?", "time_s": "float?", "failure": "str?"},
    "bench": {"solver": "str", "mode": "str", "method": "str", "median_us": "float", "spread_us": "float",
              "ratio_to_bare": "float", "floor_us": "float"},
    "taskbench": {"task": "str", "solver": "str", "mode": "str", "backend": "str", "method": "str", "nfe_per_call": "int",
                  "median_us": "float", "spread_us": "float", "floor_us": "float", "ratio_to_tdq": "float?",
                  "ratio_to_floor": "float"},
}
SAME_LENGTH = {"train": [("curves.epoch", "curves.loss", "curves.train_acc", "curves.nfe_forward"),
                         ("curves.test_epoch", "curves.test_acc")],
               "convergence": [("metrics.steps", "metrics.h", "metrics.error")]}
DIVERGED_MAY_BE_NULL = {"metrics.train_acc", "metrics.test_acc"}
# Fields a record holds when its config asks for them: (kind, config key) -> fields, checked on ok records.
OPTIONAL = {("train", "probe"): {**{f"metrics.probe.{r}_{s}": "float" for r in ("input", "y0", "yT") for s in ("train", "test")},
                                 "metrics.probe.recon_rel": "float?"}}


def _type_ok(value, spec: str) -> bool:
    if spec.endswith("?"):
        return value is None or _type_ok(value, spec[:-1])
    if spec.startswith("list["):
        return isinstance(value, list) and all(_type_ok(v, spec[5:-1]) for v in value)
    if spec == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if spec == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "dict": dict}[spec])


def _get(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InvalidRecord(f"missing field {dotted!r}")
        value = value[part]
    return value


def _check_fields(record: dict, fields: dict[str, str], nullable: set[str] = frozenset()) -> None:
    for dotted, spec in fields.items():
        value = _get(record, dotted)
        if not _type_ok(value, spec + ("?" if dotted in nullable and not spec.endswith("?") else "")):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise InvalidRecord(f"field {dotted!r} should be {spec}, is {shown}")


def _check_transfer(record: dict) -> None:
    """A transfer record of a trained model holds its evaluations and one metric (null where the solve failed);
    one of a model that did not train holds neither."""
    m, solver = record["metrics"], record["config"]["solver"]
    grid = {"steps": "int"} if "steps" in solver else {"tol": "float"}
    _check_fields({"solver": solver}, {"solver.method": "str", **{f"solver.{k}": t for k, t in grid.items()}})
    if set(solver) - {"method", "steps", "tol", "dtype"} or solver.get("dtype", "float64") != "float64":
        raise InvalidRecord(f"field 'config.solver' is not a solver: {solver!r:.60}")
    if m["trained_status"] not in ("ok", "diverged"):
        raise InvalidRecord(f"field 'metrics.trained_status' should be ok or diverged, is {m['trained_status']!r}")
    values = [k for k in m if k not in ("solver", "trained_status", "nfe")]
    if m["trained_status"] == "ok":
        _check_fields(record, {"metrics.nfe": "float?"})
        if len(values) != 1 or not _type_ok(m[values[0]], "float?"):
            raise InvalidRecord("a transfer record of a trained model holds one metric, a number or null")
    elif values or "nfe" in m:
        raise InvalidRecord("a transfer record of a model that did not train holds no metric")


def validate(record, schemas=None) -> None:
    """Raise :class:`InvalidRecord` naming what is wrong with ``record``: its envelope, and for ``ok`` and
    ``diverged`` records every field its kind's figures and tables read (:data:`SCHEMA`, or what ``schemas(record)``
    returns for it: ``(fields, same-length groups)``, None for the kind's own; the store names no task, so its
    callers pass the tasks' schemas) and every number's domain (:func:`domain`).  Whatever goes wrong while
    checking, a record that cannot be checked is invalid: no other exception leaves this function."""
    try:
        _validate(record, schemas)
    except InvalidRecord:
        raise
    except KeyError as exc:  # a schema's look-up: an unknown task
        raise InvalidRecord(str(exc.args[0]) if exc.args else "unknown schema") from None
    except Exception as exc:  # noqa: BLE001 - an edited field can break any check; it makes the record invalid
        raise InvalidRecord(f"cannot be checked ({type(exc).__name__}: {exc})") from None


def _validate(record, schemas) -> None:
    if not isinstance(record, dict):
        raise InvalidRecord("not a JSON object")
    for key, typ in REQUIRED.items():
        if key not in record:
            raise InvalidRecord(f"missing field {key!r}")
        if not isinstance(record[key], typ) or isinstance(record[key], bool) and typ is int:
            raise InvalidRecord(f"field {key!r} should be {typ.__name__}, is {type(record[key]).__name__}")
    if record["schema"] != SCHEMA_VERSION:
        raise InvalidRecord(f"schema {record['schema']} is not this package's ({SCHEMA_VERSION})")
    if record["status"] not in STATUSES:
        raise InvalidRecord(f"status {record['status']!r} is not one of {', '.join(STATUSES)}")
    kind = record["kind"]
    if kind not in SCHEMA:
        raise InvalidRecord(f"kind {kind!r} is not one of {', '.join(SCHEMA)}")
    if record["config"].get("kind") != kind:
        raise InvalidRecord(f"config.kind {record['config'].get('kind')!r} is not the record's kind {kind!r}")
    if record["status"] == "error":
        return
    schema, same_length = SCHEMA[kind], SAME_LENGTH.get(kind, [])
    own = schemas(record) if schemas is not None else None  # a task's training records: the caller's schema
    if own is not None:
        schema, same_length = own
    elif schemas is None and kind == "train" and "task" in record["config"]:  # no schema passed for it: its
        schema, same_length = {}, []  # envelope and its numbers' domains are all that can be checked
    _check_fields(record, schema, DIVERGED_MAY_BE_NULL if record["status"] == "diverged" else set())
    for (k, key), fields in OPTIONAL.items():
        if k == kind and record["config"].get(key) and record["status"] == "ok":
            _check_fields(record, fields)
    if kind == "transfer":
        _check_transfer(record)
    for i, row in enumerate(record["metrics"].get("rows", []) if kind in ROWS else []):
        _check_fields({"row": row}, {f"row.{k}": t for k, t in ROWS[kind].items()})
    for group in same_length:
        lengths = {len(_get(record, f)) for f in group}
        if len(lengths) > 1:
            raise InvalidRecord(f"fields {', '.join(group)} should have one length, have {sorted(lengths)}")
    for section in ("metrics", "curves"):
        _check_domains(section, record.get(section))


# The domain of every number a record's metrics and curves hold, by its field's name (the last key of its path):
# what no run can produce, whatever its task.  A value outside it makes the record invalid (corrupt), so that
# no table prints it and run-all makes the run again.
NLL_BOUND = 1e6  # nats: any likelihood, loss or entropy beyond it is no measurement
_COUNTS = {"params", "epoch", "iteration", "test_epoch", "repeats", "rounds", "members", "batch", "steps", "order",
           "activation_bytes", "step_time_samples", "reference_nfe"}
_LIKELIHOODS = {"nll", "nll_own", "nll_bias", "gap", "entropy", "loss", "final_loss", "val_nll"}


@functools.lru_cache(maxsize=4096)
def domain(path: str) -> tuple[float, float] | None:
    """``(low, high)`` for the number at dotted ``path`` (list entries named by their list), or None: any."""
    parts = path.split(".")
    name = parts[-1]
    if name.endswith("_acc") or name == "logistic_regression" or ("probe" in parts and name.endswith(("_train", "_test"))):
        return 0.0, 1.0  # accuracies
    if name in _LIKELIHOODS:
        return -NLL_BOUND, NLL_BOUND
    if (name in _COUNTS or name.startswith("nfe") or name.endswith(("_steps", "_completed", "_nfe"))
            or "time" in name or name.endswith(("_s", "_us", "_err", "error", "_rel", "_se", "spread"))
            or name.startswith(("mass", "sv_", "cond", "ratio")) or "_vs_" in name or name in ("h", "tol")):
        return 0.0, math.inf  # counts, times, errors, masses, singular values, ratios
    return None


def _check_domains(path: str, value) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_domains(f"{path}.{k}", v)
    elif isinstance(value, list):
        bounds = domain(path)  # once for a list (a curve: thousands of numbers of one field)
        for v in value:
            if isinstance(v, (dict, list)):
                _check_domains(path, v)
            elif bounds is not None and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and not bounds[0] <= v <= bounds[1]:
                _check_domains(path, v)  # says which and why
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = domain(path)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise InvalidRecord(f"field {path!r} is {value!r:.40}, outside its domain [{bounds[0]:g}, {bounds[1]:g}]")
