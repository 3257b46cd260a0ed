"""enable-isolated-metadata / disable-isolated-metadata: every step, only what is missing.

Each step observes, then changes only what differs, and records how to undo what it
changed; when a later step fails, the earlier steps of this run are undone in reverse.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from mdtool import daemons, model
from mdtool.config import Config
from mdtool.errors import MdtoolError, OperationFailed
from mdtool.pipeline import Node
from mdtool.registry import Registry

PROXY_WAIT = 5.0


@dataclass
class Step:
    name: str
    changes: list[str] = field(default_factory=list)
    undo: Callable[[], object] | None = None
    note: str = ""


class StepFailed(OperationFailed):
    pass


def _proxy_listening(network_id: str, port: int = 80) -> bool:
    """Does something accept on 169.254.169.254:80 inside the network's namespace?"""
    from mdtool.netns import names
    from mdtool.netns.switch import run_in_netns

    def probe() -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((model.METADATA_IPV4, port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    try:
        return run_in_netns(names.namespace_name(network_id), probe)
    except Exception:
        return False


def wait_proxy(network_id: str, timeout: float = PROXY_WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _proxy_listening(network_id):
            return True
        time.sleep(0.02)
    return False


def enable(config: Config, registry: Registry, network_ref: str, *, dry_run: bool = False,
           on_step: Callable[[Step], None] = lambda s: None) -> list[Step]:
    node = Node(config, registry)
    done: list[Step] = []

    def run(name: str, fn: Callable[[], Step]) -> Step:
        try:
            step = fn()
        except MdtoolError as e:
            undone = rollback(done)
            what = f"; rolled back: {', '.join(undone)}" if undone else ""
            raise StepFailed(f"step '{name}' failed: {e}{what}") from e
        step.name = name
        done.append(step)
        on_step(step)
        return step

    # 1. registry
    def check() -> Step:
        st = node.dhcp(network_ref, create=False)
        gw = [s.cidr for s in st.network.subnets if s.enable_dhcp and s.ip_version == 4 and s.gateway_ip]
        note = (f"subnet(s) {', '.join(gw)} have a gateway: instances get the metadata route "
                "and a default route") if gw else ""
        return Step("registry", note=note)

    run("registry", check)
    net = registry.get_network(network_ref)

    # 2. the DHCP port in the registry
    def dhcp_port() -> Step:
        existing = node.dhcp(net.id, create=False).port
        if existing is not None:
            return Step("DHCP port")
        if dry_run:
            return Step("DHCP port", [f"reserve DHCP port on {net.name}"])
        st = node.dhcp(net.id, create=True)
        return Step("DHCP port", st.changes, undo=lambda: node.release_dhcp_port(net.id))

    run("DHCP port", dhcp_port)

    # 3. namespace, veth, addresses
    def namespace() -> Step:
        if dry_run and node.dhcp(net.id, create=False).port is None:
            return Step("namespace", [f"create namespace qdhcp-{net.id}, the DHCP port veth, "
                                      "its addresses and 169.254.169.254/32"])
        created_ns = not _namespace_exists(net.id)
        changes = node.netns_up(net.id, dry_run=dry_run)
        undo = (lambda: node.netns_down(net.id)) if created_ns and changes and not dry_run else None
        return Step("namespace", changes, undo=undo)

    run("namespace", namespace)

    # 4. dnsmasq
    def dnsmasq() -> Step:
        from mdtool.dnsmasq import control
        running = control.running_pid(config, net.id) is not None
        if dry_run:
            return Step("dnsmasq", [] if running else [f"render files and start dnsmasq for {net.name}"])
        if running:
            return Step("dnsmasq", node.dnsmasq_reload(net.id))
        node.dnsmasq_render(net.id)
        changes = node.dnsmasq_start(net.id)
        return Step("dnsmasq", changes, undo=lambda: node.dnsmasq_stop(net.id))

    run("dnsmasq", dnsmasq)

    # 5-7. shared daemons: metadata (when local), agent, proxy
    for role in daemons.ROLES:
        if role == "metadata" and not config.nova_metadata_is_local:
            def skip() -> Step:
                return Step("metadata", note=f"not started: agent forwards to {config.nova_metadata_url}")
            run("metadata service", skip)
            continue

        def start(role=role) -> Step:
            pm = daemons.manager(config, role)
            st = pm.check()
            planned = pm.plan(st)
            if dry_run or not planned:
                return Step(role, planned)
            done = pm.enable()
            return Step(role, done, undo=pm.disable if st.pid is None else None)

        run(role if role != "metadata" else "metadata service", start)

    # 8. the proxy serves this network (a running proxy picks new namespaces up by itself)
    def serving() -> Step:
        if dry_run:
            return Step("proxy serving")
        if _proxy_listening(net.id):
            return Step("proxy serving")
        daemons.wake_proxy(config)  # rather than wait for its next poll
        if not wait_proxy(net.id):
            raise OperationFailed(f"the proxy does not listen on {model.METADATA_IPV4}:80 in "
                                  f"qdhcp-{net.id} (log: {daemons.logfile(config, 'proxy')})")
        return Step("proxy serving")

    run("proxy serving", serving)

    # 9. the registry says this node serves the network (every `node run` follows it)
    def record() -> Step:
        if config.host in registry.get_network(net.id).hosts:
            return Step("served by this node")
        change = [f"record {config.host} as serving {net.name}"]
        if dry_run:
            return Step("served by this node", change)
        registry.serve_network(net.id, config.host)
        return Step("served by this node", change,
                    undo=lambda: registry.unserve_network(net.id, config.host))

    run("served by this node", record)
    return done


def rollback(steps: list[Step]) -> list[str]:
    undone = []
    for step in reversed(steps):
        if step.undo is None:
            continue
        try:
            step.undo()
            undone.append(step.name)
        except Exception:  # keep undoing the rest; the error that matters is the first
            pass
    return undone


def _namespace_exists(network_id: str) -> bool:
    from mdtool.netns import ip_lib, names
    return ip_lib.namespace_exists(names.namespace_name(network_id))


def enabled_networks(config: Config) -> list[str]:
    """Networks this node serves: a dhcp dir in the state dir and a namespace up."""
    d = config.state_dir / "dhcp"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and _namespace_exists(p.name))


def disable(config: Config, registry: Registry, network_ref: str, *, dry_run: bool = False,
            on_step: Callable[[Step], None] = lambda s: None) -> list[Step]:
    from mdtool.dnsmasq import control
    node = Node(config, registry)
    net = registry.get_network(network_ref)
    steps: list[Step] = []

    def record(step: Step) -> None:
        steps.append(step)
        on_step(step)

    # first, so a `node run` of this host stops converging it back
    serving = config.host in net.hosts
    if dry_run:
        record(Step("served by this node", [f"forget {config.host} serving {net.name}"] if serving else []))
    else:
        record(Step("served by this node", [f"forget {config.host} serving {net.name}"]
                    if registry.unserve_network(net.id, config.host) else []))
    running = control.running_pid(config, net.id) is not None
    if dry_run:
        record(Step("dnsmasq", [f"stop dnsmasq for {net.name}"] if running else []))
    else:
        record(Step("dnsmasq", node.dnsmasq_stop(net.id)))
    record(Step("namespace", node.netns_down(net.id, dry_run=dry_run)))
    has_port = node.own_dhcp_port(net) is not None
    if dry_run:
        record(Step("DHCP port", [f"release DHCP port on {net.name}"] if has_port else []))
        record(Step("files", [f"remove {config.dhcp_dir(net.id)}"] if config.dhcp_dir(net.id).exists() else []))
    else:
        record(Step("DHCP port", node.release_dhcp_port(net.id)))
        record(Step("files", node.forget_dhcp_files(net.id)))
    others = [n for n in enabled_networks(config) if n != net.id]
    for role in reversed(daemons.ROLES):
        if others:
            record(Step(role, note=f"kept: {len(others)} other network(s) use it"))
            continue
        is_running = daemons.running(config, role) is not None
        if dry_run:
            record(Step(role, [f"stop mdtool {role}"] if is_running else []))
        else:
            record(Step(role, [f"stop mdtool {role}"] if daemons.stop(config, role) else []))
    return steps
