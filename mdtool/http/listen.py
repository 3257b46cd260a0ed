"""Listening sockets for the daemons: a Unix socket only its owner's group can reach, or TCP."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from mdtool.errors import OperationFailed
from mdtool.files import make_dirs

SOCKET_MODE = 0o660


def bind_unix(path: Path, mode: int = SOCKET_MODE, what: str = "daemon") -> socket.socket:
    """Listen on ``path`` (``mode``, owned by this process); a stale socket file is removed,
    a live one is an error. A folder every user may write to is refused: anyone could
    replace the socket there and answer in our place."""
    make_dirs(path.parent)
    folder = path.parent.stat()
    if folder.st_mode & stat.S_IWOTH:
        raise OperationFailed(f"{path.parent} is writable by every user, who could replace "
                              f"{path.name}: chmod o-w {path.parent}")
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: left behind by a killed daemon
        else:
            raise OperationFailed(f"another {what} already listens on {path}: stop it first")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask closes the window between bind() and chmod() where the socket is wider open.
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise OperationFailed(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(1024)
    return sock


def bind_tcp(host: str, port: int, what: str = "metadata service") -> socket.socket:
    """A listening TCP socket on host:port (IPv6 when the host says so)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        hint = f" (is another {what} running?)" if e.errno == errno.EADDRINUSE else ""
        raise OperationFailed(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    return sock


def unlink_socket(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
