"""Open sockets inside other network namespaces without leaving the caller's.

A socket belongs to the namespace it was created in, whatever thread uses it later. So a
short-lived thread switches into ``/run/netns/<name>`` (setns), creates and binds the
socket, switches back and ends: the event loop's thread never changes namespace, and a
thread that could not switch back dies instead of serving from the wrong place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from typing import Callable, Sequence, TypeVar

from mdtool.errors import NotFound, OperationFailed

__all__ = ["NETNS_DIR", "create_netns", "run_in_netns", "run_in_each_netns", "bind_in_netns",
           "make_listener", "addresses_in_netns", "local_ipv6_addresses",
           "ipv6_address_ifname", "netns_inode", "list_netns"]

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
IP_FREEBIND = 15

T = TypeVar("T")

_libc = None


def _setns(fd: int) -> None:
    _libc_call("setns", fd, CLONE_NEWNET)


MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20


def _libc_call(fn: str, *args) -> None:
    """libc's ``fn(*args)``; OSError with its errno when it does not return 0."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if getattr(_libc, fn)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def create_netns(name: str) -> None:
    """Create namespace ``name`` at /run/netns/<name> as ``ip netns add`` does, without a
    child process: a fresh thread unshares its own network namespace (``unshare`` changes
    only the calling thread), bind-mounts it on the name and ends. FileExistsError when the
    name is taken; on any other failure the name is removed again."""
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    rundir = NETNS_DIR.encode()
    try:  # mounts under it propagate to every mount namespace (`ip netns exec`)
        _libc_call("mount", b"none", rundir, b"none", MS_SHARED | MS_REC, None)
    except OSError:  # not a mount point yet: make it one, then shared
        _libc_call("mount", rundir, rundir, b"none", MS_BIND | MS_REC, None)
        _libc_call("mount", b"none", rundir, b"none", MS_SHARED | MS_REC, None)
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    failed: list[OSError] = []

    def body():
        try:
            _libc_call("unshare", CLONE_NEWNET)
            _libc_call("mount", b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND,
                       None)
        except OSError as e:
            failed.append(e)
        # this thread stays in the new namespace: it ends here

    t = threading.Thread(target=body, name=f"netns-create-{name}", daemon=True)
    t.start()
    t.join()
    if failed:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise failed[0]


def netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise NotFound(f"bad network namespace name {name!r}")
    return os.path.join(NETNS_DIR, name)


def netns_inode(name: str) -> int | None:
    """Identity of the namespace now mounted at that name (None when absent)."""
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def run_in_netns(name: str, fn: Callable[[], T], *, here: bool = False) -> T:
    """Call ``fn()`` switched into namespace ``name`` (in a fresh thread; ``here``: in the
    calling thread, see ``run_in_each_netns``); return its result."""
    [(result, error)] = run_in_each_netns([(name, fn)], here=here)
    if error is not None:
        raise error
    return result


def run_in_each_netns(calls: Sequence[tuple[str, Callable[[], T]]], *, here: bool = False
                      ) -> list[tuple[T | None, BaseException | None]]:
    """Call each ``fn()`` switched into its namespace ``name``, one after the other, in one
    fresh thread (a look into 1,000 namespaces costs one thread, not 1,000): per call
    ``(result, None)`` or ``(None, error)``. The thread goes back to its own namespace after
    every call; when it cannot, it stops there and the calls left get that error.

    ``here``: in the calling thread instead, for a command's synchronous steps (starting a
    thread per look was a quarter of a no-change `enable --all` on a loaded machine). The
    thread is back in its own namespace when this returns; if it cannot get back, the
    process ends (exit 70) rather than act on the wrong namespace."""
    out: list[tuple[T | None, BaseException | None]] = []
    if here:
        back = _switch_each(calls, out)
        if back is not None:
            os.write(2, f"mdtool: error: cannot return to this process's network namespace: "
                        f"{back}\n".encode())
            os._exit(70)
        return out
    t = threading.Thread(target=_switch_each, args=(calls, out),
                         name=f"netns-{calls[0][0] if calls else ''}", daemon=True)
    t.start()
    t.join()
    return out


def _switch_each(calls: Sequence[tuple[str, Callable[[], T]]],
                 out: list[tuple[T | None, BaseException | None]]) -> OSError | None:
    """The calls of ``run_in_each_netns`` in this thread, their answers appended to ``out``;
    None when the thread is back in its own namespace, else why it is not (the calls left
    got that error)."""
    try:
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        out.extend((None, e) for _ in calls)
        return None
    try:
        for name, fn in calls:
            try:
                target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                out.append((None, NotFound(f"network namespace {name} does not exist")))
                continue
            except (OSError, NotFound) as e:
                out.append((None, e))
                continue
            try:
                try:
                    _setns(target)
                finally:
                    os.close(target)
                done = (fn(), None)
            except BaseException as e:  # a failed switch or fn's error: handed to the caller
                done = (None, e)
            finally:
                try:  # always, so nothing between the switch and here can skip it
                    _setns(orig)
                except OSError as e:  # stuck elsewhere: the calls left cannot run here
                    out.extend((None, e) for _ in calls[len(out):])
                    return e
            out.append(done)
    finally:
        os.close(orig)
    return None


def bind_in_netns(netns_name: str, family: int, host: str, port: int, *,
                  scope_ifname: str | None = None, backlog: int = 1024,
                  freebind: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening inside namespace ``netns_name``.

    ``scope_ifname`` gives an IPv6 link-local address its interface. Errors from bind
    (EADDRNOTAVAIL while the address is not configured yet, EADDRINUSE) are raised as
    OSError so a caller can retry.
    """

    def make() -> socket.socket:
        return make_listener(family, host, port, scope_ifname=scope_ifname, backlog=backlog,
                             freebind=freebind)

    return run_in_netns(netns_name, make)


def make_listener(family: int, host: str, port: int, *, scope_ifname: str | None = None,
                  backlog: int = 1024, freebind: bool = False) -> socket.socket:
    """A non-blocking listening TCP socket in the calling thread's namespace."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
            sock.setsockopt(level, IP_FREEBIND, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            scope = socket.if_nametoindex(scope_ifname) if scope_ifname else 0
            sock.bind((host, port, 0, scope))
        else:
            sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def local_ipv6_addresses() -> list[tuple[str, str, int]]:
    """(ifname, address, prefixlen) of this thread's namespace, from procfs."""
    out = []
    try:
        with open("/proc/thread-self/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 6:
                    continue
                raw = bytes.fromhex(fields[0])
                out.append((fields[5], socket.inet_ntop(socket.AF_INET6, raw),
                            int(fields[2], 16)))
    except FileNotFoundError:  # IPv6 disabled
        pass
    return out


def ipv6_address_ifname(address: str) -> str | None:
    """The interface of this thread's namespace that holds IPv6 ``address``, or None.
    if_inet6 is searched for the address's hex form, not parsed whole: the proxy asks this
    of every namespace every few seconds."""
    needle = socket.inet_pton(socket.AF_INET6, address).hex()
    try:  # bytes through os.read: a text file costs 3 more syscalls and a decoder a look
        fd = os.open("/proc/thread-self/net/if_inet6", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # IPv6 disabled
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("ascii", "replace")
    at = text.find(needle)  # the address is a line's first field
    while at > 0 and text[at - 1] != "\n":
        at = text.find(needle, at + 1)
    if at < 0:
        return None
    end = text.find("\n", at)
    fields = text[at:end if end >= 0 else len(text)].split()
    return fields[5] if len(fields) >= 6 else None


def _ipv4_addresses() -> list[tuple[str, str, int]]:
    """(ifname, address, 32) of this thread's namespace, via SIOCGIFCONF (all IPv4 addresses)."""
    import array
    import fcntl
    import struct

    SIOCGIFCONF = 0x8912
    ifreq_size = 40
    count = 64
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while True:
            buf = array.array("B", b"\0" * (ifreq_size * count))
            addr, _ = buf.buffer_info()
            ifconf = struct.pack("iL", len(buf), addr)
            res = fcntl.ioctl(s.fileno(), SIOCGIFCONF, ifconf)
            used = struct.unpack("iL", res)[0]
            if used < len(buf) or count >= 65536:
                break
            count *= 4
        data = buf.tobytes()[:used]
    out = []
    for off in range(0, used, ifreq_size):
        ifname = data[off:off + 16].split(b"\0", 1)[0].decode()
        ip = socket.inet_ntoa(data[off + 20:off + 24])
        out.append((ifname, ip, 32))
    return out


def addresses_in_netns(name: str) -> list[tuple[str, int, str]]:
    """(ifname, family, address) of every address in namespace ``name`` (read only)."""

    def collect():
        v4 = [(ifn, socket.AF_INET, a) for ifn, a, _ in _ipv4_addresses()]
        v6 = [(ifn, socket.AF_INET6, a) for ifn, a, _ in local_ipv6_addresses()]
        return v4 + v6

    try:
        return run_in_netns(name, collect)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINVAL):
            raise NotFound(f"network namespace {name} does not exist") from None
        raise OperationFailed(f"cannot read addresses of namespace {name}: {e.strerror}") from None
