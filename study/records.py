"""The run record: one JSON object per run, the only thing a run leaves behind.

Every record has ``schema`` (:data:`SCHEMA_VERSION`), ``kind`` (which runner
made it), ``config`` (exactly what was run: the store's file name is its
hash), ``status`` (``ok``, ``diverged`` or ``error``), ``reason``, ``env``
(where it ran, see ``study.provenance``) and ``metrics``; runners add their
own sections (``curves``, ``timing``, ``data``, ``traceback``).  Records are
built here and nowhere else, and validated here when read.  Torch-free.
"""
from __future__ import annotations

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
    return {**make({**config, "kind": config.get("kind", "train")}, {}, env, "error", f"{type(exc).__name__}: {exc}",
                   traceback="".join(_traceback.format_exception(exc))), "config": config}


def validate(record) -> None:
    """Raise :class:`InvalidRecord` naming what is wrong with ``record``."""
    if not isinstance(record, dict):
        raise InvalidRecord("not a JSON object")
    for key, typ in REQUIRED.items():
        if key not in record:
            raise InvalidRecord(f"missing field {key!r}")
        if not isinstance(record[key], typ):
            raise InvalidRecord(f"field {key!r} should be {typ.__name__}, is {type(record[key]).__name__}")
    if record["status"] not in STATUSES:
        raise InvalidRecord(f"status {record['status']!r} is not one of {', '.join(STATUSES)}")
    if record["status"] == "ok" and record["kind"] == "train":
        for m in ("params", "train_acc", "test_acc", "nfe_forward"):
            if m not in record["metrics"]:
                raise InvalidRecord(f"ok training record without metrics.{m}")
