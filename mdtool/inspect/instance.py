"""``inspect NETWORK --port P | --instance VM``: one instance's side of the path.

Is its MAC in dnsmasq's host file, did it get a lease (the leases file), where did this node
plug it (``port-plug``) and does that namespace route 169.254.169.254 via a DHCP port, and
what was its last metadata request (the daemons' access lines, inspect's own probes left
out). ``observe`` reads; the checks are pure and run like the network's (in dependency
order, a consequence is skipped).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from mdtool import model, plugs
from mdtool.accesslog import Access
from mdtool.config import Config
from mdtool.inspect.checks import FAIL, OK, WARN, Check, evaluate_rules
from mdtool.netns import ip_lib
from mdtool.registry import Registry


@dataclass(frozen=True)
class Lease:
    expiry: int  # seconds since the epoch; 0: written before dnsmasq started, never renewed
    mac: str
    ip: str


@dataclass
class InstanceView:
    network_ref: str
    port: model.Port
    instance: model.Instance | None
    host_file: str
    host_lines: list[str] | None          # None: no host file
    leases_file: str
    leases: list[Lease] | None            # None: no leases file
    dhcp_ips: list[str]                   # this node's DHCP port addresses (the next hop)
    plug: plugs.Plug | None = None
    plug_ns_exists: bool = False
    routes: list[ip_lib.Route] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    last: Access | None = None

    @property
    def mac(self) -> str:
        return self.port.mac_address.lower()

    @property
    def ips(self) -> list[str]:
        return [f.ip_address for f in self.port.fixed_ips]

    def host_line(self) -> str | None:
        return next((l for l in self.host_lines or [] if l.lower().startswith(self.mac + ",")),
                    None)

    def lease(self) -> Lease | None:
        return next((l for l in self.leases or [] if l.mac.lower() == self.mac), None)

    def metadata_route(self) -> ip_lib.Route | None:
        """The most specific IPv4 route the namespace would take to 169.254.169.254."""
        target = ipaddress.ip_address(model.METADATA_IPV4)
        best = None
        for r in self.routes:
            if r.family != 4:
                continue
            try:
                net = ipaddress.ip_network(f"{r.destination}/{r.prefixlen}", strict=False)
            except ValueError:
                continue
            if target in net and (best is None or r.prefixlen > best.prefixlen):
                best = r
        return best


def parse_leases(text: str) -> list[Lease]:
    """dnsmasq's leases file: ``<expiry> <mac> <ip> <hostname> <client id>`` per line."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0].isdigit():
            out.append(Lease(int(f[0]), f[1], f[2]))
    return out


def pick(net: model.Network, registry: Registry, port_ref: str | None,
         instance_ref: str | None) -> model.Port:
    """The port ``--port`` names, or ``--instance``'s compute port on this network."""
    from mdtool.errors import BadInput
    from mdtool.inspect.observe import pick_port
    if port_ref:
        return pick_port(net, registry, port_ref)
    inst = registry.get_instance(instance_ref)
    port = next((p for p in net.ports if p.device_id == inst.id
                 and p.device_owner != model.DHCP_OWNER), None)
    if port is None:
        raise BadInput(f"instance {inst.name} has no port on network {net.name or net.id}: "
                       f"mdtool port-create {net.name or net.id} --device-id {inst.name}")
    return port


def observe(config: Config, registry: Registry, nl: ip_lib.Netlink, network_ref: str,
            net: model.Network, port: model.Port,
            dhcp_port: model.Port | None) -> InstanceView:
    from mdtool import accesslog
    from mdtool.dnsmasq import control
    from mdtool.errors import MdtoolError
    instance = None
    if port.device_id:
        try:
            instance = registry.get_instance(port.device_id)
        except MdtoolError:
            instance = None
    p = control.paths(config, net.id)
    v = InstanceView(network_ref, port, instance, str(p.host), None, str(p.leases), None,
                     [f.ip_address for f in dhcp_port.fixed_ips] if dhcp_port else [])
    try:
        v.host_lines = p.host.read_text().splitlines()
    except OSError:
        pass
    try:
        v.leases = parse_leases(p.leases.read_text())
    except OSError:
        pass
    v.plug = plugs.read(config, port.id)
    if v.plug is not None and ip_lib.namespace_exists(v.plug.namespace):
        v.plug_ns_exists = True
        try:
            v.routes = ip_lib.list_routes(nl, v.plug.namespace, 4)
        except MdtoolError:  # deleted meanwhile
            v.plug_ns_exists = False
    paths = accesslog.log_paths(config)
    v.logs = [str(x) for x in paths]
    scope = accesslog.Scope(instance_ids=frozenset({instance.id} if instance else ()),
                            addresses=frozenset((net.id, ip) for ip in v.ips))
    seen = [a for a in accesslog.merged(paths, scope) if not a.probe]
    # the proxy's line is the request as the instance made it; the others follow it
    v.last = next((a for a in reversed(seen) if a.role == "proxy"), seen[-1] if seen else None)
    return v


def _reload(v: InstanceView) -> str:
    return f"mdtool dnsmasq reload {v.network_ref}"


def check_host_file(v: InstanceView) -> Check:
    name = "MAC in dnsmasq's host file"
    if v.host_lines is None:
        return Check(name, FAIL, f"no host file {v.host_file}",
                     "dnsmasq's files were never written on this node",
                     f"mdtool enable-isolated-metadata {v.network_ref}")
    line = v.host_line()
    if line is None:
        return Check(name, FAIL, f"{v.mac} is not in {v.host_file}",
                     "the port was created or changed after dnsmasq's files were written: "
                     "dnsmasq ignores the instance's DHCP requests", _reload(v))
    listed = {l.rsplit(",", 1)[-1].strip("[]") for l in v.host_lines
              if l.lower().startswith(v.mac + ",")}
    missing = [ip for ip in v.ips if ip not in listed]
    if missing:
        return Check(name, FAIL, f"{line} (no {', '.join(missing)})",
                     "the port's addresses changed after the host file was written", _reload(v))
    return Check(name, OK, line)


def check_lease(v: InstanceView) -> Check:
    import time
    name = "lease"
    lease = v.lease()
    if lease is None:
        where = v.leases_file if v.leases is not None else f"{v.leases_file} (missing)"
        return Check(name, WARN, f"no lease for {v.mac} in {where}: the instance has not "
                                 "asked, or got no answer (is its DHCP client running?)")
    if lease.ip not in v.ips:
        return Check(name, FAIL, f"{v.mac} holds {lease.ip}, the port has {', '.join(v.ips)}",
                     "a lease from before the port's address changed", _reload(v))
    if lease.expiry == 0:
        return Check(name, WARN, f"{lease.ip} written at dnsmasq's start, never requested since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.expiry))
    return Check(name, OK, f"{lease.ip} leased until {when}")


def check_plugged(v: InstanceView) -> Check:
    name = "plugged on this node"
    if v.plug is None:
        return Check(name, WARN, "not plugged by this node (mdtool port-plug): look inside "
                                 "the instance itself for its route and requests")
    if not v.plug_ns_exists:
        return Check(name, FAIL, f"plugged into namespace {v.plug.namespace}, which is gone",
                     "the namespace was deleted behind mdtool's back",
                     f"mdtool port-plug {v.port.id} {v.plug.namespace}")
    return Check(name, OK, f"namespace {v.plug.namespace}, {v.plug.ifname} on {v.plug.bridge}")


def check_route(v: InstanceView) -> Check:
    name = f"route to {model.METADATA_IPV4} in the instance"
    if v.plug is None:
        return Check(name, WARN, "not judged: not plugged by this node")
    r = v.metadata_route()
    renew = (f"renew the lease in {v.plug.namespace} with a client that asks for option 121, "
             f"e.g. udhcpc -i {v.plug.ifname} -O staticroutes")
    if r is None or r.prefixlen == 0 and r.gateway not in v.dhcp_ips:
        return Check(name, FAIL, f"no route to {model.METADATA_IPV4} in {v.plug.namespace}"
                                 + (f" but the default via {r.gateway}" if r else ""),
                     "its DHCP client did not ask for option 121 (udhcpc needs -O staticroutes; "
                     "CirrOS's does not ask), or it has no lease yet", renew)
    if r.gateway not in v.dhcp_ips:
        return Check(name, FAIL, f"{r.destination}/{r.prefixlen} via {r.gateway or 'on-link'}, "
                                 f"not via this node's DHCP port ({', '.join(v.dhcp_ips) or 'none'})",
                     "a lease from another DHCP server or node, or a route set by hand", renew)
    return Check(name, OK, f"{r.destination}/{r.prefixlen} via {r.gateway} dev {r.ifname}")


def check_last_request(v: InstanceView) -> Check:
    name = "last metadata request"
    a = v.last
    if a is None:
        return Check(name, WARN, "none in the daemons' access logs (inspect's probes not counted)")
    status = a.fields.get("status") or next(
        (t for t in a.message.split() if t.isdigit() and len(t) == 3), "")
    detail = f"{a.ts} {a.role}: {a.message}"
    if status.startswith(("4", "5")):
        return Check(name, WARN, detail)
    return Check(name, OK, detail)


RULES = (
    (check_host_file, ()),
    (check_lease, (check_host_file,)),
    (check_plugged, ()),
    (check_route, (check_plugged,)),
    (check_last_request, ()),
)


def evaluate(v: InstanceView) -> list[Check]:
    return evaluate_rules(RULES, v)
