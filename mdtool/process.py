"""The one place that spawns, signals and judges processes.

``ProcessManager`` (Neutron's ``external_process``) manages one long-running process: it
is ours only when its pid is alive, its ``/proc/<pid>/cmdline`` is exactly the argv we
start, and, for a listener, the listening socket belongs to that very pid. A pid file
recycled by another program never fools it, and an address held by anything else is an
error naming the holder (``held_by_other``, the sentence inspect prints too). ``run``
runs one-shot commands.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mdtool.errors import OperationFailed
from mdtool.files import FILE_MODE, locked, make_dirs, open_append, write_atomic

NETNS_RUN_DIR = "/run/netns"


def _netns_argv(argv: Sequence[str], netns: str | None) -> list[str]:
    # `ip netns exec` setns()es and then execs the program itself, so the pid we get is
    # the program's pid and its cmdline is the program's own.
    if netns is None:
        return list(argv)
    if not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
        raise OperationFailed(f"network namespace {netns} does not exist; create it first")
    return ["ip", "netns", "exec", netns, *argv]


def read_pid(pidfile: str | os.PathLike) -> int | None:
    """The pid in ``pidfile``, or None when the file is missing, empty or garbage."""
    try:
        text = Path(pidfile).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OperationFailed(f"cannot read pid file {pidfile}: {e.strerror}") from None
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        return None
    return pid if pid > 0 else None


def _reap(pid: int) -> None:
    # A daemon we spawned ourselves stays our child: collect it once it has exited so
    # it does not linger as a zombie in a long-running caller (tests, the agent).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # "pid (comm) S ..." -- comm may contain spaces and parentheses
    return stat[stat.rfind(")") + 2:].split(" ", 1)[0]


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pid_matches(pid: int, must_contain: Sequence[str]) -> bool:
    """True when ``pid`` is alive, not a zombie, and its cmdline holds every string."""
    _reap(pid)
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    argv = cmdline(pid)
    if not argv:
        return False
    joined = "\0".join(argv)
    return all(s in joined for s in must_contain)


def exited(pid: int) -> bool:
    """Has our freshly spawned ``pid`` ended? Judged by its state only: its cmdline reads
    empty or foreign while it execs (``ip netns exec`` execs dnsmasq after we return),
    which made a starting daemon look dead."""
    _reap(pid)
    return _proc_state(pid) in (None, "Z", "X")


def catches(pid: int, sig: int) -> bool:
    """Has ``pid`` installed a handler for ``sig``? (SigCgt in /proc/<pid>/status.) Sending
    SIGHUP to a process that does not catch it yet would end it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def spawn(argv: Sequence[str], *, pidfile: str | os.PathLike,
          logfile: str | os.PathLike | None = None, netns: str | None = None,
          env: dict[str, str] | None = None, record: bool = True) -> int:
    """Start ``argv`` in the background (own session, stdin from /dev/null, output to
    ``logfile``), optionally inside network namespace ``netns``; write (unless ``record`` is
    False: the program writes ``pidfile`` itself) and return its pid.

    The program must stay in the foreground (e.g. dnsmasq ``--keep-in-foreground``):
    the pid we record is the pid of the process we started.
    """
    full = _netns_argv(argv, netns)
    pidfile = Path(pidfile)
    out = None
    try:
        make_dirs(pidfile.parent)
        if logfile is not None:
            out = open_append(logfile)
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=None if env is None else {**os.environ, **env},
        )
    except OSError as e:
        raise OperationFailed(f"cannot start {argv[0]}: {e.strerror or e}") from None
    finally:
        if out is not None:
            out.close()
    # Detach the Popen object: the daemon outlives it; _reap() collects it later.
    proc.returncode = 0
    if _scan is not None:  # the batch's listing knows it by the argv it will run
        _scan.add(proc.pid, b"".join(str(a).encode() + b"\0" for a in argv))
    if not record:
        return proc.pid
    try:
        write_atomic(pidfile, f"{proc.pid}\n", FILE_MODE, durable=False)
    except OperationFailed as e:
        signal_pid(proc.pid, signal.SIGKILL)
        raise OperationFailed(f"pid file of {argv[0]}: {e}") from None
    return proc.pid


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as e:
        raise OperationFailed(f"cannot signal process {pid}: {e.strerror}") from None
    return True


def run(argv: Sequence[str], check: bool = True, netns: str | None = None,
        timeout: float | None = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a one-shot command and capture its output (text).

    ``check``: a non-zero exit raises OperationFailed carrying the command's stderr.
    """
    full = _netns_argv(argv, netns)
    try:
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                             input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise OperationFailed(f"{argv[0]} not found; is it installed?") from None
    except subprocess.TimeoutExpired:
        raise OperationFailed(f"{' '.join(argv)} did not finish within {timeout}s") from None
    except OSError as e:
        raise OperationFailed(f"cannot run {argv[0]}: {e.strerror}") from None
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        detail = msg[-1] if msg else f"exit status {res.returncode}"
        raise OperationFailed(f"{' '.join(argv)} failed: {detail}")
    return res


# -- who holds a listening address ---------------------------------------------------------

WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Listener:
    """An address a managed process must hold: TCP ``host:port`` (inside namespace ``netns``,
    or the host's when None) or a Unix socket ``path``."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    netns: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int, netns: str | None = None) -> "Listener":
        return cls(host=host.strip("[]"), port=int(port), netns=netns)

    @classmethod
    def unix(cls, path: str | os.PathLike) -> "Listener":
        return cls(path=str(path))

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if ":" in (self.host or "") else self.host
        return f"{host}:{self.port}" + (f" in {self.netns}" if self.netns else "")


@dataclass(frozen=True)
class Holder:
    """A process holding a listening socket: pid (None when this node cannot see it, e.g.
    in another pid namespace), the socket owner's uid, and the process's argv."""

    pid: int | None
    uid: int | None
    argv: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        if self.uid is None:
            return "?"
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def describe(self) -> str:
        if self.pid is None:
            return f"a process of user {self.user} that this node cannot see"
        cmd = " ".join(" ".join(a.split()) for a in self.argv) or "?"  # one line
        if len(cmd) > 160:
            cmd = cmd[:157] + "..."
        return f"pid {self.pid} (user {self.user}: {cmd})"


def held_sentence(listener: Listener, holder: Holder, owner: str = "mdtool") -> str:
    """The one sentence for "someone else has our address", used by enable, the node's
    monitor and inspect: ``127.0.0.1:8775 is held by pid 4242 (user nobody: python3
    fake.py), not by mdtool``."""
    return f"{listener} is held by {holder.describe()}, not by {owner}"


def _holder(pid: int | None, uid: int | None) -> Holder:
    if not pid:
        return Holder(None, uid)
    return Holder(pid, uid, tuple(cmdline(pid) or ()))


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open (``/proc/<pid>/fd``)."""
    out: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:  # gone
        return out
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


# (pid, start time) -> the socket inodes last seen in that process's descriptors. A socket
# inode is unique while the socket exists, so a listening socket that is still in its
# namespace's table and that this very process held is held by it still (mdtool's daemons
# never hand their sockets on: Python makes them close-on-exec). The proxy's 1,000+
# descriptors are then listed once, not once per network (enable --all over 1,000 networks
# read about a million descriptor links). Anything not known to be held reads them afresh.
_held: dict[tuple[int, str | None], set[int]] = {}


def _held_by(pid: int, inodes: set[int]) -> set[int]:
    """Which of the socket ``inodes`` process ``pid`` holds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat[stat.rfind(")") + 2:].split()[19]
    except (OSError, IndexError):
        return set()
    key = (pid, start)
    known = _held.get(key)
    if known is None or not inodes <= known:
        if len(_held) > 64:
            _held.clear()
        known = _held[key] = socket_inodes(pid)
    return inodes & known


def _tcp_listening(listener: Listener) -> list:
    """The LISTEN sockets that take connections for ``listener`` (same address or a
    wildcard on either side, same port) in its namespace."""
    from mdtool.inspect import procnet
    try:
        if listener.netns is None:
            sockets = procnet.listening_sockets()
        else:
            from mdtool.netns.switch import run_in_netns
            sockets = run_in_netns(listener.netns, procnet.listening_sockets, here=True)
    except OSError as e:
        raise _unlisted(listener, e) from None
    return _taking(listener, sockets)


def _unlisted(listener: Listener, e: OSError) -> OperationFailed:
    return OperationFailed(f"cannot list the listening sockets for {listener}: "
                           f"{e.strerror or e}")


def _taking(listener: Listener, sockets) -> list:
    """Of ``sockets``, the LISTEN sockets that take connections for ``listener``."""
    return [s for s in sockets if s.listening and s.local_port == listener.port and
            (s.local_address == listener.host or s.local_address in WILDCARDS or
             listener.host in WILDCARDS)]


def _unix_peer(path: str) -> tuple[int, int] | None:
    """(pid, uid) of the process that listens on Unix socket ``path`` (SO_PEERCRED of a
    connection: exact even when a deleted socket file was bound again), None when nobody
    listens there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        pid, uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        return pid, uid
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        return None
    except OSError as e:
        raise OperationFailed(f"cannot tell who listens on {path}: {e.strerror or e}") from None
    finally:
        s.close()


def listener_holders(listener: Listener, pid: int | None = None) -> tuple[bool, list[Holder]]:
    """(does ``pid`` hold ``listener``, the other processes that hold it). Judged by the
    listening socket's inode in ``/proc/<pid>/fd`` (TCP: ``/proc/net/tcp{,6}`` of the
    namespace) or, for a Unix socket, by the credentials of whoever accepts on the path."""
    if listener.path is not None:
        peer = _unix_peer(listener.path)
        if peer is None:
            return False, []
        if pid is not None and peer[0] == pid:
            return True, []
        return False, [_holder(peer[0], peer[1])]
    return _holders(_tcp_listening(listener), pid)


def _holders(found: list, pid: int | None) -> tuple[bool, list[Holder]]:
    """(does ``pid`` hold one of the listening sockets ``found``, who else holds them)."""
    if not found:
        return False, []
    mine = _held_by(pid, {s.inode for s in found}) if pid is not None else set()
    ours = any(s.inode in mine for s in found)
    others = [s for s in found if s.inode not in mine]
    if not others:
        return ours, []
    from mdtool.inspect import procnet
    owners = procnet.socket_owners(s.inode for s in others)
    holders = list(dict.fromkeys(_holder(owners.get(s.inode), s.uid) for s in others))
    return ours, holders


def listener_holders_each(listeners: Sequence[Listener], pid: int | None
                          ) -> list[tuple[bool, list[Holder]] | OperationFailed]:
    """``listener_holders`` for many TCP listeners, each in a namespace: the namespaces'
    listening sockets are read one namespace after the other by this thread
    (``switch.run_in_each_netns``). Per listener its answer, or the error reading it (a namespace
    that is gone holds nothing: (False, []))."""
    from mdtool.errors import NotFound
    from mdtool.inspect import procnet
    from mdtool.netns.switch import run_in_each_netns
    read = run_in_each_netns([(l.netns, procnet.listening_sockets) for l in listeners],
                             here=True)
    out: list[tuple[bool, list[Holder]] | OperationFailed] = []
    for listener, (sockets, error) in zip(listeners, read):
        if isinstance(error, NotFound):
            out.append((False, []))
        elif isinstance(error, OSError):
            out.append(_unlisted(listener, error))
        elif error is not None:
            raise error
        else:
            out.append(_holders(_taking(listener, sockets), pid))
    return out


def held_by_other(listener: Listener, pid: int | None = None,
                  owner: str = "mdtool") -> str | None:
    """The sentence naming who holds ``listener`` when it is not (only) ``pid``; None when
    it is free or held by ``pid`` alone. What inspect prints and enable fails with."""
    _ours, others = listener_holders(listener, pid)
    return held_sentence(listener, others[0], owner) if others else None


# -- one listing of the node's processes for a batch -----------------------------------------

def _list_processes():
    """(pid, raw cmdline) of every process but this one with a command line (/proc)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw:
            yield int(entry), raw


class ProcessScan:
    """The node's processes listed once, indexed by argv element. Finding a manager's
    marked processes is then a few dict lookups, not a pass over /proc (three passes per
    new dnsmasq, each over 1,000+ processes at 1,000 networks). Every candidate is still
    judged by its live /proc entry, so one that ended, or whose pid was reused, since the
    listing is never taken for ours."""

    def __init__(self) -> None:
        self._by_arg: dict[bytes, set[int]] = {}
        self._raw: dict[int, bytes] = {}

    @classmethod
    def read(cls) -> "ProcessScan":
        scan = cls()
        for pid, raw in _list_processes():
            scan.add(pid, raw)
        return scan

    def add(self, pid: int, raw: bytes) -> None:
        old = self._raw.get(pid)
        if old is not None:
            for a in set(old.split(b"\0")):
                self._by_arg.get(a, set()).discard(pid)
        self._raw[pid] = raw
        for a in set(raw.split(b"\0")):
            if a:
                self._by_arg.setdefault(a, set()).add(pid)

    def marked(self, marks: set[bytes]) -> list[tuple[int, bytes]]:
        """(pid, raw cmdline) of the listed processes whose argv holds every mark."""
        sets = [self._by_arg.get(m, set()) for m in marks]
        pids = set.intersection(*sets) if sets else set()
        return [(pid, self._raw[pid]) for pid in sorted(pids)]


_scan: ProcessScan | None = None


@contextlib.contextmanager
def one_scan():
    """Within this block (a command over many networks), every ``ProcessManager`` finds
    processes by their identity in one listing of /proc, read on entry; what ``spawn``
    starts meanwhile is added to it. A process someone else starts meanwhile is seen
    through its pid file, which ``check`` reads first and which a start writes under the
    manager's lock before that lock is released. Nested blocks share the outer listing."""
    global _scan
    if _scan is not None:
        yield _scan
        return
    _scan = ProcessScan.read()
    try:
        yield _scan
    finally:
        _scan = None


# -- the process manager -------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """What ``ProcessManager.check()`` observed (read only).

    ``pid``: our process (its argv is exactly ours, or it is an older argv of this same
    manager: ``current`` False); ``recorded``: the pid in the pid file; ``missing``: our
    listeners that our process does not hold; ``blocked``: sentences naming other processes
    that hold our addresses."""

    name: str
    pid: int | None
    recorded: int | None
    current: bool = True
    missing: tuple[Listener, ...] = ()
    blocked: tuple[str, ...] = ()
    displaced: str | None = None  # the namespace it should run in, when it runs elsewhere

    @property
    def active(self) -> bool:
        """Runs exactly as asked, holds every address, and the pid file says so."""
        return (self.pid is not None and self.current and not self.missing and
                not self.blocked and not self.displaced and self.recorded == self.pid)

    @property
    def state(self) -> str:
        """One word: running, blocked, outdated, displaced (its namespace was deleted or
        replaced under it), deaf (alive without its socket), unrecorded
        (running, but the pid file names another pid), died (the pid file names a process
        that is gone or a stranger) or stopped (no pid file)."""
        if self.blocked:
            return "blocked"
        if self.pid is None:
            return "stopped" if self.recorded is None else "died"
        if not self.current:
            return "outdated"
        if self.displaced:
            return "displaced"
        if self.missing:
            return "deaf"
        if self.recorded != self.pid:
            return "unrecorded"
        return "running"

    def problem(self) -> str | None:
        """Why it is not active, in words; None when it is."""
        s = self.state
        if s == "running":
            return None
        if s == "blocked":
            return self.blocked[0]
        if s == "stopped":
            return f"{self.name} is not running"
        if s == "died":
            return f"{self.name} died (its pid file names pid {self.recorded}, which is gone " \
                   "or another program)"
        if s == "outdated":
            return f"{self.name} (pid {self.pid}) runs with an older command line"
        if s == "displaced":
            return f"{self.name} (pid {self.pid}) runs outside {self.displaced} (deleted or " \
                   "replaced under it)"
        if s == "deaf":
            return f"{self.name} (pid {self.pid}) no longer holds " + \
                ", ".join(map(str, self.missing))
        return f"{self.name} runs as pid {self.pid}, but its pid file names " + \
            (f"pid {self.recorded}" if self.recorded else "nothing")


# A start looks whether its process is ready (a stop, whether it is gone) every READY_POLL
# seconds for READY_POLL_FOR seconds, then less and less often: dnsmasq is ready in ~10 ms
# and gone a few ms after SIGTERM, and a look (a few small reads) costs ~50 µs, so looks
# 10, 30, 70 ms after the spawn made each new network wait 10-60 ms longer than needed.
READY_POLL = 0.002
READY_POLL_FOR = 0.25


class ProcessManager:
    """One managed process (Neutron's ``external_process.ProcessManager``): its exact argv,
    pid file, log, namespace, and the addresses it must hold.

    A process is ours only when its pid is alive, its ``/proc/<pid>/cmdline`` is exactly
    ``argv`` and it holds the listening sockets of ``listeners``. ``identity`` (argv
    elements) recognises this manager's process started with an older argv, so it is
    restarted, never duplicated. Starting and stopping happen under ``flock`` on
    ``<pidfile>.lock``: concurrent commands never start two.

        pm = ProcessManager("mdtool agent", argv, pidfile=..., identity=[...],
                            listeners=[Listener.unix(sock)])
        pm.check().state    # running / stopped / died / deaf / outdated / blocked / ...
        pm.enable()         # -> what it did (list of text); OperationFailed naming a holder
        pm.disable()        # -> what it did
    """

    def __init__(self, name: str, argv: Sequence[str] | None, *, pidfile: str | os.PathLike,
                 identity: Sequence[str], logfile: str | os.PathLike | None = None,
                 netns: str | None = None, env: dict[str, str] | None = None,
                 listeners: Sequence[Listener] = (), ready_marker: bytes | None = None,
                 start_timeout: float = 10.0, stop_timeout: float = 10.0,
                 writes_pidfile: bool = False):
        """A start is complete once the process runs ``argv`` exactly, holds every listener
        and (with ``ready_marker``) has written that marker to its log; without either, once
        it runs ``argv``. ``writes_pidfile``: the program writes ``pidfile`` itself (dnsmasq
        ``--pid-file``), so a start never writes it too (dnsmasq unlinks the file and then
        creates it exclusively: a write of ours in between made it exit "File exists"), and
        the start is complete only once the file names the new process."""
        self.name = name
        self.argv = None if argv is None else [str(a) for a in argv]
        self.pidfile = Path(pidfile)
        self.identity = [str(i) for i in identity]
        self.logfile = Path(logfile) if logfile is not None else None
        self.netns = netns
        self.env = env
        self.listeners = tuple(listeners)
        self.ready_marker = ready_marker
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.writes_pidfile = writes_pidfile

    # -- observing (read only) ---------------------------------------------------------

    def _judge(self, pid: int) -> str | None:
        """"exact", "older" (this manager's process with another argv) or None."""
        _reap(pid)
        if _proc_state(pid) in (None, "Z", "X"):
            return None
        argv = cmdline(pid)
        if not argv:
            return None
        if self.argv is not None and argv == self.argv:
            return "exact"
        return "older" if all(i in argv for i in self.identity) else None

    def _marked(self):
        """(pid, raw cmdline) of every other process whose argv carries this manager's
        identity: the cheap filter before judging one (two more reads each; judging every
        process of a node with 1,000 dnsmasq was a fifth of enable --all). Inside
        ``one_scan()`` the batch's one listing answers."""
        marks = {i.encode() for i in self.identity}
        if _scan is not None:
            yield from _scan.marked(marks)
            return
        for pid, raw in _list_processes():
            if marks <= set(raw.split(b"\0")):
                yield pid, raw

    def _find(self) -> tuple[int | None, bool]:
        """Our process when the pid file does not name it (a pid file overwritten or
        deleted): exact argv first, then an older argv of this manager. The identity is
        part of the exact argv, so both are among the marked processes."""
        exact = None if self.argv is None else b"\0".join(a.encode() for a in self.argv) + b"\0"
        older = None
        for pid, raw in self._marked():
            if raw == exact and self._judge(pid) == "exact":
                return pid, True
            if older is None and self._judge(pid) == "older":
                older = pid
        return older, False

    def _strays(self, keep: int | None) -> list[int]:
        """Other live processes of this manager (its identity), e.g. left by a crash between
        a start and its pid file, or by a race of an older mdtool without the lock."""
        return [pid for pid, _ in self._marked() if pid != keep and self._judge(pid)]

    def check(self) -> Status:
        """Observe: is our process running, exactly as asked, holding its addresses?"""
        recorded = read_pid(self.pidfile)
        pid, current = None, True
        if recorded is not None:
            judged = self._judge(recorded)
            if judged is not None:
                pid, current = recorded, judged == "exact"
        if pid is None:
            pid, current = self._find()
        missing, blocked = [], []
        for listener in self.listeners:
            ours, others = listener_holders(listener, pid)
            if others:
                blocked.append(held_sentence(listener, others[0]))
            elif not ours and pid is not None:
                missing.append(listener)
        return Status(self.name, pid, recorded, current, tuple(missing), tuple(blocked),
                      self.netns if pid is not None and not self._in_netns(pid) else None)

    def _in_netns(self, pid: int) -> bool:
        """Does ``pid`` run in our namespace (the same nsfs inode as /run/netns/<name>)?"""
        if self.netns is None:
            return True
        try:
            want = os.stat(os.path.join(NETNS_RUN_DIR, self.netns)).st_ino
        except FileNotFoundError:
            return False
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == want
        except FileNotFoundError:  # gone meanwhile: judged on the next check
            return True

    @property
    def pid(self) -> int | None:
        """Our running process (exact argv), or None."""
        st = self.check()
        return st.pid if st.pid is not None and st.current else None

    @property
    def active(self) -> bool:
        return self.check().active

    # -- planning (pure) -----------------------------------------------------------------

    def plan(self, status: Status) -> list[str]:
        """What ``enable`` would do from ``status``, in words (each a kind of action).
        A blocked address is an error, never a plan."""
        if status.blocked:
            raise OperationFailed(status.blocked[0])
        if self.argv is None:
            raise OperationFailed(f"cannot start {self.name}: its command line is unknown")
        if status.pid is None:
            return [f"start {self.name}"]
        if not status.current:
            return [f"restart {self.name}: its command line changed"]
        if status.displaced:
            return [f"restart {self.name}: pid {status.pid} runs outside {status.displaced}"]
        if status.missing:
            return [f"restart {self.name}: pid {status.pid} no longer holds "
                    f"{', '.join(map(str, status.missing))}"]
        if status.recorded != status.pid:
            return [f"record pid {status.pid} of {self.name} in {self.pidfile}: it named "
                    f"{'pid ' + str(status.recorded) if status.recorded else 'nothing'}"]
        return []

    # -- acting --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, create: bool = True):
        """Exclusive ``flock`` on ``<pidfile>.lock`` for a check-then-act sequence.
        ``create=False`` (stopping): no folder is made for it; a missing folder means
        nothing was recorded there to race on."""
        path = self.pidfile.with_name(self.pidfile.name + ".lock")
        if not create and not path.parent.is_dir():
            yield
            return
        with locked(path):
            yield

    def enable(self) -> list[str]:
        """Make it run exactly as asked (start, restart, or re-record its pid); under the
        lock. Returns what was done; [] when it already ran. OperationFailed when an
        address is held by another process (naming it), or it dies or stalls at start."""
        with self.lock():
            st = self.check()
            texts = self.plan(st)
            if not texts:
                return []
            if st.pid is not None and st.current and not st.missing and not st.displaced:
                self._record(st.pid)
                return texts
            if st.pid is not None:
                self._stop(st.pid)
            # A second copy would hold our addresses and make the start fail: stop strays
            # (ours by identity, so never a stranger) before starting.
            strays = self._strays(None)
            for stray in strays:
                self._stop(stray)
            pid = self._start()
            done = [f"{t} (pid {pid})" for t in texts]  # the plan's text + what it got
            return done + [f"stop a stray {self.name} (pid {p})" for p in strays]

    def disable(self) -> list[str]:
        """Stop our process (SIGTERM, then SIGKILL) and remove the pid file; a stranger
        named by the pid file is never signalled. Returns what was done."""
        with self.lock(create=False):
            st = self.check()
            done = []
            if st.pid is not None:
                self._stop(st.pid)
                done.append(f"stop {self.name} (pid {st.pid})")
            for stray in self._strays(None):
                self._stop(stray)
                done.append(f"stop a stray {self.name} (pid {stray})")
            self._remove_pidfile()
            return done

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to our process when it runs exactly as asked; False otherwise."""
        pid = self.pid
        return pid is not None and signal_pid(pid, sig)

    def _record(self, pid: int) -> None:
        write_atomic(self.pidfile, f"{pid}\n", FILE_MODE, durable=False)

    def _remove_pidfile(self) -> None:
        try:
            self.pidfile.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OperationFailed(f"cannot remove pid file {self.pidfile}: {e.strerror}") from None

    def _log_tail(self, offset: int) -> str:
        if self.logfile is None:
            return ""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "; ".join([ln for ln in text.splitlines() if ln.strip()][-3:])

    def _ready(self, pid: int, offset: int) -> bool:
        if cmdline(pid) != self.argv:  # still execing (ip netns exec)
            return False
        if self.writes_pidfile and read_pid(self.pidfile) != pid:
            return False
        for listener in self.listeners:
            if not listener_holders(listener, pid)[0]:
                return False
        if self.ready_marker is not None and self.logfile is not None:
            try:
                with open(self.logfile, "rb") as f:
                    f.seek(offset)
                    return self.ready_marker in f.read()
            except OSError:
                return False
        return True

    def _start(self) -> int:
        offset = 0
        if self.logfile is not None:
            try:
                offset = self.logfile.stat().st_size
            except FileNotFoundError:
                pass
        pid = spawn(self.argv, pidfile=self.pidfile, logfile=self.logfile, netns=self.netns,
                    env=self.env, record=not self.writes_pidfile)
        log = f" (log: {self.logfile})" if self.logfile else ""
        started = time.monotonic()
        deadline = started + self.start_timeout
        delay = READY_POLL
        while time.monotonic() < deadline:
            if exited(pid):
                self._remove_pidfile()
                # Someone may have taken an address between our check and its bind.
                blocked = [s for s in (held_by_other(l, None) for l in self.listeners) if s]
                detail = blocked[0] if blocked else (self._log_tail(offset) or "no output")
                raise OperationFailed(f"{self.name} exited at start: {detail}{log}")
            if self._ready(pid, offset):
                return pid
            time.sleep(delay)
            if time.monotonic() - started > READY_POLL_FOR:
                delay = min(delay * 2, 0.1)
        self._stop(pid)
        self._remove_pidfile()
        raise OperationFailed(f"{self.name} did not become ready in {self.start_timeout:.0f}s"
                              f"{log}")

    def _alive(self, pid: int) -> bool:
        return self._judge(pid) is not None or (
            self.argv is not None and cmdline(pid) == ["ip", "netns", "exec", self.netns or "",
                                                        *self.argv])

    def _stop(self, pid: int) -> None:
        signal_pid(pid, signal.SIGTERM)
        for sig, timeout in ((signal.SIGKILL, self.stop_timeout), (None, 5.0)):
            started = time.monotonic()
            deadline = started + timeout
            delay = READY_POLL  # dnsmasq ends within a few ms of SIGTERM
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(delay)
                if time.monotonic() - started > READY_POLL_FOR:
                    delay = min(delay * 2, 0.2)
            if not self._alive(pid):
                return
            if sig is None:
                raise OperationFailed(f"{self.name} (pid {pid}) survived SIGKILL")
            signal_pid(pid, sig)
