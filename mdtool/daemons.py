"""mdtool's own daemons (proxy, agent, metadata) in the background: pid files and logs
under the state dir, each a ``process.ProcessManager`` (exact argv, and the agent's socket
or the metadata service's port held by that very process)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from mdtool import process
from mdtool.config import Config
from mdtool.errors import OperationFailed

ROLES = ("metadata", "agent", "proxy")  # start order: upstream first
READY_TIMEOUT = 10.0


def pidfile(config: Config, role: str) -> Path:
    return config.state_dir / f"{role}.pid"


def logfile(config: Config, role: str) -> Path:
    """Where the daemon's output goes: its log_dir/log_file file, else the state dir's
    log/ folder (the daemon rotates that file itself, see mdtool.logs)."""
    from mdtool.logs import destination
    return destination(config, role) or config.state_dir / "log" / f"{role}.log"


def identity(config: Config, role: str) -> list[str]:
    """argv elements that mark this state dir's ``role`` whatever its other options."""
    if role == "proxy":
        return ["mdtool.proxy", str(config.state_dir), "run"]
    return ["mdtool", str(config.state_dir), role, "run"]


def argv(config: Config, role: str) -> list[str]:
    if role == "proxy":  # the lean entry point: no registry, no click in the one proxy
        from mdtool.proxy.__main__ import argv as proxy_argv
        return proxy_argv(str(config.state_dir), None, config.config_file)
    a = [sys.executable, "-m", "mdtool", "--state-dir", str(config.state_dir)]
    if config.config_file:
        a += ["--config-file", str(config.config_file)]
    return a + [role, "run"]


def listeners(config: Config, role: str) -> list[process.Listener]:
    """What ``role`` must hold to count as serving. The proxy's listeners live in each
    network's namespace and come and go with the networks: enable judges them there."""
    if role == "agent":
        return [process.Listener.unix(config.agent_socket)]
    if role == "metadata":
        held = [process.Listener.unix(config.metadata_socket)]
        if config.metadata_listen is not None:
            held.append(process.Listener.tcp(*config.metadata_listen))
        return held
    return []


def manager(config: Config, role: str) -> process.ProcessManager:
    """The ProcessManager of this state dir's ``role`` (metadata, agent or proxy)."""
    env = {"MDTOOL_DB": config.db_url, "MDTOOL_HOST": config.host, "PYTHONUNBUFFERED": "1"}
    return process.ProcessManager(
        f"mdtool {role}", argv(config, role), pidfile=pidfile(config, role),
        identity=identity(config, role), logfile=logfile(config, role), env=env,
        listeners=listeners(config, role), start_timeout=READY_TIMEOUT)


def running(config: Config, role: str) -> int | None:
    """The pid of ``role`` when it runs with exactly our argv."""
    return manager(config, role).pid


def start(config: Config, role: str) -> list[str]:
    """Start (or repair) ``role``; what was done, [] when it already ran as asked."""
    return manager(config, role).enable()


def wake_proxy(config: Config, *, ipv6: bool = False) -> bool:
    """Ask the running proxy to look for new namespaces now (SIGHUP), when it listens for
    that signal already; False when it does not (it will on its next poll). ``ipv6``: also
    to look for fe80::a9fe:a9fe in every namespace it does not serve it in yet (SIGUSR1),
    after adding that address; otherwise it looks a minute later at most."""
    sig = signal.SIGUSR1 if ipv6 else signal.SIGHUP
    pid = running(config, "proxy")
    if pid is None or not process.catches(pid, sig):
        return False
    return process.signal_pid(pid, sig)


def stop(config: Config, role: str) -> bool:
    return bool(manager(config, role).disable())
