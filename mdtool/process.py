"""The one place that spawns, signals and judges processes.

A process counts as running only when its pid is alive, is not a zombie, and its
``/proc/<pid>/cmdline`` carries every string the caller expects (for dnsmasq: the
network id). A stale pid file whose number was recycled by another program therefore
never fools it (Neutron's rule).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from mdtool.errors import OperationFailed
from mdtool.files import FILE_MODE, make_dirs, open_append, write_atomic

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


def is_running(pidfile: str | os.PathLike, must_contain: Sequence[str]) -> int | None:
    """The pid from ``pidfile`` when that process runs and is the one we mean, else None."""
    pid = read_pid(pidfile)
    if pid is None:
        return None
    return pid if pid_matches(pid, must_contain) else None


def spawn(argv: Sequence[str], *, pidfile: str | os.PathLike,
          logfile: str | os.PathLike | None = None, netns: str | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in the background (own session, stdin from /dev/null, output to
    ``logfile``), optionally inside network namespace ``netns``; write and return its pid.

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
    try:
        write_atomic(pidfile, f"{proc.pid}\n", FILE_MODE)
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


def signal_process(pidfile: str | os.PathLike, must_contain: Sequence[str],
                   sig: int = signal.SIGHUP) -> bool:
    """Send ``sig`` to the process of ``pidfile`` if it is the one we mean; False if not running."""
    pid = is_running(pidfile, must_contain)
    if pid is None:
        return False
    return signal_pid(pid, sig)


def wait_gone(pid: int, must_contain: Sequence[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        if not pid_matches(pid, must_contain):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return not pid_matches(pid, must_contain)


def stop(pidfile: str | os.PathLike, must_contain: Sequence[str], timeout: float = 5) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; remove the pid file.

    Returns False when nothing of ours was running (a stale pid file is removed too).
    """
    pid = is_running(pidfile, must_contain)
    stopped = False
    if pid is not None:
        signal_pid(pid, signal.SIGTERM)
        if not wait_gone(pid, must_contain, timeout):
            signal_pid(pid, signal.SIGKILL)
            if not wait_gone(pid, must_contain, 5):
                raise OperationFailed(f"process {pid} ({pidfile}) survived SIGKILL")
        stopped = True
    try:
        Path(pidfile).unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OperationFailed(f"cannot remove pid file {pidfile}: {e.strerror}") from None
    return stopped


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
