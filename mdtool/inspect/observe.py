"""Look at one network on this node without changing anything: namespace, links,
addresses, routes, sockets, dnsmasq (process and files), the daemons, and HTTP answers
from the agent, the metadata service and the proxy. The verdicts are in ``checks``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mdtool import daemons, model, process
from mdtool.config import Config
from mdtool.errors import BadInput, MdtoolError, NotFound
from mdtool.inspect import procnet
from mdtool.inspect.probe import Answer, get_in_netns, get_unix, get_url
from mdtool.netns import ip_lib, names, portsec
from mdtool.registry import Registry

PROBE_PATH = "/openstack/latest/meta_data.json"
BOGUS_NETWORK = "mdtool-inspect-liveness-probe"


@dataclass
class FileState:
    path: str
    exists: bool
    current: bool  # bytes equal what would be rendered now


@dataclass
class DnsmasqState:
    pid: int | None
    cmdline: list[str] | None
    expected_cmdline: list[str] | None
    files: dict[str, FileState]
    opts_lines: list[str] | None  # None: no opts file
    pidfile: str
    log: str
    error: str | None = None  # why nothing could be rendered

    @property
    def cmdline_current(self) -> bool:
        if not self.cmdline or not self.expected_cmdline:
            return False
        # `ip netns exec` execs dnsmasq, but a wrapper could prefix it: compare the tail
        return self.cmdline[-len(self.expected_cmdline):] == self.expected_cmdline


@dataclass
class DaemonState:
    role: str
    pid: int | None
    pidfile: str
    log: str
    recorded_pid: int | None = None  # what the pid file says, alive or not
    held: tuple[str, ...] = ()  # its addresses held by another process, in words

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def died(self) -> bool:
        """Started with a pid file, and that process is gone: it crashed or was killed."""
        return self.pid is None and self.recorded_pid is not None


@dataclass
class ProbeState:
    port_id: str | None = None
    port_ip: str | None = None
    instance_id: str | None = None
    project_id: str | None = None
    agent: Answer | None = None
    proxy: Answer | None = None
    skipped: str | None = None  # why the agent probe did not run

    @property
    def uuid(self) -> str | None:
        if self.agent is None or self.agent.status != 200:
            return None
        try:
            return json.loads(self.agent.body).get("uuid")
        except (ValueError, AttributeError):
            return None


@dataclass
class Observation:
    ref: str  # how commands in fixes name the network
    network: model.Network
    host: str
    namespace: str
    namespace_exists: bool
    dhcp_port: model.Port | None
    tap: str | None
    links: list[ip_lib.Link] = field(default_factory=list)
    addresses: list[ip_lib.Address] = field(default_factory=list)
    routes: list[ip_lib.Route] = field(default_factory=list)
    sockets: list[procnet.Socket] = field(default_factory=list)
    netns_error: str | None = None
    bridge: ip_lib.Link | None = None        # the network's bridge on the host
    bridge_end: ip_lib.Link | None = None    # the DHCP port's veth end on the host (ns-…)
    dnsmasq: DnsmasqState | None = None
    daemons: dict[str, DaemonState] = field(default_factory=dict)
    agent_socket: str = ""
    agent: Answer | None = None
    metadata_url: str = ""
    metadata_local: bool = True
    metadata: Answer | None = None
    secret: Answer | None = None
    secret_note: str | None = None  # why the secret was not checked
    probe: ProbeState = field(default_factory=ProbeState)
    port_security: portsec.State | None = None  # rules of the ports plugged on this node

    def tap_link(self) -> ip_lib.Link | None:
        return next((l for l in self.links if l.ifname == self.tap), None) if self.tap else None

    def tap_cidrs(self) -> set[str]:
        return {names.normalise_cidr(a.cidr) for a in self.addresses if a.ifname == self.tap}


def command_ref(registry: Registry, net: model.Network) -> str:
    """The network's name when it names only this network, else its id."""
    try:
        if net.name and registry.get_network(net.name).id == net.id:
            return net.name
    except MdtoolError:
        pass
    return net.id


def _dhcp_port(net: model.Network, host: str) -> model.Port | None:
    return next((p for p in net.ports if p.device_owner == model.DHCP_OWNER and p.host == host),
                None)


def observe(config: Config, registry: Registry, nl: ip_lib.Netlink, network_ref: str,
            port_ref: str | None = None) -> Observation:
    net = registry.get_network(network_ref)
    port = _dhcp_port(net, config.host)
    ns = names.namespace_name(net.id)
    obs = Observation(ref=command_ref(registry, net), network=net, host=config.host,
                      namespace=ns, namespace_exists=ip_lib.namespace_exists(ns),
                      dhcp_port=port, tap=names.tap_name(port.id) if port else None)
    obs.daemons = {role: _daemon_state(config, role) for role in daemons.ROLES}
    if obs.namespace_exists:
        _observe_netns(nl, obs)
    if port is not None:
        end = names.bridge_end_name(port.id)
        host = {l.ifname: l for l in ip_lib.host_links_matching(nl, names=(net.bridge, end))}
        obs.bridge, obs.bridge_end = host.get(net.bridge), host.get(end)
    obs.dnsmasq = _observe_dnsmasq(config, net, port)
    obs.port_security = portsec.observe(nl, net)
    _observe_services(config, registry, obs, port_ref)
    return obs


def _daemon_state(config: Config, role: str) -> DaemonState:
    """The process manager's judgement: running only with our exact argv; an address of
    ours held by another process is named (process.held_sentence, as enable says it)."""
    st = daemons.manager(config, role).check()
    return DaemonState(role, st.pid if st.current else None, str(daemons.pidfile(config, role)),
                       str(daemons.logfile(config, role)), st.recorded, st.blocked)


def _observe_netns(nl: ip_lib.Netlink, obs: Observation) -> None:
    from mdtool.netns.switch import run_in_netns
    try:
        obs.links = ip_lib.list_links(nl, obs.namespace)
        obs.addresses = ip_lib.list_addresses(nl, obs.namespace)
        obs.routes = (ip_lib.list_routes(nl, obs.namespace, 4)
                      + ip_lib.list_routes(nl, obs.namespace, 6))
        raw = run_in_netns(obs.namespace, procnet.read_sockets)
    except (MdtoolError, OSError) as e:  # the namespace went away meanwhile
        obs.netns_error = str(e)
        return
    obs.sockets = procnet.with_owners(raw, program_label)


def program_label(pid: int) -> str | None:
    """``mdtool-proxy`` for any mdtool daemon (ours or another state dir's), else None."""
    argv = process.cmdline(pid) or []
    if not any("mdtool" in a for a in argv) or "run" not in argv:
        return None
    if "mdtool.proxy" in argv:  # the lean proxy entry point: python -m mdtool.proxy … run
        return "mdtool-proxy"
    i = argv.index("run")
    return f"mdtool-{argv[i - 1]}" if i > 0 else None


def _observe_dnsmasq(config: Config, net: model.Network,
                     port: model.Port | None) -> DnsmasqState:
    from mdtool.dnsmasq import control
    p = control.paths(config, net.id)
    pid = control.running_pid(config, net.id)
    st = DnsmasqState(pid=pid, cmdline=process.cmdline(pid) if pid else None,
                      expected_cmdline=None, files={}, opts_lines=None,
                      pidfile=str(p.pid), log=str(p.log))
    try:
        st.opts_lines = p.opts.read_text().splitlines()
    except OSError:
        pass
    if port is None:
        st.error = f"no DHCP port on {config.host}"
        return st
    try:
        st.expected_cmdline = control.argv(config, net, port)
        texts = control.rendered(config, net, port)
    except MdtoolError as e:
        st.error = str(e)
        return st
    for name in ("host", "opts", "addn_hosts"):  # leases belong to the running dnsmasq
        path: Path = getattr(p, name)
        try:
            current = path.read_text() == texts[name]
            exists = True
        except OSError:
            current = exists = False
        st.files[name] = FileState(str(path), exists, current)
    return st


def pick_port(net: model.Network, registry: Registry, port_ref: str | None) -> model.Port | None:
    """``--port`` (id, name or id prefix among the network's ports), or the first compute
    port with an instance and an address."""
    if port_ref:
        for p in net.ports:
            if port_ref in (p.id, p.name):
                return p
        matches = [p for p in net.ports if p.id.startswith(port_ref)]
        if len(matches) == 1:
            return matches[0]
        other = None
        try:
            other = registry.get_port(port_ref)
        except MdtoolError:
            pass
        if other is not None:
            raise BadInput(f"port {port_ref} is on network {other.network_id}, not {net.name or net.id}")
        raise NotFound(f"no port {port_ref!r} on network {net.name or net.id}; "
                       f"list them with: mdtool port-list")
    for p in net.ports:
        if p.device_owner != model.DHCP_OWNER and p.device_id and p.fixed_ips:
            return p
    return None


def _observe_services(config: Config, registry: Registry, obs: Observation,
                      port_ref: str | None) -> None:
    net = obs.network
    obs.agent_socket = str(config.agent_socket)
    # Alive: any HTTP answer; a network id no port has gives a 404 without touching Nova.
    obs.agent = get_unix(obs.agent_socket, "/", {"X-Neutron-Network-ID": BOGUS_NETWORK,
                                                 "X-Forwarded-For": "0.0.0.0"})
    obs.metadata_url = config.nova_metadata_url
    obs.metadata_local = config.nova_metadata_is_local
    # Alive: 400 for a path that needs an instance, asked without the identity headers (as
    # Nova, mdtool's service answers `GET /` itself, 200, so `/` proves nothing).
    obs.metadata = get_url(obs.metadata_url, "/openstack")

    port = pick_port(net, registry, port_ref)
    probe = obs.probe
    instance = None
    if port is None:
        probe.skipped = "no port with an instance on this network (use --port PORT)"
    else:
        probe.port_id = port.id
        v4 = [f.ip_address for f in port.fixed_ips if ":" not in f.ip_address]
        probe.port_ip = (v4 or [f.ip_address for f in port.fixed_ips] or [None])[0]
        if port.device_id:
            try:
                instance = registry.get_instance(port.device_id)
            except MdtoolError:
                instance = None
        if instance is None:
            probe.skipped = f"port {port.id[:8]} has no instance in the registry"
        else:
            probe.instance_id = instance.id
            probe.project_id = port.project_id or instance.project_id
    if probe.port_ip and instance is not None:
        # Exactly what the proxy would send for that port.
        probe.agent = get_unix(obs.agent_socket, PROBE_PATH,
                               {"X-Forwarded-For": probe.port_ip,
                                "X-Neutron-Network-ID": net.id})
    if obs.namespace_exists and obs.netns_error is None:
        probe.proxy = get_in_netns(obs.namespace, model.METADATA_IPV4, 80, PROBE_PATH)

    # The secret: sign for a real instance ourselves and ask the metadata service directly.
    if instance is None:
        obs.secret_note = "no instance on this network to sign a request for"
        return
    try:
        secret = config.shared_secret(create=False)  # read only: never generate one here
    except FileNotFoundError:
        obs.secret_note = "no shared secret configured or generated yet"
        return
    from mdtool.agent.sign import sign_instance_id
    obs.secret = get_url(obs.metadata_url, PROBE_PATH, {
        "X-Instance-ID": instance.id, "X-Tenant-ID": instance.project_id,
        "X-Instance-ID-Signature": sign_instance_id(secret, instance.id)})
