"""mdtool's own daemons (proxy, agent, metadata) in the background: pid files and logs
under the state dir, judged running by pid + cmdline like dnsmasq."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

from mdtool import process
from mdtool.config import Config
from mdtool.errors import OperationFailed
from mdtool.files import ensure_dir

ROLES = ("metadata", "agent", "proxy")  # start order: upstream first
READY_TIMEOUT = 10.0


def pidfile(config: Config, role: str) -> Path:
    return config.state_dir / f"{role}.pid"


def logfile(config: Config, role: str) -> Path:
    return config.state_dir / "log" / f"{role}.log"


def _must_contain(config: Config, role: str) -> list[str]:
    return ["mdtool", str(config.state_dir), role, "run"]


def argv(config: Config, role: str) -> list[str]:
    if role == "proxy":  # the lean entry point: no registry, no click in the one proxy
        from mdtool.proxy.__main__ import argv as proxy_argv
        return proxy_argv(str(config.state_dir), None, config.config_file)
    a = [sys.executable, "-m", "mdtool", "--state-dir", str(config.state_dir)]
    if config.config_file:
        a += ["--config-file", str(config.config_file)]
    return a + [role, "run"]


def running(config: Config, role: str) -> int | None:
    return process.is_running(pidfile(config, role), _must_contain(config, role))


def start(config: Config, role: str) -> int | None:
    """Start ``role`` unless it runs; returns the new pid, or None when it already ran."""
    if running(config, role) is not None:
        return None
    log = logfile(config, role)
    ensure_dir(log.parent)
    offset = log.stat().st_size if log.exists() else 0
    env = {"MDTOOL_DB": config.db_url, "MDTOOL_HOST": config.host, "PYTHONUNBUFFERED": "1"}
    pid = process.spawn(argv(config, role), pidfile=pidfile(config, role), logfile=log, env=env)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.exited(pid):
            tail = log.read_bytes()[offset:].decode(errors="replace").strip().splitlines()
            detail = tail[-1] if tail else "no output"
            raise OperationFailed(f"mdtool {role} exited at start: {detail} (log: {log})")
        if ready(config, role) and process.pid_matches(pid, _must_contain(config, role)):
            return pid
        time.sleep(0.05)
    raise OperationFailed(f"mdtool {role} did not become ready in {READY_TIMEOUT:.0f}s (log: {log})")


def ready(config: Config, role: str) -> bool:
    """Does the daemon answer HTTP where it should? (A port merely accepting connections
    may belong to someone else.) The proxy is judged by enable, in each namespace."""
    if role == "agent":
        return answers_http(socket.AF_UNIX, str(config.agent_socket))
    if role == "metadata":
        host = config.get("metadata_listen_host")
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        return answers_http(fam, (host if host not in ("0.0.0.0", "::") else "127.0.0.1",
                                  config.get("metadata_listen_port")))
    return True


def answers_http(family, addr, timeout: float = 0.5) -> bool:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        s.sendall(b"GET / HTTP/1.0\r\nHost: mdtool\r\n\r\n")
        return s.recv(5) == b"HTTP/"
    except OSError:
        return False
    finally:
        s.close()


def wake_proxy(config: Config) -> bool:
    """Ask the running proxy to look for new namespaces now (SIGHUP), when it listens for
    that signal already; False when it does not (it will on its next poll)."""
    pid = running(config, "proxy")
    if pid is None or not process.catches(pid, signal.SIGHUP):
        return False
    return process.signal_pid(pid, signal.SIGHUP)


def stop(config: Config, role: str) -> bool:
    return process.stop(pidfile(config, role), _must_contain(config, role), timeout=10)
