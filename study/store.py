"""The run store: one JSON record per run, at a path derived from its config.

``runs/<kind>/<hash>.json`` where ``hash`` is a stable digest of the run's
config (``study.records`` says what a record holds).  Records are written to a
temporary file in the same directory, flushed, fsynced and atomically renamed,
so a reader (or a restart after kill -9) sees either no record or a complete
one.  Nothing in the store is trusted: every file is read as bytes from a
regular file (never a FIFO, device or link), decoded, parsed and validated, and
anything that fails is a :class:`CorruptRecord` naming what is wrong.  The
store never follows or writes through a symbolic link inside the runs
directory.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path

from . import records

EXECUTION_LOG = "run-all.log.jsonl"  # one JSON line per run-all invocation that ran something
SINGLE = "single"  # `study run` / `study bench` records: kept apart from the experiments
MAX_RECORD_BYTES = 256 * 2**20


class CorruptRecord(Exception):
    """A file in the store that is not a valid record (or not where its config says); the message says why."""


class StoreError(Exception):
    """The store cannot be used as it is (a symbolic link inside it, a lock that is a link, ...)."""


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


def _directory(path: Path, links: bool = False) -> None:
    """Create ``path`` (and parents) as directories; unless ``links``, ``path`` itself must not be a symbolic link
    (the store's kind directories: records written through one would land outside the store)."""
    for d in reversed([path, *path.parents]):
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            try:
                os.mkdir(d)
                continue
            except FileExistsError:  # another worker made it between the two calls: check what it made
                st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode) and d == path and not links:
            raise StoreError(f"{d} is a symbolic link: the store never writes through links")
        if not stat.S_ISDIR(os.stat(d).st_mode):
            raise StoreError(f"{d} is not a directory")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _named(exc: BaseException, path: Path) -> BaseException:
    """An OSError as one naming the file we could not write (others unchanged)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, f"cannot write: {exc.strerror}", str(path))
    return exc


def _temp_copy(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path``, flushed and fsynced; its name.  Nothing is left if
    that fails (a full disk): the error names ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        named = _named(exc, path)
        if named is exc:  # Ctrl-C and the like, as they came
            raise
        raise named from None
    return tmp


def write_files_atomic(files: list[tuple[Path | str, str | bytes]], links: bool = True) -> list[Path]:
    """Write each ``(path, text)`` atomically, and all of them or none: every file goes to a temporary file
    first, and only when all are written (a full disk fails here) are they renamed over their paths, so a
    failed write leaves every previous file, never one new file beside an old one (a figure's PDF and PNG).
    ``links``: whether the directories may be symbolic links (figures' may; the store's may not)."""
    files = [(Path(p), t.encode() if isinstance(t, str) else t) for p, t in files]
    for path, _ in files:
        _directory(path.parent, links)
    temps: list[str] = []
    try:
        for path, data in files:
            temps.append(_temp_copy(path, data))
        for i, ((path, _), tmp) in enumerate(zip(files, temps)):
            try:
                os.replace(tmp, path)  # replaces a link at `path` itself; never follows it
            except OSError as exc:
                raise _named(exc, path) from None
            temps[i] = ""  # renamed: nothing to remove
    except BaseException:
        for tmp in temps:
            if tmp:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        raise
    for d in dict.fromkeys(path.parent for path, _ in files):  # make the renames themselves durable
        try:
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    return [path for path, _ in files]


def write_text_atomic(path: Path | str, text: str | bytes, links: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename): readers see the old file or the new one.
    ``links``: whether the directory may be a symbolic link (figures may; the store's directories may not)."""
    return write_files_atomic([(path, text)], links)[0]


def write_atomic(path: Path | str, record: dict) -> Path:
    """Write ``record`` as JSON to ``path`` atomically, never through a symbolic link to its directory."""
    return write_text_atomic(path, json.dumps(_clean(record), indent=1, sort_keys=True, allow_nan=False) + "\n",
                             links=False)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_record(path: Path | str, schemas=None) -> dict:
    """Read and validate one record (``schemas``: see :func:`study.records.validate`); :class:`CorruptRecord` if it
    is not one."""
    rec = read_json(path)
    try:
        records.validate(rec, schemas)
    except records.InvalidRecord as exc:
        raise CorruptRecord(str(exc)) from None
    return rec


def read_json(path: Path | str):
    """The JSON value in the file at ``path``, read as the store reads every file (a regular file, never through a
    link or from a FIFO, at most :data:`MAX_RECORD_BYTES`), not validated; :class:`CorruptRecord` if it is not
    JSON."""
    path = Path(path)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise CorruptRecord("a symbolic link, not a record (the store never follows links)")
        if not stat.S_ISREG(st.st_mode):
            raise CorruptRecord("not a regular file")
        if st.st_size > MAX_RECORD_BYTES:
            raise CorruptRecord(f"{st.st_size} bytes, larger than any record ({MAX_RECORD_BYTES} at most)")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CorruptRecord("not a regular file")
            raw = fh.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise CorruptRecord(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecord(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        rec = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CorruptRecord(f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise CorruptRecord("not a record (JSON nested too deeply)") from None
    except ValueError as exc:
        raise CorruptRecord(str(exc)) from None
    return rec


def read_placed(path: Path | str, schemas=None) -> dict:
    """:func:`read_record`, and the record must be where its config puts it: a record under another
    config's file name, or in another kind's directory, is *foreign* (a :class:`CorruptRecord`)."""
    path = Path(path)
    rec = read_record(path, schemas)
    h = config_hash(rec["config"])
    if path.stem != h:
        raise CorruptRecord(f"foreign record: its config hashes to {h}, not to its file name")
    if path.parent.name not in (rec["kind"], SINGLE):
        raise CorruptRecord(f"foreign record: a {rec['kind']!r} record in the {path.parent.name!r} directory")
    return rec


class RunLock:
    """An exclusive, non-blocking lock on one run (``<record>.lock``), held while the run executes.

    It is an ``flock`` on the lock file, so the kernel releases it when its
    holder dies, kill -9 included: a lock is never stale.  The record is
    written before the lock is released, and whoever takes a lock checks for
    the record first, so a run is never executed twice.  (``flock`` needs a
    local or lock-aware shared file system.)  A lock file that is a symbolic
    link is never opened through.
    """

    def __init__(self, record: Path | str):
        self.path = Path(record).with_suffix(".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        _directory(self.path.parent)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StoreError(f"{self.path} is a symbolic link: the store never opens locks through links") from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:  # the holder may have unlinked the file between our open and our lock: lock the live one
                if os.fstat(fd).st_ino == os.lstat(self.path).st_ino:
                    self._fd = fd
                    return True
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def quarantine(path: Path | str) -> Path:
    """Move a corrupt entry aside (``<name>.corrupt``, or ``.corrupt.N`` if that exists) so that its run is
    redone and every earlier piece of evidence is kept."""
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    n = 0
    while os.path.lexists(dest):
        n += 1
        dest = path.with_name(f"{path.name}.corrupt.{n}")
    os.rename(path, dest)
    return dest


def links(runs_dir: Path | str, limit: int | None = None) -> list[Path]:
    """Symbolic links inside the runs directory (the directory itself may be one); the walk stops once it has
    found ``limit`` of them."""
    root = Path(runs_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                found.append(p)
                if limit is not None and len(found) >= limit:
                    return sorted(found)
    return sorted(found)


def check_usable(runs_dir: Path | str) -> None:
    """:class:`StoreError` if the store holds symbolic links (records written through them would land
    outside it, and records behind them would be invisible to ``status``) or an execution log that is not a
    regular file."""
    found = links(runs_dir, limit=4) if Path(runs_dir).is_dir() else []
    if found:
        where = ", ".join(f"{p} -> {os.readlink(p)}" for p in found[:3]) + (" and more" if len(found) > 3 else "")
        raise StoreError(f"the runs directory holds symbolic links ({where}); the store never follows links: "
                         "move them away or point --runs-dir at the real directory")
    check_log(runs_dir)


def scan(runs_dir: Path | str, schemas=None):
    """Yield ``(path, record or None, problem or None)`` for every ``*.json`` entry under ``runs_dir``,
    links included (as problems), without following any link."""
    root = Path(runs_dir)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            if path.is_symlink():
                if name.endswith(".json") or name in dirnames:
                    yield path, None, f"a symbolic link (-> {os.readlink(path)}): the store never follows links"
            elif name.endswith(".json"):
                try:
                    yield path, read_placed(path, schemas), None
                except CorruptRecord as exc:
                    yield path, None, str(exc)


def _not_a_log(path: Path, what: str) -> StoreError:
    return StoreError(f"{path} is {what}, not the store's execution log (a regular file): move it away")


def check_log(runs_dir: Path | str) -> None:
    """:class:`StoreError` if the store's execution log exists but is not a regular file (a FIFO would block
    ``run-all``'s append forever, a link would be written through)."""
    path = Path(runs_dir) / EXECUTION_LOG
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _not_a_log(path, "a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise _not_a_log(path, "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file")


def append_log(runs_dir: Path | str, entry: dict) -> None:
    """Append ``entry`` as one JSON line to the store's execution log; :class:`StoreError`, never a wait, if
    the log is not a regular file."""
    path = Path(runs_dir) / EXECUTION_LOG
    check_log(runs_dir)
    try:  # O_NONBLOCK: a FIFO put there after the check fails at once (no reader) or is refused below
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            check_log(runs_dir)
            raise _not_a_log(path, "not a regular file") from None
        raise
    with os.fdopen(fd, "a") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise _not_a_log(path, "not a regular file")
        fh.write(json.dumps(entry) + "\n")


def read_log(runs_dir: Path | str) -> tuple[list[dict], list[tuple[str, str]]]:
    """The execution log's entries, and ``(where, problem)`` for each line that is not a JSON object."""
    entries, problems = [], []
    path = Path(runs_dir) / EXECUTION_LOG
    try:
        text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() and not path.is_symlink() else ""
    except OSError as exc:
        return [], [(str(path), f"cannot read: {exc.strerror or exc}")]
    for i, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            problems.append((f"{path}:{i}", "not a JSON object"))
    return entries, problems
