"""Real DHCP: namespace + veth + bridge via pyroute2, dnsmasq 2.90 in qdhcp-<id>, and
instance namespaces running dhclient and udhcpc with their own hook script.

Every object has a unique name and is removed in teardown, even when a test fails.
"""

from __future__ import annotations

import pytest

from mdtool import model
from mdtool.config import Config
from mdtool.dnsmasq import control
from mdtool.netns import dhcp_port, ip_lib, names, plug
from tests.e2e.helpers import (Cleanup, DhcpClients, add_port, add_subnet, host_link_exists,
                               link_exists, make_network, make_state_dir, netns_exists,
                               ns_ipv4, ns_routes, processes_matching, requires, route_via,
                               sh, unique_name, wait_for)

pytestmark = [pytest.mark.e2e, requires("ip", "dnsmasq", "dhclient", "udhcpc")]


def _in_session(fn, *args, **kwargs):
    """One call through a netlink session of its own (a command's worth)."""
    with ip_lib.Netlink() as nl:
        return fn(nl, *args, **kwargs)


@pytest.fixture
def cleanup():
    c = Cleanup()
    yield c
    c.run()


class Env:
    """One network with a DHCP port, and helpers to plug instances into it."""

    def __init__(self, cleanup: Cleanup, *, gateway: bool, prefix: str = "10.77.0"):
        self.cleanup = cleanup
        self.state_dir = make_state_dir(cleanup)
        ini = self.state_dir / "mdtool.ini"
        ini.write_text("")
        self.config = Config(state_dir=str(self.state_dir), config_file=str(ini), environ={})
        self.net = make_network(mtu=1400)
        self.subnet = add_subnet(self.net, f"{prefix}.0/24",
                                 gateway=f"{prefix}.1" if gateway else None)
        self.dhcp = add_port(self.net, [(self.subnet, f"{prefix}.2")], mac="fa:16:3e:00:0d:02",
                             owner=model.DHCP_OWNER)
        self.ns = names.namespace_name(self.net.id)
        # registered first = removed last; each removal tolerates "already gone"
        cleanup.link(self.net.bridge)
        cleanup.nft_table(self.net.id)
        cleanup.link(names.bridge_end_name(self.dhcp.id))
        cleanup.netns(self.ns)
        cleanup.processes("dnsmasq", self.net.id)
        self.clients = DhcpClients(self.state_dir / "clients", cleanup)

    def plug_instance(self, port: model.Port) -> str:
        ns = unique_name("mdt-inst-", 15)
        self.cleanup.link(names.tap_name(port.id))
        self.cleanup.netns(ns)
        assert _in_session(plug.plug, port, self.net, ns)
        assert _in_session(plug.plug, port, self.net, ns) == []
        return ns


def assert_lease(ns: str, ip: str, dhcp_ip: str, gateway: str | None) -> None:
    assert ns_ipv4(ns, "eth0") == [f"{ip}/24"]
    routes = ns_routes(ns)
    assert route_via(routes, "169.254.169.254") == dhcp_ip, routes
    if gateway is None:
        assert route_via(routes, "default") is None, routes
    else:
        assert route_via(routes, "default") == gateway, routes


def test_up_is_idempotent_completes_half_built_state_and_down_removes_all(cleanup):
    env = Env(cleanup, gateway=False, prefix="10.77.1")
    tap, end = names.tap_name(env.dhcp.id), names.bridge_end_name(env.dhcp.id)

    actions = _in_session(dhcp_port.up, env.net, env.dhcp)
    texts = [a.text for a in actions]
    assert f"create namespace {env.ns}" in texts
    assert f"add 169.254.169.254/32 to {tap}" in texts
    assert _in_session(dhcp_port.up, env.net, env.dhcp) == []
    assert sorted(ns_ipv4(env.ns, tap)) == ["10.77.1.2/24", "169.254.169.254/32"]
    assert sh("ip", "-j", "link", "show", "dev", end).stdout.count(f'"master":"{env.net.bridge}"') == 1

    # half-built: an address lost, a stale one added, the bridge end released
    sh("ip", "addr", "del", "169.254.169.254/32", "dev", tap, netns=env.ns)
    sh("ip", "addr", "add", "10.99.0.9/24", "dev", tap, netns=env.ns)
    sh("ip", "link", "set", "dev", end, "nomaster")
    texts = [a.text for a in _in_session(dhcp_port.up, env.net, env.dhcp)]
    assert f"add 169.254.169.254/32 to {tap}" in texts
    assert f"remove stale 10.99.0.9/24 from {tap}" in texts
    assert any(t.startswith(f"set {end}") and "master" in t for t in texts)
    assert not any("create" in t for t in texts), texts
    assert _in_session(dhcp_port.up, env.net, env.dhcp) == []

    # the namespace vanished under us (its veth peer may survive): rebuilt, not duplicated
    sh("ip", "netns", "del", env.ns)
    texts = [a.text for a in _in_session(dhcp_port.up, env.net, env.dhcp)]
    assert f"create namespace {env.ns}" in texts
    assert _in_session(dhcp_port.up, env.net, env.dhcp) == []
    assert env.ns in dhcp_port.list_namespaces()

    assert _in_session(dhcp_port.down, env.net.id, env.net.bridge, dry_run=True)
    assert netns_exists(env.ns)
    _in_session(dhcp_port.down, env.net.id, env.net.bridge)
    assert not netns_exists(env.ns)
    assert not host_link_exists(end)
    assert not host_link_exists(env.net.bridge)
    assert _in_session(dhcp_port.down, env.net.id, env.net.bridge) == []


def test_down_keeps_a_bridge_mdtool_did_not_create(cleanup):
    env = Env(cleanup, gateway=False, prefix="10.77.2")
    sh("ip", "link", "add", env.net.bridge, "type", "bridge")
    texts = [a.text for a in _in_session(dhcp_port.up, env.net, env.dhcp)]
    assert not any(t.startswith("create bridge") for t in texts)
    _in_session(dhcp_port.down, env.net.id, env.net.bridge)
    assert not netns_exists(env.ns)
    assert not host_link_exists(names.bridge_end_name(env.dhcp.id))
    assert host_link_exists(env.net.bridge)


@pytest.mark.parametrize("gateway", [False, True], ids=["isolated", "with-gateway"])
def test_dhclient_and_udhcpc_get_the_port_ip_and_metadata_route(cleanup, gateway):
    env = Env(cleanup, gateway=gateway, prefix="10.77.3" if gateway else "10.77.4")
    p = env.subnet.cidr.rsplit(".", 1)[0]
    port = add_port(env.net, [(env.subnet, f"{p}.10")], mac="fa:16:3e:00:0d:10")
    _in_session(dhcp_port.up, env.net, env.dhcp)
    assert control.start(env.config, env.net, env.dhcp) != []
    assert control.start(env.config, env.net, env.dhcp) == []
    assert control.status(env.config, env.net.id).running

    inst = env.plug_instance(port)
    gw = env.subnet.gateway_ip
    assert env.clients.dhclient(inst), env.clients.output("dhclient")
    assert_lease(inst, f"{p}.10", f"{p}.2", gw)

    env.clients.flush(inst)
    assert ns_ipv4(inst, "eth0") == []
    assert env.clients.udhcpc(inst)
    assert_lease(inst, f"{p}.10", f"{p}.2", gw)

    assert control.stop(env.config, env.net.id) is True
    assert control.stop(env.config, env.net.id) is False
    assert processes_matching("dnsmasq", env.net.id) == []


def test_reload_adds_and_removes_ports_then_stop_and_down_leave_nothing(cleanup):
    env = Env(cleanup, gateway=False, prefix="10.77.5")
    port_a = add_port(env.net, [(env.subnet, "10.77.5.20")], mac="fa:16:3e:00:0d:20")
    assert _in_session(dhcp_port.up, env.net, env.dhcp)
    assert _in_session(dhcp_port.up, env.net, env.dhcp) == []
    assert control.start(env.config, env.net, env.dhcp)
    log = control.paths(env.config, env.net.id).log
    inst_a = env.plug_instance(port_a)
    assert env.clients.udhcpc(inst_a)
    assert_lease(inst_a, "10.77.5.20", "10.77.5.2", None)

    # nothing changed: no SIGHUP, no file written
    assert control.reload(env.config, env.net, env.dhcp) == []

    # a port added after start gets its lease after reload
    port_b = add_port(env.net, [(env.subnet, "10.77.5.21")], mac="fa:16:3e:00:0d:21")
    inst_b = env.plug_instance(port_b)
    offset = log.stat().st_size
    changed = control.reload(env.config, env.net, env.dhcp)
    assert "host" in changed and "addn_hosts" in changed and "leases" not in changed
    wait_for(lambda: "read " in log.read_text()[offset:], 10, "dnsmasq re-reading its files")
    assert env.clients.udhcpc(inst_b)
    assert_lease(inst_b, "10.77.5.21", "10.77.5.2", None)

    # a deleted port no longer gets one
    env.net.ports.remove(port_a)
    offset = log.stat().st_size
    assert "host" in control.reload(env.config, env.net, env.dhcp)
    wait_for(lambda: "read " in log.read_text()[offset:], 10, "dnsmasq re-reading its files")
    env.clients.flush(inst_a)
    assert not env.clients.udhcpc(inst_a, tries=3)
    assert ns_ipv4(inst_a, "eth0") == []

    # teardown through our own functions: nothing of the network is left
    assert control.stop(env.config, env.net.id)
    assert processes_matching("dnsmasq", env.net.id) == []
    assert _in_session(plug.unplug, port_b.id, inst_b)
    assert not netns_exists(inst_b) and not host_link_exists(names.tap_name(port_b.id))
    assert _in_session(plug.unplug, port_b.id, inst_b) == []
    _in_session(plug.unplug, port_a.id, inst_a)
    _in_session(dhcp_port.down, env.net.id, env.net.bridge)
    assert not netns_exists(env.ns)
    assert not link_exists(names.bridge_end_name(env.dhcp.id))
    assert not host_link_exists(env.net.bridge)
    assert env.ns not in dhcp_port.list_namespaces()


def test_ipv6_subnet_beside_ipv4_dnsmasq_serves_both(cleanup):
    env = Env(cleanup, gateway=False, prefix="10.77.6")
    sub6 = add_subnet(env.net, "fd00:77:6::/64")
    env.dhcp.fixed_ips.append(model.FixedIP(sub6.id, "fd00:77:6::2"))
    tap = names.tap_name(env.dhcp.id)
    texts = [a.text for a in _in_session(dhcp_port.up, env.net, env.dhcp)]
    assert f"add fe80::a9fe:a9fe/128 to {tap} (nodad)" in texts
    v6 = sh("ip", "-6", "-o", "addr", "show", "dev", tap, netns=env.ns).stdout
    ours = [l for l in v6.splitlines() if "fe80::a9fe:a9fe/128" in l or "fd00:77:6::2/64" in l]
    assert len(ours) == 2 and not any("tentative" in l for l in ours), v6
    assert _in_session(dhcp_port.up, env.net, env.dhcp) == []
    log = control.paths(env.config, env.net.id).log
    assert control.start(env.config, env.net, env.dhcp)
    text = wait_for(lambda: (lambda t: t if "DHCPv6" in t else None)(log.read_text()), 10,
                    "dnsmasq announcing its DHCPv6 range")
    assert "static leases only on fd00:77:6::" in text
    host = control.paths(env.config, env.net.id).host.read_text()
    assert "fd00:77:6::2" not in host  # the DHCP port's own address: no host line (Neutron)

    # the IPv6 subnet goes: its addresses go too, the IPv4 ones stay
    env.net.subnets.remove(sub6)
    env.dhcp.fixed_ips = [f for f in env.dhcp.fixed_ips if f.subnet_id != sub6.id]
    texts = [a.text for a in _in_session(dhcp_port.up, env.net, env.dhcp)]
    assert sorted(texts) == sorted([f"remove stale fd00:77:6::2/64 from {tap}",
                                    f"remove stale fe80::a9fe:a9fe/128 from {tap}"])
    assert control.stop(env.config, env.net.id)
