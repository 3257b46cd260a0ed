"""An observation and its verdicts as plain data (pure): what ``inspect -f json`` prints,
and what the text view is drawn from."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtool.inspect import layout
from mdtool.inspect.checks import Check
from mdtool.inspect.observe import Observation
from mdtool.inspect.probe import Answer
from mdtool.inspect.procnet import Socket
from mdtool.netns.ip_lib import Address, Link, Route


@dataclass
class Report:
    observation: Observation
    checks: list[Check]
    instance: object | None = None            # inspect.instance.InstanceView (--port/--instance)
    instance_checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks + self.instance_checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks + self.instance_checks if not c.ok]


def link_dict(l: Link) -> dict:
    return {"ifindex": l.index, "ifname": l.ifname, "flags": layout.link_flags(l.flags),
            "mtu": l.mtu, "state": l.oper_state or "UNKNOWN", "kind": l.kind, "mac": l.mac}


def address_dict(a: Address, links: dict[str, Link]) -> dict:
    link = links.get(a.ifname)
    return {"ifindex": link.index if link else None, "ifname": a.ifname,
            "family": "inet" if a.family == 4 else "inet6", "address": a.address,
            "prefixlen": a.prefixlen, "cidr": a.cidr, "broadcast": a.broadcast,
            "scope": layout.scope_name(a.scope), "flags": layout.address_flags(a)}


def route_dict(r: Route) -> dict:
    return {"family": "inet" if r.family == 4 else "inet6", "destination": r.destination,
            "prefixlen": r.prefixlen, "cidr": f"{r.destination}/{r.prefixlen}",
            "gateway": r.gateway or ("0.0.0.0" if r.family == 4 else "::"),
            "genmask": r.genmask, "flags": r.flags, "metric": r.metric, "ref": 0, "use": 0,
            "iface": r.ifname}


def socket_dict(s: Socket) -> dict:
    return {"proto": s.proto, "recv_q": s.recv_q, "send_q": s.send_q,
            "local_address": s.local_address, "local_port": s.local_port, "local": s.local,
            "foreign_address": s.remote_address, "foreign_port": s.remote_port,
            "foreign": s.foreign, "state": s.state, "inode": s.inode, "pid": s.pid,
            "program": s.program}


def answer_dict(a: Answer | None) -> dict | None:
    if a is None:
        return None
    return {"status": a.status, "error": a.error}


def to_dict(r: Report) -> dict:
    o = r.observation
    links = {l.ifname: l for l in o.links}
    d = o.dnsmasq
    p = o.probe
    by_name = {c.name: c for c in r.checks}
    agent_check = next((c for c in r.checks if c.name.startswith("probe: agent")), None)
    proxy_check = by_name.get("probe: proxy answers in the namespace")
    return {
        "network": {"id": o.network.id, "name": o.network.name, "hosts": list(o.network.hosts)},
        "namespace": {"name": o.namespace, "present": o.namespace_exists,
                      "error": o.netns_error},
        "dhcp_port": None if o.dhcp_port is None else {
            "id": o.dhcp_port.id, "tap": o.tap, "mac_address": o.dhcp_port.mac_address,
            "fixed_ips": [f.ip_address for f in o.dhcp_port.fixed_ips]},
        "links": [link_dict(l) for l in sorted(o.links, key=lambda l: l.index)],
        "addresses": [address_dict(a, links) for a in o.addresses],
        "routes": [route_dict(x) for x in o.routes],
        "listening": [socket_dict(s) for s in o.sockets if s.listening],
        "dnsmasq": None if d is None else {
            "running": d.pid is not None, "pid": d.pid, "cmdline": d.cmdline,
            "expected_cmdline": d.expected_cmdline, "cmdline_current": d.cmdline_current,
            "files": {n: {"path": f.path, "exists": f.exists, "current": f.current}
                      for n, f in d.files.items()},
            "opts": d.opts_lines, "pidfile": d.pidfile, "log": d.log, "error": d.error},
        "daemons": {role: {"running": s.running, "pid": s.pid, "pidfile": s.pidfile,
                           "log": s.log} for role, s in o.daemons.items()},
        "services": {"agent_socket": o.agent_socket, "agent": answer_dict(o.agent),
                     "metadata_url": o.metadata_url, "metadata_local": o.metadata_local,
                     "metadata": answer_dict(o.metadata),
                     "secret": answer_dict(o.secret), "secret_note": o.secret_note},
        "port_security": None if o.port_security is None else {
            "table": o.port_security.table, "plugged": o.port_security.plugged,
            "unsecured": o.port_security.unsecured, "orphans": o.port_security.orphans,
            "rules": o.port_security.live, "current": o.port_security.live == o.port_security.expected,
            "error": o.port_security.error},
        "checks": [c.as_dict() for c in r.checks],
        "probe": {
            "port": p.port_id, "ip": p.port_ip, "instance_id": p.instance_id,
            "skipped": p.skipped,
            "agent": None if p.agent is None else {
                **answer_dict(p.agent), "uuid": p.uuid,
                "ok": bool(agent_check and agent_check.status == "ok"),
                "detail": agent_check.detail if agent_check else ""},
            "proxy": None if p.proxy is None else {
                **answer_dict(p.proxy), "ok": bool(proxy_check and proxy_check.status == "ok"),
                "detail": proxy_check.detail if proxy_check else ""},
        },
        "instance": None if r.instance is None else instance_dict(r),
        "ok": r.ok,
    }


def instance_dict(r: Report) -> dict:
    v = r.instance
    lease, route = v.lease(), v.metadata_route()
    return {
        "port": {"id": v.port.id, "mac_address": v.port.mac_address, "fixed_ips": v.ips},
        "instance": None if v.instance is None else {"id": v.instance.id, "name": v.instance.name},
        "host_file": {"path": v.host_file, "line": v.host_line()},
        "lease": {"path": v.leases_file, "ip": lease.ip if lease else None,
                  "expiry": lease.expiry if lease else None},
        "plugged": None if v.plug is None else {"namespace": v.plug.namespace,
                                                "ifname": v.plug.ifname,
                                                "present": v.plug_ns_exists},
        "metadata_route": None if route is None else {
            "cidr": f"{route.destination}/{route.prefixlen}", "gateway": route.gateway,
            "iface": route.ifname},
        "last_request": None if v.last is None else {"ts": v.last.ts, "role": v.last.role,
                                                     "line": v.last.message},
        "checks": [c.as_dict() for c in r.instance_checks],
    }
