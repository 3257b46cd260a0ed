"""The netns planners are pure: observed state in, actions out (no kernel needed)."""

from __future__ import annotations

import pytest

from mdtool import model
from mdtool.errors import BadInput
from mdtool.netns import names
from mdtool.netns.dhcp_port import Observed, desired_state, plan, plan_down
from mdtool.netns.ip_lib import Address, Link
from mdtool.netns.plug import plan_plug

NET = "01cce415-8e2b-4096-92b5-7acc67163d79"
PORT = "c2ac4ed4-f3aa-4b1c-9d2e-3f4a5b6c7d88"
NS = "qdhcp-" + NET
TAP = "tapc2ac4ed4-f3"
END = "ns-c2ac4ed4-f3"
BR = "brq01cce415-8e"


def network(v6=False):
    subnets = [model.Subnet(id="s4", name="sub1", network_id=NET, cidr="172.17.17.0/24",
                            ip_version=4, gateway_ip=None, enable_dhcp=True)]
    if v6:
        subnets.append(model.Subnet(id="s6", name="sub6", network_id=NET, cidr="fd00:17::/64",
                                    ip_version=6, gateway_ip=None, enable_dhcp=True))
    return model.Network(id=NET, name="net1", bridge=BR, mtu=1450, subnets=subnets)


def dhcp_port(v6=False):
    ips = [model.FixedIP("s4", "172.17.17.1")]
    if v6:
        ips.append(model.FixedIP("s6", "fd00:17::1"))
    return model.Port(id=PORT, name="", network_id=NET, mac_address="FA:16:3E:00:00:01",
                      fixed_ips=ips, device_owner=model.DHCP_OWNER)


def link(name, *, kind="veth", mac="fa:16:3e:00:00:01", mtu=1450, up=True, master=None,
         alias=None, index=2):
    return Link(index=index, ifname=name, kind=kind, mac=mac, mtu=mtu, up=up, master=master,
                alias=alias)


def addr(cidr, scope=0):
    ip, plen = cidr.split("/")
    return Address(ifname=TAP, address=ip, prefixlen=int(plen), family=6 if ":" in ip else 4,
                   scope=scope)


def complete(v6=False) -> Observed:
    addrs = [addr("172.17.17.1/24"), addr("169.254.169.254/32"),
             addr("fe80::f816:3eff:fe00:1/64", scope=253)]  # kernel link-local: ignored
    if v6:
        addrs += [addr("fd00:17::1/64"), addr("fe80::a9fe:a9fe/128", scope=253)]
    tap = link(TAP)
    return Observed(
        namespace=NS, namespace_exists=True, lo_up=True,
        bridge=link(BR, kind="bridge", mac="02:00:00:00:00:09", mtu=1450,
                    alias=names.bridge_alias(NET)),
        bridge_ports=[END], ns_links=[link("lo", kind=None, mac=None), tap], tap=tap,
        tap_addresses=addrs,
        host_ends=[link(END, mac="02:00:00:00:00:0a", master=BR, alias=names.dhcp_end_alias(NET))],
    )


def texts(actions):
    return [a.text for a in actions]


def test_interface_names_fit_ifnamsiz():
    assert names.tap_name(PORT) == TAP and len(TAP) <= 15
    assert names.bridge_end_name(PORT) == END and len(END) <= 15
    assert names.namespace_name(NET) == NS


def test_nothing_there_plans_everything_in_order():
    d = desired_state(network(), dhcp_port())
    assert texts(plan(d, Observed(namespace=NS))) == [
        f"create namespace {NS}",
        f"set lo up in {NS}",
        f"create bridge {BR}",
        f"create veth {TAP} (in {NS}) / {END} (on the host)",
        f"set {TAP} MAC fa:16:3e:00:00:01, MTU 1450, up",
        f"set {END} alias mdtool:dhcp:{NET}, MTU 1450, master {BR}, up",
        f"add 172.17.17.1/24 to {TAP}",
        f"add 169.254.169.254/32 to {TAP}",
    ]


def test_ipv6_adds_the_metadata_link_local_nodad():
    d = desired_state(network(v6=True), dhcp_port(v6=True))
    actions = plan(d, Observed(namespace=NS))
    assert f"add fd00:17::1/64 to {TAP} (nodad)" in texts(actions)
    md = [a for a in actions if a.text.startswith("add fe80::a9fe:a9fe/128")]
    assert md and md[0].args["nodad"] is True


def test_complete_state_plans_nothing():
    assert plan(desired_state(network(), dhcp_port()), complete()) == []
    assert plan(desired_state(network(v6=True), dhcp_port(v6=True)), complete(v6=True)) == []


def test_half_built_is_completed_not_duplicated():
    obs = complete()
    obs.tap_addresses = [a for a in obs.tap_addresses if a.address != "169.254.169.254"]
    obs.tap_addresses.append(addr("10.9.9.9/24"))
    obs.host_ends = [link(END, mac="02:00:00:00:00:0a", master=None, up=False,
                          alias=names.dhcp_end_alias(NET))]
    obs.bridge = None
    assert texts(plan(desired_state(network(), dhcp_port()), obs)) == [
        f"create bridge {BR}",
        f"set {END} master {BR}, up",
        f"add 169.254.169.254/32 to {TAP}",
        f"remove stale 10.9.9.9/24 from {TAP}",
    ]


def test_namespace_without_veth_and_a_leftover_bridge_end():
    obs = complete()
    obs.ns_links, obs.tap, obs.tap_addresses = [link("lo", kind=None)], None, []
    t = texts(plan(desired_state(network(), dhcp_port()), obs))
    assert t[:2] == [f"delete leftover veth end {END}",
                     f"create veth {TAP} (in {NS}) / {END} (on the host)"]
    assert not any(x.startswith("create namespace") for x in t)


def test_ipv6_removed_from_network_drops_the_metadata_v6_address():
    t = texts(plan(desired_state(network(), dhcp_port()), complete(v6=True)))
    assert t == [f"remove stale fd00:17::1/64 from {TAP}",
                 f"remove stale fe80::a9fe:a9fe/128 from {TAP}"]


def test_port_address_on_a_foreign_subnet_is_bad_input():
    port = dhcp_port()
    port.fixed_ips.append(model.FixedIP("elsewhere", "10.0.0.1"))
    with pytest.raises(BadInput):
        desired_state(network(), port)


def test_down_removes_both_ends_and_only_our_idle_bridge():
    t = texts(plan_down(NET, BR, complete()))
    assert t == [f"delete veth {TAP} in {NS}", f"delete namespace {NS}",
                 f"delete veth end {END}", f"delete bridge {BR} (created by mdtool)"]
    # something else on the bridge: keep it
    obs = complete()
    obs.bridge_ports = [END, "tapinstance01"]
    assert f"delete bridge {BR} (created by mdtool)" not in texts(plan_down(NET, BR, obs))
    # a bridge we did not create (libvirt's): keep it
    obs = complete()
    obs.bridge = link(BR, kind="bridge", alias=None)
    assert not any("bridge" in x for x in texts(plan_down(NET, BR, obs)))
    # nothing there: nothing to do
    assert plan_down(NET, BR, Observed(namespace=NS)) == []


def test_plug_plan_and_idempotence():
    net = network()
    port = model.Port(id="9f8e7d6c-5b4a-4321-8765-0fedcba98765", name="", network_id=NET,
                      mac_address="fa:16:3e:00:00:0b")
    host_tap = names.tap_name(port.id)
    bridge = link(BR, kind="bridge", alias=names.bridge_alias(NET))
    t = texts(plan_plug(port, net, "vm1", "eth0", ns_exists=False, ns_links=[],
                        host_links=[bridge]))
    assert t == ["create namespace vm1", "set lo up in vm1",
                 f"create veth eth0 (in vm1) / {host_tap} (on the host)",
                 "set eth0 in vm1 MAC fa:16:3e:00:00:0b, MTU 1450, up",
                 f"set {host_tap} alias mdtool:port:{port.id}, MTU 1450, master {BR}, up"]
    done_ns = [link("lo", kind=None), link("eth0", mac="fa:16:3e:00:00:0b")]
    done_host = [bridge, link(host_tap, mac="02:00:00:00:00:0c", master=BR,
                              alias=names.port_end_alias(port.id))]
    assert plan_plug(port, net, "vm1", "eth0", ns_exists=True, ns_links=done_ns,
                     host_links=done_host) == []


def test_bad_names_are_bad_input():
    net = network()
    net.bridge = "a-bridge-name-too-long"
    with pytest.raises(BadInput):
        desired_state(net, dhcp_port())
    with pytest.raises(BadInput):
        names.normalise_mac("fa:16:3e:00:00")
