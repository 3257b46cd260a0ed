"""Verdicts on an :class:`~mdtool.inspect.observe.Observation` (pure): each check says
ok, warn or fail, and a failure names the likely cause and the command that fixes it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mdtool import model
from mdtool.inspect.observe import PROBE_PATH, Observation

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
IFF_UP = 0x1


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    cause: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL  # a skipped check is a consequence, not a second cause

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "status": self.status, "detail": self.detail,
                "cause": self.cause, "fix": self.fix}


def _enable(o: Observation) -> str:
    return f"mdtool enable-isolated-metadata {o.ref}"


def _reload(o: Observation) -> str:
    return f"mdtool dnsmasq reload {o.ref}"


def _daemon_note(o: Observation, role: str) -> str:
    d = o.daemons.get(role)
    if d is None:
        return ""
    if d.running:
        return f"mdtool {role} runs (pid {d.pid}, log {d.log})"
    if d.died:
        return f"mdtool {role} died: its pid file names pid {d.recorded_pid}, which is gone (log {d.log})"
    return f"mdtool {role} is not running (pid file {d.pidfile}, log {d.log})"


def check_namespace(o: Observation) -> Check:
    name = "namespace exists"
    if o.namespace_exists and o.netns_error is None:
        return Check(name, OK, o.namespace)
    if o.namespace_exists:
        return Check(name, FAIL, f"{o.namespace}: {o.netns_error}",
                     "the namespace cannot be read", _enable(o))
    return Check(name, FAIL, f"{o.namespace} is missing",
                 "the network is not enabled on this node, or its namespace was deleted",
                 _enable(o))


def check_dhcp_port(o: Observation) -> Check:
    name = "DHCP port up"
    if o.dhcp_port is None:
        return Check(name, FAIL, f"no DHCP port reserved for host {o.host}",
                     "isolated metadata was never enabled here (or was disabled)", _enable(o))
    if not o.namespace_exists:
        return Check(name, FAIL, f"{o.tap}: the namespace is missing",
                     "no namespace, so no DHCP port", _enable(o))
    link = o.tap_link()
    if link is None:
        return Check(name, FAIL, f"{o.tap} is missing in {o.namespace}",
                     "the DHCP port's veth was deleted", _enable(o))
    if not link.flags & IFF_UP:
        return Check(name, FAIL, f"{o.tap} is DOWN", "the link was set down", _enable(o))
    if link.oper_state in ("DOWN", "LOWERLAYERDOWN"):
        return Check(name, FAIL, f"{o.tap} has no carrier (state {link.oper_state})",
                     "the bridge end of the veth is down or gone", _enable(o))
    have = o.tap_cidrs()
    have_ips = {c.split("/")[0] for c in have}
    want = [str(ipaddress.ip_address(f.ip_address)) for f in o.dhcp_port.fixed_ips]
    missing = [ip for ip in want if ip not in have_ips]
    if missing:
        return Check(name, FAIL, f"{o.tap} lacks {', '.join(missing)}",
                     "the DHCP port's addresses were removed or changed in the registry",
                     _enable(o))
    return Check(name, OK, f"{o.tap} UP with {', '.join(want)}")


def check_bridge(o: Observation) -> Check:
    name = "DHCP port on the bridge"
    bridge = o.network.bridge
    end = o.bridge_end
    if o.bridge is None:
        return Check(name, FAIL, f"bridge {bridge} is missing",
                     "the bridge was deleted: the DHCP port reaches no instance", _enable(o))
    if end is None:
        return Check(name, FAIL, f"the DHCP port's bridge end is missing on the host",
                     "its veth was deleted on the host side", _enable(o))
    if end.master != bridge:
        return Check(name, FAIL, f"{end.ifname} is not on bridge {bridge} "
                                 f"(master: {end.master or 'none'})",
                     "the DHCP port's veth was taken off the bridge (ip link set … nomaster): "
                     "instances' DHCP requests and metadata traffic never reach the namespace",
                     _enable(o))
    if not o.bridge.up:
        return Check(name, FAIL, f"bridge {bridge} is DOWN", "the bridge was set down", _enable(o))
    return Check(name, OK, f"{end.ifname} on {bridge} (UP)")


def check_metadata_address(o: Observation) -> Check:
    name = f"{model.METADATA_IPV4} present"
    want = [model.METADATA_IPV4 + "/32"]
    if any(s.ip_version == 6 for s in o.network.subnets):
        want.append(model.METADATA_IPV6 + "/128")
    if o.tap_link() is None:
        return Check(name, FAIL, f"no DHCP port link to carry {want[0]}",
                     "the DHCP port is missing", _enable(o))
    missing = [c for c in want if c not in o.tap_cidrs()]
    if missing:
        return Check(name, FAIL, f"{', '.join(missing)} missing on {o.tap}",
                     "the address was removed", _enable(o))
    return Check(name, OK, f"{', '.join(want)} on {o.tap}")


def check_dnsmasq_running(o: Observation) -> Check:
    name = "dnsmasq running"
    d = o.dnsmasq
    if d is None or d.pid is None:
        return Check(name, FAIL, f"no dnsmasq for this network (pid file {d.pidfile if d else '?'})",
                     "dnsmasq died or was stopped; instances get no lease and no metadata route"
                     + (f" (log: {d.log})" if d else ""), _enable(o))
    return Check(name, OK, f"pid {d.pid} in {o.namespace}")


def check_dnsmasq_current(o: Observation) -> Check:
    name = "dnsmasq runs with the current files"
    d = o.dnsmasq
    if d is None or d.pid is None:
        return Check(name, WARN, "not judged: dnsmasq is not running")
    if d.error:
        return Check(name, FAIL, f"cannot render what dnsmasq should use: {d.error}",
                     "the registry and this node disagree", _enable(o))
    if not d.cmdline_current:
        return Check(name, FAIL, "its command line differs from what mdtool renders now",
                     "the network changed (subnets, MTU, options) since dnsmasq started",
                     _reload(o))
    stale = [n for n, f in d.files.items() if not f.current]
    if stale:
        return Check(name, FAIL, f"stale on disk: {', '.join(stale)}",
                     "ports or subnets changed since the files were written", _reload(o))
    return Check(name, OK, "command line and " + ", ".join(d.files) + " as rendered now")


def metadata_routes(o: Observation) -> list[tuple[str, str]]:
    """(subnet id, expected ``169.254.169.254/32,<dhcp port ip>``) per DHCP IPv4 subnet."""
    if o.dhcp_port is None:
        return []
    ips = {f.subnet_id: f.ip_address for f in o.dhcp_port.fixed_ips}
    return [(s.id, f"{model.METADATA_IPV4}/32,{ips[s.id]}") for s in o.network.subnets
            if s.enable_dhcp and s.ip_version == 4 and s.id in ips]


def check_opts_route(o: Observation) -> Check:
    name = "opts carry the metadata route"
    d = o.dnsmasq
    if d is None or d.opts_lines is None:
        return Check(name, FAIL, "no opts file", "dnsmasq's files were never rendered",
                     _enable(o))
    want = metadata_routes(o)
    if not want:
        return Check(name, FAIL, "no DHCP-enabled IPv4 subnet with a DHCP port address",
                     "nothing to route to", _enable(o))
    missing = []
    for subnet_id, route in want:
        tag = f"tag:subnet-{subnet_id},option:classless-static-route,"
        if not any(l.startswith(tag) and route in l for l in d.opts_lines):
            missing.append(route)
    if missing:
        return Check(name, FAIL, f"missing {'; '.join(missing)}",
                     "the opts file is stale or was edited", _reload(o))
    return Check(name, OK, "; ".join(r for _, r in want))


def _listener(o: Observation, address: str, port: int = 80):
    wild = "::" if ":" in address else "0.0.0.0"
    for s in o.sockets:
        if s.listening and s.local_port == port and s.local_address in (address, wild):
            return s
    return None


def check_proxy_listening(o: Observation) -> Check:
    name = "proxy listening on :80"
    want = [model.METADATA_IPV4]
    if any(s.ip_version == 6 for s in o.network.subnets):
        want.append(model.METADATA_IPV6)
    found = {a: _listener(o, a) for a in want}
    missing = [a for a, s in found.items() if s is None]
    if not o.namespace_exists:
        return Check(name, FAIL, "no namespace to listen in", "the namespace is missing",
                     _enable(o))
    if missing:
        cause = _daemon_note(o, "proxy")
        if o.daemons.get("proxy") and o.daemons["proxy"].running:
            cause += ": it has not (yet) opened a listener in this namespace"
        where = ", ".join(f"{a}:80" if ":" not in a else f"[{a}]:80" for a in missing)
        return Check(name, FAIL, f"nothing listens on {where} in {o.namespace}", cause,
                     _enable(o))
    ours = o.daemons.get("proxy")
    if ours and ours.died:
        held = "; ".join(f"{s.local} held by {s.pid_program}" for s in found.values())
        return Check(name, FAIL, f"this state dir's proxy is dead ({held})", _daemon_note(o, "proxy"),
                     _enable(o))
    foreign = [s for s in found.values() if ours and ours.running and s.pid != ours.pid]
    if foreign:
        s = foreign[0]
        return Check(name, FAIL, f"{s.local} is held by {s.pid_program}, not by this state "
                                 f"dir's proxy (pid {ours.pid})",
                     "another proxy (another state dir?) took the port first: instances' "
                     "requests go to its agent and registry",
                     f"kill {s.pid}  # that other proxy; then: {_enable(o)}" if s.pid
                     else _enable(o))
    return Check(name, OK, "; ".join(f"{s.local} by {s.pid_program}" for s in found.values()))


def _held(o: Observation, role: str, name: str) -> Check | None:
    """Another process holds an address of ``role``: it answers in mdtool's place."""
    d = o.daemons.get(role)
    if d is None or not d.held:
        return None
    return Check(name, FAIL, d.held[0],
                 f"another program answers in place of mdtool {role}: instances may get its "
                 "bytes", f"stop that process; then: {_enable(o)}")


def check_agent(o: Observation) -> Check:
    name = "agent socket answers"
    held = _held(o, "agent", name)
    if held is not None:
        return held
    a = o.agent
    if a is not None and a.answered:
        return Check(name, OK, f"{a.describe()} from {o.agent_socket}")
    return Check(name, FAIL, f"{o.agent_socket}: {a.describe() if a else 'not asked'}",
                 _daemon_note(o, "agent"), _enable(o))


def check_metadata(o: Observation) -> Check:
    name = "metadata service answers"
    held = _held(o, "metadata", name)
    if held is not None:
        return held
    a = o.metadata
    ours = o.daemons.get("metadata")
    if o.metadata_local and a is not None and a.answered and ours and not ours.running:
        return Check(name, FAIL, f"{o.metadata_url}: {a.describe()}, but this state dir's "
                                 "mdtool metadata is not running",
                     "another service holds the port (another state dir's metadata?): "
                     "the agent signs for a service with another secret and registry",
                     "stop that service, or set metadata_listen_port and nova_metadata_port "
                     f"to a free port; then: {_enable(o)}")
    if a is not None and a.status == 400:
        return Check(name, OK, f"{o.metadata_url}: HTTP 400 without headers (alive)")
    if a is not None and a.answered:
        return Check(name, WARN, f"{o.metadata_url}: {a.describe()} without headers "
                                 "(expected 400 from a Nova-compatible service)")
    if o.metadata_local:
        return Check(name, FAIL, f"{o.metadata_url}: {a.describe() if a else 'not asked'}",
                     _daemon_note(o, "metadata"), _enable(o))
    return Check(name, FAIL, f"{o.metadata_url}: {a.describe() if a else 'not asked'}",
                 "the Nova metadata API configured as nova_metadata_url does not answer",
                 f"curl -i {o.metadata_url}/openstack  # then fix nova_metadata_url or that service")


def check_secret(o: Observation) -> Check:
    name = "shared secret agrees"
    if o.secret_note:
        return Check(name, WARN, f"not judged: {o.secret_note}")
    a = o.secret
    if a is None or not a.answered:
        return Check(name, WARN, "not judged: the metadata service does not answer"
                     + (f" ({a.error})" if a and a.error else ""))
    if a.status in (200, 404):
        what = "instance served" if a.status == 200 else "signature accepted, instance unknown there"
        return Check(name, OK, f"signed request for {o.probe.instance_id}: HTTP {a.status} ({what})")
    if a.status == 403:
        return Check(name, FAIL,
                     f"signed request for {o.probe.instance_id}: HTTP 403 (signature refused)",
                     "metadata_proxy_shared_secret differs between mdtool's config and the "
                     "metadata service (or the service runs with an older secret)",
                     "set the same metadata_proxy_shared_secret on both sides, then restart: "
                     f"mdtool disable-isolated-metadata {o.ref} && {_enable(o)}")
    return Check(name, WARN, f"signed request: {a.describe()} (expected 200 or 403)")


def check_probe_agent(o: Observation) -> Check:
    p = o.probe
    name = "probe: agent as port"
    if p.agent is None:
        return Check(name, WARN, f"skipped: {p.skipped or 'no port to probe as'}")
    name = f"probe: agent as port {p.port_ip}"
    where = f"GET {PROBE_PATH} as {p.port_ip} on {o.network.id[:8]}"
    if p.agent.status == 200 and p.uuid == p.instance_id:
        return Check(name, OK, f"{where}: HTTP 200, uuid {p.uuid}")
    if not p.agent.answered:
        return Check(name, FAIL, f"{where}: {p.agent.describe()}", _daemon_note(o, "agent"),
                     _enable(o))
    causes = {
        404: "the agent finds no single port with that address on this network "
             "(registry not followed yet, or duplicate addresses)",
        403: "the metadata service refused the agent's signature: the secrets differ",
        502: "the metadata service gave the agent no usable answer",
        503: "the agent cannot reach the metadata service: " + _daemon_note(o, "metadata"),
        504: "the metadata service did not answer the agent in time",
    }
    cause = causes.get(p.agent.status, "unexpected answer")
    if p.agent.status == 200:
        cause = f"answered for another instance ({p.uuid}, expected {p.instance_id})"
    return Check(name, FAIL, f"{where}: {p.agent.describe()}", cause, _enable(o))


def check_probe_proxy(o: Observation) -> Check:
    p = o.probe
    name = "probe: proxy answers in the namespace"
    if p.proxy is None:
        return Check(name, FAIL, "not probed: the namespace is missing",
                     "the namespace is missing", _enable(o))
    if p.proxy.answered:
        note = (" (expected: the namespace's own address is no port's)"
                if p.proxy.status == 404 else "")
        return Check(name, OK, f"GET http://{model.METADATA_IPV4}{PROBE_PATH} from "
                               f"{o.namespace}: {p.proxy.describe()}{note}")
    return Check(name, FAIL, f"GET http://{model.METADATA_IPV4}/ from {o.namespace}: "
                             f"{p.proxy.describe()}", _daemon_note(o, "proxy"), _enable(o))


def check_port_security(o: Observation) -> Check:
    name = "port security rules"
    st = o.port_security
    if st is None:
        return Check(name, WARN, "not observed")
    parts = [f"{len(st.plugged) - len(st.unsecured)} plugged port(s) protected"]
    if st.unsecured:
        parts.append("port security off: " + ", ".join(st.unsecured))
    if st.orphans:
        parts.append("taps of deleted ports (drop all): " + ", ".join(st.orphans))
    summary = "; ".join(parts)
    if st.error:
        return Check(name, WARN, f"{summary}; not judged: {st.error}")
    if st.expected == st.live:
        table = f"table bridge {st.table}" if st.live else "no table needed"
        return Check(name, OK, f"{summary}; {table}, as the registry says")
    fix = "mdtool port-update PORT --port-security (re-applies the network's rules on this node)"
    if st.live is None:
        return Check(name, FAIL, f"{summary}; table bridge {st.table} is missing",
                     "the plugged ports send unchecked: the table was deleted (nft flush "
                     "ruleset, a firewall reload)", fix)
    if st.expected is None:
        return Check(name, WARN, f"{summary}; table bridge {st.table} is left over",
                     "no plugged port needs it", "nft delete table bridge " + st.table)
    wanted, live = st.expected.splitlines(), st.live.splitlines()
    diff = [f"-{l.strip()}" for l in wanted if l not in live] + \
           [f"+{l.strip()}" for l in live if l not in wanted]
    return Check(name, FAIL, f"{summary}; table bridge {st.table} differs from the registry: "
                             + " ".join(diff[:6]) + (" …" if len(diff) > 6 else ""),
                 "the rules were changed by hand, or the port changed on another node", fix)


# In dependency order, each with the checks it needs: when one of those failed (or was
# skipped), the check is skipped, so one fault gives one cause and one fix, not a cascade of
# its consequences. A new check: append it with what it depends on.
CHECKS = (
    (check_namespace, ()),
    (check_dhcp_port, (check_namespace,)),
    (check_bridge, (check_dhcp_port,)),
    (check_metadata_address, (check_dhcp_port,)),
    (check_dnsmasq_running, (check_dhcp_port,)),
    (check_dnsmasq_current, (check_dnsmasq_running,)),
    (check_opts_route, (check_dnsmasq_current,)),
    (check_proxy_listening, (check_metadata_address,)),
    (check_agent, ()),
    (check_metadata, ()),
    (check_secret, (check_metadata,)),
    (check_probe_agent, (check_agent, check_metadata, check_secret)),
    (check_probe_proxy, (check_proxy_listening,)),
    (check_port_security, ()),
)


def evaluate(o: Observation) -> list[Check]:
    return evaluate_rules(CHECKS, o)


def evaluate_rules(rules, subject) -> list[Check]:
    """Run ``(check, needs)`` rules in order; one whose needs failed or were skipped is
    skipped itself."""
    out: list[Check] = []
    judged: dict = {}
    for check, needs in rules:
        c = check(subject)
        blocked = next((judged[n] for n in needs if judged[n].status in (FAIL, SKIP)), None)
        if blocked is not None:
            c = Check(c.name, SKIP, f"not judged: needs '{blocked.name}'")
        judged[check] = c
        out.append(c)
    return out
