"""The one place that writes files: atomically, and only when the bytes change."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path

from mdtool.errors import OperationFailed


def write_atomic(path: str | os.PathLike, data: str | bytes, mode: int = 0o644) -> bool:
    """Replace ``path`` with ``data`` via a temp file + ``os.replace``.

    Returns False (and touches nothing) when the file already holds exactly ``data``.
    A full or read-only disk raises OperationFailed and leaves the old file intact.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw:
            if (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
            return False
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OperationFailed(f"cannot read {path}: {e.strerror}") from None
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
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


def ensure_dir(path: str | os.PathLike, mode: int = 0o755) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OperationFailed(f"cannot open lock file {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
