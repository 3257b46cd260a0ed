"""dnsmasq on disk and as a process: render, start, stop, reload (SIGHUP), status.

dnsmasq drops to an unprivileged user (``dnsmasq`` or ``nobody``) once started and
re-reads the hosts, opts and addn_hosts files as that user on SIGHUP: the files are
written 0644 in 0755 folders, and ``start`` refuses a state dir that user cannot reach.
"""

from __future__ import annotations

import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from mdtool import model, process
from mdtool.config import Config
from mdtool.dnsmasq.render import FILES, Paths, command_line, render_files
from mdtool.errors import OperationFailed
from mdtool.files import ensure_dir, write_atomic
from mdtool.netns import ip_lib, names
from mdtool.plan import Action

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


def _identity(config: Config, network_id: str) -> list[str]:
    """argv elements that mark this network's dnsmasq of this state dir, whatever its
    other options (its pid file is ours alone)."""
    return ["dnsmasq", f"--pid-file={paths(config, network_id).pid}"]


def manager(config: Config, network: model.Network,
            dhcp_port: model.Port) -> process.ProcessManager:
    """The ProcessManager of this network's dnsmasq: exact argv, in ``qdhcp-<id>``."""
    p = paths(config, network.id)
    return process.ProcessManager(
        f"dnsmasq for {network.name or network.id}", argv(config, network, dhcp_port),
        pidfile=p.pid, identity=_identity(config, network.id), logfile=p.log,
        netns=names.namespace_name(network.id), ready_marker=b"started, version",
        start_timeout=STARTUP_TIMEOUT, writes_pidfile=True)


def running_pid(config: Config, network_id: str) -> int | None:
    """The pid of this network's dnsmasq as its pid file names it (for readers without the
    model, e.g. inspect); with the model, ``manager(...).check()`` is exact."""
    pid = process.read_pid(paths(config, network_id).pid)
    if pid is None or not process.pid_matches(pid, []):
        return None
    argv = process.cmdline(pid) or []
    return pid if all(i in argv for i in _identity(config, network_id)) else None


def rendered(config: Config, network: model.Network, dhcp_port: model.Port) -> dict[str, str]:
    """The texts of host, opts, addn_hosts and leases for this node's options (pure)."""
    return render_files(network, dhcp_port, dns_integration=config.get("dns_integration"),
                        **_render_kwargs(config))


def render_to_disk(config: Config, network: model.Network, dhcp_port: model.Port, *,
                   output_dir: str | os.PathLike | None = None) -> list[str]:
    """Write host, opts, addn_hosts (and the leases seed while dnsmasq is not running);
    return the names of the files whose bytes changed."""
    p = paths(config, network.id, output_dir)
    texts = rendered(config, network, dhcp_port)
    running = output_dir is None and running_pid(config, network.id) is not None
    ensure_dir(p.host.parent, 0o755)
    changed = []
    for name in FILES:
        if name == "leases" and running:
            continue  # the running dnsmasq owns its lease file
        if write_atomic(getattr(p, name), texts[name], 0o644):
            changed.append(name)
    return changed


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OperationFailed(f"cannot read {path}: {e.strerror}") from None


def plan(config: Config, network: model.Network, dhcp_port: model.Port) -> list[Action]:
    """Observe this network's dnsmasq files and process; the actions that bring them to the
    model: write each file whose bytes differ (the leases seed only while no dnsmasq runs),
    then start or restart it, or SIGHUP it when a file it re-reads changed."""
    p = paths(config, network.id)
    pm = manager(config, network, dhcp_port)
    st = pm.check()
    texts = rendered(config, network, dhcp_port)
    actions: list[Action] = []
    changed: list[str] = []
    for name in FILES:
        if name == "leases" and st.pid is not None:
            continue  # the running dnsmasq owns its lease file
        if _read(getattr(p, name)) != texts[name].encode():
            changed.append(name)
            actions.append(Action(f"write {name}", lambda name=name: _write(p, name, texts[name])))
    for text in pm.plan(st):
        actions.append(Action(text, lambda: _start(pm, p), pm.disable if st.pid is None else None))
    keeps_running = st.pid is not None and st.current and not st.displaced
    if keeps_running and any(n != "leases" for n in changed):
        actions.append(Action("send SIGHUP to dnsmasq", lambda: pm.signal(signal.SIGHUP)))
    return actions


def _write(p: Paths, name: str, text: str) -> None:
    """One of dnsmasq's files, replaced atomically without an fsync: every file is rendered
    from the registry again by each enable and resync of `node run` (which starts dnsmasq
    only after rendering), so a crash that loses the newest bytes costs a rewrite, not a
    wrong file; the fsync was a disk flush per file, four per new network."""
    ensure_dir(p.host.parent, 0o755)
    write_atomic(getattr(p, name), text, 0o644, durable=False)


def _start(pm: process.ProcessManager, p: Paths) -> list[str]:
    ensure_dir(p.log.parent, 0o755)
    _check_reachable(p.host.parent)
    return pm.enable()


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


def start(config: Config, network: model.Network, dhcp_port: model.Port) -> list[str]:
    """Start dnsmasq in ``qdhcp-<network_id>`` (restart it when its argv changed); what was
    done, [] when it already ran as asked."""
    ns = names.namespace_name(network.id)
    if not ip_lib.namespace_exists(ns):
        raise OperationFailed(f"namespace {ns} does not exist; run `mdtool netns up {network.id}` first")
    pm = manager(config, network, dhcp_port)
    if pm.check().pid is None:
        render_to_disk(config, network, dhcp_port)
    return _start(pm, paths(config, network.id))


def stop(config: Config, network_id: str) -> bool:
    """Stop this network's dnsmasq; False when it was not running. Judged by identity (the
    model may be gone already), so an orphan whose pid file was overwritten goes too."""
    pm = process.ProcessManager(f"dnsmasq for {network_id}", None,
                                pidfile=paths(config, network_id).pid,
                                identity=_identity(config, network_id))
    return bool(pm.disable())


def reload(config: Config, network: model.Network, dhcp_port: model.Port) -> list[str]:
    """Re-render; SIGHUP the running dnsmasq only when a file changed. dnsmasq re-reads
    dhcp-hostsfile, dhcp-optsfile and addn-hosts on SIGHUP (not its command line)."""
    changed = render_to_disk(config, network, dhcp_port)
    if changed:
        manager(config, network, dhcp_port).signal(signal.SIGHUP)
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
