"""The run store: one JSON record per run, at a path derived from its config.

``runs/<kind>/<hash>.json`` where ``hash`` is a stable digest of the
run's config (``study.records`` says what a record holds).  Records are written to a temporary file in the same directory,
flushed, fsynced and atomically renamed, so a reader (or a restart after
kill -9) sees either no record or a complete one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

from . import records



EXECUTION_LOG = "run-all.log.jsonl"  # one JSON line per run-all invocation that ran something


class CorruptRecord(Exception):
    """A file in the store that is not a valid record; the message says what is wrong."""


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config: dict) -> str:
    """Stable 16-hex-digit digest of a config (key order does not matter)."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()[:16]


def record_path(runs_dir: Path | str, kind: str, config: dict) -> Path:
    return Path(runs_dir) / kind / f"{config_hash(config)}.json"


def _clean(obj):
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_atomic(path: Path | str, record: dict) -> Path:
    """Write ``record`` as JSON to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(record), indent=1, sort_keys=True, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def read_record(path: Path | str) -> dict:
    """Read and validate one record; :class:`CorruptRecord` if it is not one."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CorruptRecord(f"cannot read: {exc.strerror or exc}") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptRecord(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        records.validate(rec)
    except records.InvalidRecord as exc:
        raise CorruptRecord(str(exc)) from None
    return rec


class RunLock:
    """An exclusive, non-blocking lock on one run (``<record>.lock``), held while the run executes.

    It is an ``flock`` on the lock file, so the kernel releases it when its
    holder dies, kill -9 included: a lock is never stale.  The record is
    written before the lock is released, and whoever takes a lock checks for
    the record first, so a run is never executed twice.  (``flock`` needs a
    local or lock-aware shared file system.)
    """

    def __init__(self, record: Path | str):
        self.path = Path(record).with_suffix(".lock")
        self._fh = None

    def acquire(self) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                return False
            try:  # the holder may have unlinked the file between our open and our lock: lock the live one
                if os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino:
                    self._fh = fh
                    return True
            except FileNotFoundError:
                pass
            fh.close()

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._fh.close()  # closing releases the flock
        self._fh = None


def quarantine(path: Path | str) -> Path:
    """Move a corrupt file aside (``<name>.corrupt``) so that its run is redone and the evidence kept."""
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    os.replace(path, dest)
    return dest


def scan(runs_dir: Path | str):
    """Yield ``(path, record or None, problem or None)`` for every ``*.json`` under ``runs_dir``."""
    for path in sorted(Path(runs_dir).rglob("*.json")):
        try:
            rec = read_record(path)
            if path.stem != config_hash(rec["config"]):
                raise CorruptRecord(f"its config hashes to {config_hash(rec['config'])}, not to its file name")
            yield path, rec, None
        except CorruptRecord as exc:
            yield path, None, str(exc)


def append_log(runs_dir: Path | str, entry: dict) -> None:
    """Append ``entry`` as one JSON line to the store's execution log."""
    with open(Path(runs_dir) / EXECUTION_LOG, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def read_log(runs_dir: Path | str) -> tuple[list[dict], list[tuple[str, str]]]:
    """The execution log's entries, and ``(where, problem)`` for each line that is not JSON."""
    entries, problems = [], []
    path = Path(runs_dir) / EXECUTION_LOG
    if path.exists():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                problems.append((f"{path}:{i}", "not valid JSON"))
    return entries, problems
