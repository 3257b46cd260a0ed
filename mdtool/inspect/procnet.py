"""TCP sockets of a network namespace, as ``netstat -anpt`` sees them.

``parse_line`` turns one line of ``/proc/net/tcp`` or ``/proc/net/tcp6`` into a
:class:`Socket` (pure); ``read_sockets`` reads both files from inside a namespace (via
``/proc/thread-self/net``: ``/proc/net`` follows the *main* thread's namespace, not the
calling thread's); ``socket_owners`` maps socket inodes to pids through ``/proc/*/fd``.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, replace
from typing import Iterable

TCP_STATES = {
    0x01: "ESTABLISHED", 0x02: "SYN_SENT", 0x03: "SYN_RECV", 0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2", 0x06: "TIME_WAIT", 0x07: "CLOSE", 0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK", 0x0A: "LISTEN", 0x0B: "CLOSING", 0x0C: "NEW_SYN_RECV",
}


@dataclass(frozen=True)
class Socket:
    proto: str  # "tcp" or "tcp6"
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    send_q: int
    recv_q: int
    inode: int
    uid: int = 0
    pid: int | None = None
    program: str | None = None

    @property
    def listening(self) -> bool:
        return self.state == "LISTEN"

    @property
    def local(self) -> str:
        return endpoint(self.local_address, self.local_port)

    @property
    def foreign(self) -> str:
        return endpoint(self.remote_address, self.remote_port, any_port=True)

    @property
    def pid_program(self) -> str:
        """netstat's ``PID/Program name`` column ("-" when the owner is unknown)."""
        if self.pid is None:
            return "-"
        return f"{self.pid}/{self.program or '?'}"


def endpoint(address: str, port: int, any_port: bool = False) -> str:
    """``addr:port`` as netstat prints it (``0.0.0.0:*`` for an unbound foreign end)."""
    p = "*" if any_port and port == 0 else str(port)
    return f"{address}:{p}"


def decode_address(hex_addr: str) -> str:
    """The kernel prints each 32-bit word of the address in host byte order."""
    words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    raw = b"".join(struct.pack("=I", w) for w in words)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise ValueError(f"bad address {hex_addr!r}")


def parse_line(line: str, proto: str = "tcp") -> Socket | None:
    """One data line of /proc/net/tcp{,6}; None for the header or a malformed line."""
    f = line.split()
    if len(f) < 10 or not f[0].endswith(":") or f[0] == "sl":
        return None
    try:
        laddr, lport = f[1].split(":")
        raddr, rport = f[2].split(":")
        tx, rx = f[4].split(":")
        return Socket(proto=proto,
                      local_address=decode_address(laddr), local_port=int(lport, 16),
                      remote_address=decode_address(raddr), remote_port=int(rport, 16),
                      state=TCP_STATES.get(int(f[3], 16), f[3]),
                      send_q=int(tx, 16), recv_q=int(rx, 16),
                      uid=int(f[7]), inode=int(f[9]))
    except ValueError:
        return None


def parse(text: str, proto: str = "tcp") -> list[Socket]:
    return [s for s in (parse_line(l, proto) for l in text.splitlines()) if s is not None]


def read_sockets() -> list[Socket]:
    """TCP sockets of the calling thread's network namespace (call it inside one)."""
    out: list[Socket] = []
    for proto, name in (("tcp", "tcp"), ("tcp6", "tcp6")):
        try:
            with open(f"/proc/thread-self/net/{name}") as f:
                out += parse(f.read(), proto)
        except FileNotFoundError:  # IPv6 disabled
            continue
    return out


def socket_owners(inodes: Iterable[int], proc: str = "/proc") -> dict[int, int]:
    """inode -> pid of a process holding that socket (the first one found)."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, int] = {}
    if not wanted:
        return found
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = f"{proc}/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                found[inode] = int(entry)
        if len(found) == len(wanted):
            break
    return found


def comm(pid: int, proc: str = "/proc") -> str | None:
    try:
        with open(f"{proc}/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def with_owners(sockets: list[Socket], label=None) -> list[Socket]:
    """Fill pid and program; ``label(pid)`` may name a program better than its comm
    (a Python daemon's comm says only "python3")."""
    owners = socket_owners(s.inode for s in sockets if s.inode)
    out = []
    for s in sockets:
        pid = owners.get(s.inode)
        prog = None if pid is None else ((label(pid) if label else None) or comm(pid))
        out.append(replace(s, pid=pid, program=prog))
    return out
