"""Durable append-only JSONL files (results, timing log) and the resume scan.

A record is on disk once `JsonlSink.write` returns: one `os.write` of the whole line (looped on
short writes) followed by `os.fsync`. A crash can therefore leave at most one torn line, the
last one, with no trailing newline; `JsonlSink(path, resume=True)` cuts it off and
`completed_keys` ignores it, so that request simply runs again. Only lines ending in "\\n"
count as written.

    with JsonlSink("results.jsonl", resume=True) as sink:
        done = completed_keys("results.jsonl")
        sink.write(record)
"""
from __future__ import annotations

import errno as errno_codes
import json
import os

from hf_laps.jobs.records import record_key
from hf_laps.stats import finite_json

try:  # POSIX only; elsewhere two writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

# Characters that json.dumps(ensure_ascii=False) leaves raw but str.splitlines() splits on;
# escaping them keeps every record on one line for any reader.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


class SinkError(Exception):
    """A results / log file could not be written; what was written before is intact.

    Attributes:
        path: the file.
        reason: what went wrong, e.g. "no space left on device (ENOSPC)".
        errno: the OS error number, when there was one.
    """

    def __init__(self, path: str, reason: str, errno: int | None = None):
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason, self.errno = path, reason, errno


def _reason(e: OSError) -> str:
    name = errno_codes.errorcode.get(e.errno or 0)
    text = (e.strerror or str(e)).lower()
    return f"{text} ({name})" if name else text


class JsonlSink:
    """Append-only JSONL writer; one fsynced line per record.

    Args:
        path: the file; its folder must exist.
        resume: False truncates the file; True keeps it and cuts a torn last line.

    Raises:
        SinkError: the file cannot be opened, locked (another process writes it), or repaired.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool):
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._failed: str | None = None  # set after a failed write; the sink refuses more
        try:
            # O_RDWR: the torn-tail repair reads the end of the file
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            _lock(self._fd, self.path)
            # truncate only once we hold the lock, never under another writer
            self._size = _cut_torn_tail(self._fd) if resume else 0
            if not resume:
                os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            _fsync_dir(self.path)
        except SinkError:
            self.close()
            raise
        except OSError as e:
            self.close()
            raise SinkError(self.path, _reason(e), e.errno) from e

    def write(self, record: dict) -> None:
        """Append one record as a line and fsync it.

        Non-finite floats are written as null (strict JSON). Nothing is written when the record
        cannot be serialised (TypeError / ValueError are raised as is).

        Raises:
            SinkError: the OS refused the write or the fsync (ENOSPC, EACCES, EIO, ...). The
                partial line is cut off when possible (else resume cuts it) and every later
                write raises SinkError too.
        """
        if self._fd is None or self._failed:
            raise SinkError(self.path, self._failed or "the sink is closed")
        data = encode_record(record)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as e:
            self._failed = f"an earlier write failed: {_reason(e)}"
            self._rollback()
            raise SinkError(self.path, _reason(e), e.errno) from e
        self._size += len(data)

    def _rollback(self) -> None:
        try:  # drop the partial line so the file ends on a complete record
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError:
            pass  # the torn tail is cut by the next JsonlSink(resume=True)

    def close(self) -> None:
        """Close the file (and release the lock). Safe to call twice."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe_writable(path: str | os.PathLike) -> None:
    """Check that `JsonlSink(path)` could open the file, without creating or changing it.

    The job probes every output before it loads a model (seconds to minutes), so that a bad
    path fails at once and a run that cannot start leaves an earlier run's files as they were.

    Raises:
        SinkError: the file is not writable, is a directory, its folder is missing or not
            writable, or another process holds its lock.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SinkError(path, f"no such file or directory (ENOENT): folder {folder} is missing", errno_codes.ENOENT)
        if _read_only(folder):  # os.access says "not writable" for both; the fix differs
            raise SinkError(path, f"read-only file system (EROFS): folder {folder} is on one", errno_codes.EROFS)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SinkError(path, f"permission denied (EACCES): folder {folder} is not writable", errno_codes.EACCES)
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)  # no O_CREAT, no truncation
    except OSError as e:
        raise SinkError(path, _reason(e), e.errno) from e
    try:
        _lock(fd, path)
    except OSError as e:
        raise SinkError(path, _reason(e), e.errno) from e
    finally:
        os.close(fd)  # releases the lock again


def _read_only(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): os.access decides
        return False


def _lock(fd: int, path: str) -> None:
    """Take the exclusive flock that keeps a second writer off the file."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SinkError(path, "another process is writing this file") from None
    except OSError as e:  # file systems without flock (some NFS): go on unlocked
        if e.errno not in (errno_codes.ENOLCK, errno_codes.EOPNOTSUPP, errno_codes.ENOSYS):
            raise


def encode_record(record: dict) -> bytes:
    """One JSONL line: json.dumps(ensure_ascii=False) + "\\n" as UTF-8, NaN/inf -> null."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        if "Circular" in str(e):
            raise
        text = json.dumps(finite_json(record), ensure_ascii=False, allow_nan=False)
    for char, escaped in _LINE_BREAKS.items():
        if char in text:
            text = text.replace(char, escaped)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate: \u-escape everything, still exact
        return (json.dumps(finite_json(record), ensure_ascii=True, allow_nan=False) + "\n").encode()


def _cut_torn_tail(fd: int, chunk: int = 1 << 16) -> int:
    """Truncate the file after its last b"\\n" (or to empty); return the new size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep != size:
        os.ftruncate(fd, keep)
    return keep


def _fsync_dir(path: str) -> None:
    """Make the file's directory entry durable too (a new file could vanish on power loss)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on directories
    finally:
        os.close(fd)


def completed_keys(path: str | os.PathLike) -> set[str]:
    """The record keys (see `record_key`) of the complete lines of a results file.

    A missing file gives an empty set. A last line without "\\n" (torn by a crash) and lines
    that are not one of our records are ignored, so those requests run again.
    """
    keys: set[str] = set()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return keys
    with f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn last line
            try:
                record = json.loads(line)
                if isinstance(record, dict):
                    keys.add(record_key(record))
            except (ValueError, RecursionError):  # garbage, or not one of our records
                continue
    return keys
