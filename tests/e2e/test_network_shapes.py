"""Networks beyond one IPv4 subnet, with real dnsmasq and real DHCP clients: two subnets on
one network (on-link routes between them, Neutron's options 121/249), and a dual-stack
network (DHCPv6 beside DHCPv4: the IPv4 metadata route keeps working)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import http
from tests.e2e.helpers import ns_routes, requires, route_via, sh, unique_id, wait_for

pytestmark = [pytest.mark.e2e, requires("dnsmasq", "dhclient", "udhcpc", "curl")]

METADATA = "169.254.169.254"


def dhcp_ip(site, net: str, cidr: str) -> str:
    """The address of this node's DHCP port on the subnet with ``cidr``."""
    subnets = {s["id"]: s["cidr"] for s in site.json("subnet-list", "--network", net)}
    for p in site.json("port-list", "--network", net):
        port = site.json("port-show", p["id"])
        if port["device_owner"] == "network:dhcp":
            for f in port["fixed_ips"]:
                if subnets[f["subnet_id"]] == cidr:
                    return f["ip_address"]
    raise AssertionError(f"no DHCP port address on {cidr}")


def metadata_uuid(site, inst) -> str:
    status, body = http(site.curl(inst, "/openstack/latest/meta_data.json"))
    assert status == 200, body
    return json.loads(body)["uuid"]


def test_two_subnets_reach_each_other_on_link_and_both_get_metadata(site):
    octet = 100 + int(unique_id()[:2], 16) % 100
    a, b = f"10.{octet}.1.0/24", f"10.{octet}.2.0/24"
    net = site.network("two-subnets", a)
    site.mdtool("subnet-create", net, b, "--no-gateway")
    vm1 = site.instance("vm-a", net, ip=f"10.{octet}.1.10")
    vm2 = site.instance("vm-b", net, ip=f"10.{octet}.2.10")
    site.mdtool("enable-isolated-metadata", net)

    site.boot(vm1, "dhclient")
    site.boot(vm2, "udhcpc")
    for vm, own, other in ((vm1, a, b), (vm2, b, a)):
        routes = ns_routes(vm.namespace)
        assert route_via(routes, METADATA) == dhcp_ip(site, net, own), routes
        # the other subnet is on the same link: a route without a gateway
        onlink = [r for r in routes if r.get("dst") == other]
        assert onlink and "gateway" not in onlink[0], routes
        assert metadata_uuid(site, vm) == vm.id
    # and the instances reach each other directly across the subnets
    sh("busybox", "ping", "-c", "1", "-W", "3", vm2.ip, netns=vm1.namespace)  # udhcpc is busybox


def test_dual_stack_port_gets_both_addresses_and_keeps_ipv4_metadata(site):
    octet = 100 + int(unique_id()[:2], 16) % 100
    v6 = f"fd00:{octet}:6::/64"
    net = site.network("dual-stack", f"10.{octet}.6.0/24")
    s6 = site.mdtool("subnet-create", net, v6, "--ipv6-address-mode", "dhcpv6-stateful",
                     "--ipv6-ra-mode", "dhcpv6-stateful", "-f", "value", "-c", "id").stdout.strip()
    inst = site.json("instance-create", "vm-dual")
    port = site.json("port-create", net, "--device-id", inst["id"],
                     "--fixed-ip", f"ip_address=10.{octet}.6.10", "--fixed-ip", f"subnet={s6}")
    by_version = {(6 if ":" in f["ip_address"] else 4): f["ip_address"] for f in port["fixed_ips"]}
    assert set(by_version) == {4, 6}, port
    from tests.e2e.conftest import Instance
    vm = Instance("vm-dual", inst["id"], port["id"], by_version[4], port["mac_address"],
                  f"i-{port['id'][:8]}")
    site.cleanup.netns(vm.namespace)
    site.cleanup.link("tap" + port["id"][:11])
    site.mdtool("enable-isolated-metadata", net)
    host_file = (site.state_dir / "dhcp" / net / "host").read_text()
    assert f",tag:dhcpv6,host-" in host_file, host_file

    # DHCPv4 is not misled by the IPv6 host line of the same MAC
    site.boot(vm, "udhcpc")
    assert sh("ip", "-4", "-o", "addr", "show", "dev", "eth0", netns=vm.namespace).stdout \
        .count(f"{by_version[4]}/24") == 1
    assert route_via(ns_routes(vm.namespace), METADATA) == dhcp_ip(site, net, f"10.{octet}.6.0/24")
    assert metadata_uuid(site, vm) == vm.id

    # DHCPv6 from the same dnsmasq hands out the port's IPv6 address
    wait_for(lambda: "tentative" not in sh("ip", "-6", "-o", "addr", "show", "dev", "eth0",
                                           "scope", "link", netns=vm.namespace).stdout,
             10, "the instance's link-local address past DAD")
    assert site.dhcp.dhclient(vm.namespace, family=6), site.dhcp.output("dhclient")
    assert f"iaaddr {by_version[6]}" in site.dhcp.leases_file(vm.namespace, family=6).read_text()
    v6_addrs = sh("ip", "-6", "-o", "addr", "show", "dev", "eth0", netns=vm.namespace).stdout
    assert by_version[6] in v6_addrs, v6_addrs

    # the IPv4 metadata path still works with IPv6 configured beside it
    assert metadata_uuid(site, vm) == vm.id


def test_a_dhcpv6_subnet_dnsmasq_refuses_never_stops_ipv4_dhcp(site):
    """A /56 with DHCPv6 is refused by subnet-create; one that is in the registry anyway
    (made before that rule) is left out of dnsmasq's ranges, so dnsmasq starts and the
    IPv4 subnet keeps DHCP and its metadata route."""
    from mdtool.registry import open_registry

    octet = 100 + int(unique_id()[:2], 16) % 100
    net = site.network("short-v6", f"10.{octet}.7.0/24")
    refused = site.mdtool("subnet-create", net, f"fd00:{octet}:7::/56", check=False)
    assert refused.returncode == 2 and "/64" in refused.stderr, refused.stderr
    sid = site.mdtool("subnet-create", net, f"fd00:{octet}:7::/56", "--disable-dhcp",
                      "-f", "value", "-c", "id").stdout.strip()
    reg = open_registry(f"sqlite:///{site.state_dir}/mdtool.db")
    with reg.engine.begin(write=True) as conn:  # as an older mdtool would have left it
        conn.execute("update subnets set enable_dhcp = 1 where id = ?", (sid,))
    reg.engine.dispose()
    vm = site.instance("vm-v4", net, ip=f"10.{octet}.7.10")
    site.mdtool("enable-isolated-metadata", net)
    argv = " ".join(site.json("inspect", net)["dnsmasq"]["cmdline"] or [])
    assert f"subnet-{sid}" not in argv and "--dhcp-range=set:subnet-" in argv, argv
    site.boot(vm, "udhcpc")
    assert metadata_uuid(site, vm) == vm.id
