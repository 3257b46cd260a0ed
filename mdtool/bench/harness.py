"""What every benchmark section stands on: a private state dir, the mdtool CLI, processes
and namespaces that are always removed, wrk, and /proc memory readings.

Everything created here carries the run's unique tag and is registered with
:class:`Cleanup` before it exists, so a failing or interrupted run leaves nothing behind.
Load only ever goes to loopback or to addresses inside namespaces this run created.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


# Cleanup ----------------------------------------------------------------------------------

class Cleanup:
    """Undo steps run in reverse order; each failure is kept, none stops the rest."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, fn: Callable[[], object]) -> None:
        self._steps.append((what, fn))

    def run(self) -> list[str]:
        errors = []
        while self._steps:
            what, fn = self._steps.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning
                errors.append(f"{what}: {e}")
        return errors


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip"] + (["-n", netns] if netns else []) + list(args)
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


def delete_netns(name: str) -> None:
    """Delete a namespace and its veths first (the kernel may keep their host peers)."""
    if not os.path.exists(f"/run/netns/{name}"):
        return
    links = json.loads(ip("-j", "link", "show", netns=name, check=False).stdout or "[]")
    for link in links:
        if link.get("link_type") != "loopback":
            ip("link", "del", "dev", link["ifname"], netns=name, check=False)
    ip("netns", "del", name, check=False)


def delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        ip("link", "del", "dev", name, check=False)


def kill(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL; reap when it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}") or process_state(pid) == "Z":
                return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def stop(proc: subprocess.Popen) -> None:
    """End a child of ours. Only while it is unreaped is its pid surely still its own (a
    reaped pid may already belong to someone else's process)."""
    if proc.poll() is None:
        kill(proc.pid)
        proc.poll()


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Memory --------------------------------------------------------------------------------

def memory_kb(pid: int) -> dict[str, int]:
    """rss, pss and private (clean + dirty) of one process, in kB, from smaps_rollup."""
    out = {"rss": 0, "pss": 0, "private": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if not parts or not parts[0].isdigit():
                continue
            kb = int(parts[0])
            if key == "Rss":
                out["rss"] = kb
            elif key == "Pss":
                out["pss"] = kb
            elif key in ("Private_Clean", "Private_Dirty"):
                out["private"] += kb
    return out


# wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict:
    """Requests/s, p50/p99 (ms) and error counts from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockerr = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not (rps and p50 and p99 and total):
        raise RuntimeError("wrk output not understood:\n" + text)
    return {"rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
            "requests": int(total.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sockerr.groups())) if sockerr else 0}


def wrk(netns: str, url: str, connections: int, duration: float) -> dict:
    threads = 1 if connections < 2 else 2
    argv = ["ip", "netns", "exec", netns, "wrk", f"-t{threads}", f"-c{connections}",
            f"-d{max(1, round(duration))}s", "--timeout", "5s", "--latency", url]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed: {res.stderr.strip() or res.stdout.strip()}")
    return parse_wrk(res.stdout)


# The run's environment -------------------------------------------------------------------

@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    maxrss_kb: int


class Harness:
    """One benchmark run: unique tag, state dirs, daemons, namespaces, all removed by close()."""

    def __init__(self, workdir: str | None = None) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.cleanup = Cleanup()
        self.root = Path(tempfile.mkdtemp(prefix="mdtool-bench-", dir=workdir or "/tmp"))
        os.chmod(self.root, 0o755)  # dnsmasq, after dropping privileges, reads below it
        self.cleanup.add(f"dir {self.root}", lambda: shutil.rmtree(self.root, ignore_errors=True))
        self.metadata_port = free_port()
        self._n = 0

    def close(self) -> list[str]:
        self._drop_port_security_tables()
        return self.cleanup.run()

    def _drop_port_security_tables(self) -> None:
        """The nftables table `port-plug` made for each network of this run's registries
        (they outlive namespaces and links): found from the run's own state dirs, so another
        run's tables are never touched."""
        import sqlite3
        for db in sorted(self.root.glob("*/mdtool.db")):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                ids = [row[0] for row in con.execute("SELECT id FROM networks")]
            except sqlite3.Error:
                continue  # no registry there, or a half-made one: nothing was plugged
            finally:
                con.close()
            for net_id in ids:
                self.drop_port_security_table(net_id)

    def drop_port_security_table(self, net_id: str) -> None:
        """Remove network ``net_id``'s port security table at close (a registry elsewhere,
        e.g. on PostgreSQL, names its networks itself)."""
        from mdtool.netns import nft, portsec
        self.cleanup.add(f"nft table of {net_id}",
                         lambda t=portsec.table_name(net_id): nft.delete_table(t))

    def name(self, prefix: str) -> str:
        """A unique name of at most 15 characters (interfaces, namespaces)."""
        self._n += 1
        return f"{prefix}{self.tag}{self._n:x}"[:15]

    def state_dir(self, label: str) -> Path:
        d = self.root / label
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
        return d

    def env(self, state_dir: Path) -> dict[str, str]:
        """The CLI's environment: a private state dir and metadata port (never :8775, which
        another mdtool on this host may use), a fixed secret."""
        return {**os.environ, "MDTOOL_STATE_DIR": str(state_dir),
                "MDTOOL_METADATA_LISTEN_PORT": str(self.metadata_port),
                "MDTOOL_NOVA_METADATA_URL": f"http://127.0.0.1:{self.metadata_port}",
                "MDTOOL_METADATA_PROXY_SHARED_SECRET": "bench-" + self.tag,
                "MDTOOL_HOST": "bench-" + self.tag,
                "PYTHONUNBUFFERED": "1"}

    def cli(self, state_dir: Path, *args: str, check: bool = True,
            timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
        """Run ``python -m mdtool ARGS``; wall time and the process's peak RSS.

        The peak comes from GNU time, a small parent: a child forked straight from this
        (large) benchmark process would report this process's peak as its own."""
        rss_file = self.root / ".maxrss"
        timer = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] \
            if os.path.exists("/usr/bin/time") else []
        argv = timer + [sys.executable, "-m", "mdtool", *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env={**self.env(state_dir), **(env or {})})
            try:
                _, status, usage = _wait4(proc.pid, timeout)
            except TimeoutError:
                kill(proc.pid)
                raise RuntimeError(f"mdtool {' '.join(args)} did not finish in {timeout}s")
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            maxrss = usage.ru_maxrss
            if timer:
                try:
                    maxrss = int(rss_file.read_text().split()[-1])
                except (OSError, ValueError, IndexError):
                    pass
            res = CliResult(proc.returncode, out.read().decode(errors="replace"),
                            err.read().decode(errors="replace"), seconds, maxrss)
        if check and res.rc != 0:
            raise RuntimeError(f"mdtool {' '.join(args)} failed ({res.rc}): "
                               f"{res.stderr.strip()[-2000:]}")
        return res

    def spawn(self, argv: list[str], *, netns: str | None = None, log: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """A background process of this run (killed at close, or earlier by stop())."""
        full = (["ip", "netns", "exec", netns] if netns else []) + argv
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            if log:
                out.close()
        self.cleanup.add(f"process {proc.pid}", lambda: stop(proc))
        return proc

    def mdtool_daemon(self, state_dir: Path, *args: str, log_name: str,
                      env: dict[str, str] | None = None) -> subprocess.Popen:
        log = state_dir / f"{log_name}.log"
        return self.spawn([sys.executable, "-m", "mdtool", *args], log=log,
                          env={**self.env(state_dir), **(env or {})})

    def netns(self, name: str) -> str:
        """Register then create an empty namespace with lo up."""
        self.cleanup.add(f"netns {name}", lambda: delete_netns(name))
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", netns=name)
        return name


def _wait4(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        wpid, status, usage = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return wpid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.002)


def wait_for(predicate: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def listener_pids(netns: str, port: int = 80) -> set[int]:
    """Pids that listen on TCP ``port`` inside ``netns`` (from ss -p)."""
    res = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltnp", f"sport = :{port}"],
                         capture_output=True, text=True, timeout=10)
    return {int(p) for p in re.findall(r"pid=(\d+)", res.stdout)}


def http_get(sock_factory: Callable[[], socket.socket], path: str,
             headers: dict[str, str] | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET (Connection: close) over a socket; (status, body)."""
    s = sock_factory()
    s.settimeout(timeout)
    try:
        lines = [f"GET {path} HTTP/1.1", "Host: 169.254.169.254", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body
