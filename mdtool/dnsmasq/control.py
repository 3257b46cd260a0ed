"""dnsmasq on disk and as a process: render, start, stop, reload (SIGHUP), status.

dnsmasq drops to an unprivileged user (``dnsmasq`` or ``nobody``) once started and
re-reads the hosts, opts and addn_hosts files as that user on SIGHUP: the files are
written 0644 in 0755 folders, and ``start`` refuses a state dir that user cannot reach.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from mdtool import model, process
from mdtool.config import Config
from mdtool.dnsmasq.render import FILES, Paths, command_line, render_files
from mdtool.errors import OperationFailed
from mdtool.files import ensure_dir, write_atomic
from mdtool.netns import ip_lib, names

STARTUP_TIMEOUT = 5.0


def paths(config: Config, network_id: str, output_dir: str | os.PathLike | None = None) -> Paths:
    """``<state_dir>/dhcp/<network_id>/{host,opts,addn_hosts,leases,pid}``; log under
    ``<state_dir>/log/dnsmasq-<network_id>.log``."""
    d = Path(output_dir) if output_dir else config.dhcp_dir(network_id)
    return Paths.in_dir(d, Path(config.state_dir) / "log" / f"dnsmasq-{network_id}.log")


def _render_kwargs(config: Config) -> dict:
    return {"dns_domain": config.get("dns_domain"),
            "lease_duration": config.get("dhcp_lease_duration")}


def argv(config: Config, network: model.Network, dhcp_port: model.Port,
         output_dir: str | os.PathLike | None = None) -> list[str]:
    return command_line(network, dhcp_port, paths(config, network.id, output_dir),
                        lease_max=config.get("dnsmasq_lease_max"),
                        dns_servers=config.get("dnsmasq_dns_servers"), **_render_kwargs(config))


def _must_contain(network_id: str) -> list[str]:
    return ["dnsmasq", network_id]


def running_pid(config: Config, network_id: str) -> int | None:
    """The pid of this network's dnsmasq, when it runs (pid file + cmdline check)."""
    return process.is_running(paths(config, network_id).pid, _must_contain(network_id))


def render_to_disk(config: Config, network: model.Network, dhcp_port: model.Port, *,
                   output_dir: str | os.PathLike | None = None) -> list[str]:
    """Write host, opts, addn_hosts (and the leases seed while dnsmasq is not running);
    return the names of the files whose bytes changed."""
    p = paths(config, network.id, output_dir)
    texts = render_files(network, dhcp_port, **_render_kwargs(config))
    running = output_dir is None and running_pid(config, network.id) is not None
    ensure_dir(p.host.parent, 0o755)
    changed = []
    for name in FILES:
        if name == "leases" and running:
            continue  # the running dnsmasq owns its lease file
        if write_atomic(getattr(p, name), texts[name], 0o644):
            changed.append(name)
    return changed


def _check_reachable(path: Path) -> None:
    """dnsmasq reads our files as an unprivileged user: every folder up to them must be
    searchable by others."""
    for d in [path, *path.parents]:
        try:
            mode = d.stat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            raise OperationFailed(
                f"dnsmasq runs as an unprivileged user and cannot enter {d} "
                f"(mode {stat.S_IMODE(mode):04o}); chmod o+x {d} or use another --state-dir")


def _log_tail(path: Path, offset: int, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [l for l in text.splitlines() if l.strip()][-lines:]
    return "; ".join(tail)


def start(config: Config, network: model.Network, dhcp_port: model.Port) -> bool:
    """Start dnsmasq in ``qdhcp-<network_id>``; False when it already runs."""
    if running_pid(config, network.id) is not None:
        return False
    ns = names.namespace_name(network.id)
    if not ip_lib.namespace_exists(ns):
        raise OperationFailed(f"namespace {ns} does not exist; run `mdtool netns up {network.id}` first")
    p = paths(config, network.id)
    ensure_dir(p.log.parent, 0o755)
    render_to_disk(config, network, dhcp_port)
    _check_reachable(p.host.parent)
    try:
        offset = p.log.stat().st_size
    except FileNotFoundError:
        offset = 0
    pid = process.spawn(argv(config, network, dhcp_port), pidfile=p.pid, logfile=p.log, netns=ns)
    # Wait until dnsmasq says it started, or died trying (bad option, address in use...).
    deadline = time.monotonic() + STARTUP_TIMEOUT
    delay = 0.02
    while time.monotonic() < deadline:
        if process.exited(pid):
            try:
                p.pid.unlink()
            except FileNotFoundError:
                pass
            detail = _log_tail(p.log, offset) or "no output"
            raise OperationFailed(f"dnsmasq for network {network.id} exited at start: {detail} "
                                  f"(log: {p.log})")
        try:
            with open(p.log, "rb") as f:
                f.seek(offset)
                if b"started, version" in f.read():
                    break
        except OSError:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


def stop(config: Config, network_id: str) -> bool:
    """Stop this network's dnsmasq; False when it was not running."""
    return process.stop(paths(config, network_id).pid, _must_contain(network_id))


def reload(config: Config, network: model.Network, dhcp_port: model.Port) -> list[str]:
    """Re-render; SIGHUP the running dnsmasq only when a file changed. dnsmasq re-reads
    dhcp-hostsfile, dhcp-optsfile and addn-hosts on SIGHUP (not its command line)."""
    changed = render_to_disk(config, network, dhcp_port)
    if changed:
        process.signal_process(paths(config, network.id).pid, _must_contain(network.id),
                               signal.SIGHUP)
    return changed


@dataclass(frozen=True)
class Status:
    network_id: str
    running: bool
    pid: int | None
    namespace: str
    namespace_exists: bool
    files: dict[str, bool]  # file name -> exists
    pidfile: str
    log: str


def status(config: Config, network_id: str) -> Status:
    p = paths(config, network_id)
    pid = running_pid(config, network_id)
    ns = names.namespace_name(network_id)
    return Status(
        network_id=network_id, running=pid is not None, pid=pid, namespace=ns,
        namespace_exists=ip_lib.namespace_exists(ns),
        files={n: getattr(p, n).exists() for n in FILES}, pidfile=str(p.pid), log=str(p.log),
    )
