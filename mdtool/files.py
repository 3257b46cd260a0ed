"""The one place that writes files: atomically, only when the bytes change, and always with
an explicit mode: nothing here depends on the umask (under ``umask 000`` a folder made by
``mkdir`` would be 0777 and a log opened by ``open`` 0666)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from mdtool.errors import OperationFailed

DIR_MODE = 0o755       # dnsmasq reads the state dir's files as an unprivileged user
FILE_MODE = 0o644      # rendered files, pid files
LOG_MODE = 0o640       # logs name instances and addresses: root and its group
PRIVATE_MODE = 0o600   # the secret, the database, the EnvironmentFile of the units


def write_atomic(path: str | os.PathLike, data: str | bytes, mode: int = FILE_MODE,
                 durable: bool = True) -> bool:
    """Replace ``path`` with ``data`` via a temp file + ``os.replace``.

    Returns False (and touches nothing) when the file already holds exactly ``data``.
    A full or read-only disk raises OperationFailed and leaves the old file intact.
    ``durable=False`` skips the fsync, for what a reboot makes stale anyway (pid files):
    under a busy disk it took long enough to land in the middle of dnsmasq writing its
    own pid file (unlink, then O_EXCL create: "File exists").
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if _same_bytes(path, raw):
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
        return False
    tmp = None
    try:
        make_dirs(path.parent)
        import tempfile  # here: the CLI's start-up (docs/internals.md) rarely writes a file
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        hint = {errno.ENOSPC: " (disk full)", errno.EROFS: " (read-only filesystem)",
                errno.EACCES: " (permission denied)"}.get(e.errno, "")
        raise OperationFailed(f"cannot write {path}: {e.strerror}{hint}; the old file is unchanged") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return True


def _same_bytes(path: Path, raw: bytes) -> bool:
    try:
        return path.read_bytes() == raw
    except FileNotFoundError:
        return False
    except OSError as e:
        raise OperationFailed(f"cannot read {path}: {e.strerror}") from None


def unchanged(path: str | os.PathLike, data: str | bytes, mode: int = FILE_MODE) -> bool:
    """True when ``path`` holds exactly ``data`` with ``mode`` (what write_atomic would
    leave alone): the plan of a dry run."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    return _same_bytes(path, raw) and (path.stat().st_mode & 0o777) == mode


def make_dirs(path: str | os.PathLike, mode: int = DIR_MODE) -> Path:
    """Create the missing folders of ``path``, each with ``mode`` (``mkdir -p`` would leave
    the umask's); folders that exist keep theirs."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # made by someone else meanwhile: their mode stays
                continue
            os.chmod(d, mode)
    except OSError as e:
        raise OperationFailed(f"cannot create directory {d}: {e.strerror}") from None
    return path


def ensure_dir(path: str | os.PathLike, mode: int = DIR_MODE) -> Path:
    """``path`` exists as a folder with ``mode`` (folders made on the way get it too)."""
    path = make_dirs(path, mode)
    try:
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except OSError as e:
        raise OperationFailed(f"cannot create directory {path}: {e.strerror}") from None
    return path


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block; waits for the
    holder. The kernel drops it when the holder dies, so a crash never leaves it taken."""
    path = Path(path)
    try:
        make_dirs(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    except OSError as e:
        raise OperationFailed(f"cannot open lock file {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def open_append(path: str | os.PathLike, mode: int = LOG_MODE):
    """A log file opened for appending (binary, unbuffered), created with ``mode`` and set
    to it when it exists with another; missing folders are made with DIR_MODE."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            if (os.fstat(fd).st_mode & 0o777) != mode:
                os.fchmod(fd, mode)
        except OSError:
            os.close(fd)
            raise
    except OSError as e:
        raise OperationFailed(f"cannot open {path}: {e.strerror}") from None
    return os.fdopen(fd, "ab", buffering=0)


def create_private(path: str | os.PathLike, mode: int = PRIVATE_MODE) -> None:
    """Create ``path`` empty with ``mode`` unless it exists, so that what a library then
    writes into it (SQLite, which gives its -wal and -shm files the same mode) starts private."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return
    except OSError as e:
        raise OperationFailed(f"cannot create {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
