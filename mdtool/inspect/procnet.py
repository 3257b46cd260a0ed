"""TCP sockets of a network namespace, as ``netstat -anpt`` sees them.

``parse_line`` turns one line of ``/proc/net/tcp`` or ``/proc/net/tcp6`` into a
:class:`Socket` (pure); ``read_sockets`` reads both files from inside a namespace (via
``/proc/thread-self/net``: ``/proc/net`` follows the *main* thread's namespace, not the
calling thread's); ``listening_sockets`` asks sock_diag for the listening ones only;
``socket_owners`` maps socket inodes to pids through ``/proc/*/fd``.
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


# sock_diag (linux/inet_diag.h): a dump of the TCP sockets in LISTEN only
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCPF_LISTEN = 1 << 0x0A
_REQ = struct.Struct("=IHHII" "BBBxI" "HH16s16sIII")  # nlmsghdr + inet_diag_req_v2
_MSG = struct.Struct("=BBBB" "2s2s16s16sIII" "IIIII")  # inet_diag_msg


def listening_sockets() -> list[Socket]:
    """The TCP sockets in LISTEN of the calling thread's network namespace (call it inside
    one), from sock_diag: the kernel walks only the listening sockets, where reading
    ``/proc/net/tcp`` walks every established bucket of every namespace too (about 5 ms a
    read, paid for every network in enable --all). OSError when the kernel refuses."""
    out: list[Socket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(5)
        for seq, (family, proto) in enumerate(((socket.AF_INET, "tcp"),
                                               (socket.AF_INET6, "tcp6")), 1):
            sock.send(_REQ.pack(_REQ.size, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP,
                                seq, 0, family, socket.IPPROTO_TCP, 0, _TCPF_LISTEN,
                                0, 0, b"", b"", 0, 0, 0))
            done = False
            while not done:
                data = sock.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                    if length < 16:
                        break
                    if mseq == seq and kind == _NLMSG_DONE:
                        done = True
                    elif mseq == seq and kind == _NLMSG_ERROR:
                        err = -struct.unpack_from("=i", data, off + 16)[0]
                        if err == 0:
                            done = True
                        elif err in (2, 97):  # ENOENT, EAFNOSUPPORT: IPv6 is off
                            done = True
                        else:
                            raise OSError(err, os.strerror(err))
                    elif mseq == seq and kind == _SOCK_DIAG_BY_FAMILY:
                        (fam, state, _t, _r, sport, dport, src, dst, _if, _c1, _c2,
                         _exp, rq, wq, uid, inode) = _MSG.unpack_from(data, off + 16)
                        size = 4 if fam == socket.AF_INET else 16
                        out.append(Socket(
                            proto=proto, local_address=socket.inet_ntop(fam, src[:size]),
                            local_port=int.from_bytes(sport, "big"),
                            remote_address=socket.inet_ntop(fam, dst[:size]),
                            remote_port=int.from_bytes(dport, "big"),
                            state=TCP_STATES.get(state, str(state)), send_q=wq, recv_q=rq,
                            uid=uid, inode=inode))
                    off += (length + 3) & ~3
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
