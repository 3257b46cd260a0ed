"""dnsmasq's files and argv: mdtool against Neutron's own Dnsmasq, byte for byte.

Each case builds a network with mdtool's CLI, renders it with `mdtool dnsmasq render` and
with ``neutron.agent.linux.dhcp.Dnsmasq`` (tests/interop/drivers/neutron_dnsmasq.py), and
compares host, opts, addn_hosts, leases and the command line. Where mdtool deliberately
differs, docs/openstack.md names the difference and the test asserts exactly it.
"""

from __future__ import annotations

import json

import pytest

from tests.interop.neutron import FILES, Site, render_both, show


@pytest.fixture
def site(tmp_path, monkeypatch):
    return Site(tmp_path, monkeypatch)


def vm(site: Site, net: str, name: str, *fixed_ips: str) -> str:
    site("instance-create", name)
    args = []
    for f in fixed_ips:
        args += ["--fixed-ip", f]
    return site.id("port-create", net, "--device-id", name, *args)


def assert_same_files(site, openstack, net):
    mine, theirs = render_both(site, openstack, net)
    for name in FILES:
        assert mine.files[name] == theirs.files[name], (
            f"{name} differs\nmdtool:\n{mine.files[name]}\nneutron:\n{theirs.files[name]}")
    return mine, theirs


def test_no_gateway(site, openstack):
    site("net-create", "net1")
    s = site.id("subnet-create", "net1", "172.17.17.0/24", "--no-gateway")
    vm(site, "net1", "vm1")
    vm(site, "net1", "vm2", f"subnet={s},ip_address=172.17.17.50")
    assert_same_files(site, openstack, "net1")


def test_gateway_dns_and_host_route(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--gateway", "10.0.0.1",
         "--dns-nameserver", "10.0.0.53", "--dns-nameserver", "192.0.2.53",
         "--host-route", "destination=192.168.0.0/16,nexthop=10.0.0.254")
    vm(site, "net1", "vm1")
    assert_same_files(site, openstack, "net1")


def test_two_subnets(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--no-gateway")
    s2 = site.id("subnet-create", "net1", "10.0.1.0/24", "--gateway", "10.0.1.1")
    site("subnet-create", "net1", "10.0.2.0/24", "--no-gateway")
    vm(site, "net1", "vm1")
    vm(site, "net1", "vm2", f"subnet={s2}")
    assert_same_files(site, openstack, "net1")


def test_dhcp_off_subnet(site, openstack):
    site("net-create", "net1")
    s1 = site.id("subnet-create", "net1", "10.0.0.0/24", "--no-gateway")
    s2 = site.id("subnet-create", "net1", "10.0.9.0/24", "--no-gateway", "--disable-dhcp")
    vm(site, "net1", "vm1", f"subnet={s1}", f"subnet={s2}")
    vm(site, "net1", "vm2", f"subnet={s2}")
    assert_same_files(site, openstack, "net1")


def test_default_host_route_with_gateway(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--gateway", "10.0.0.1",
         "--host-route", "destination=0.0.0.0/0,nexthop=10.0.0.254",
         "--host-route", "destination=192.168.0.0/16,nexthop=10.0.0.253")
    vm(site, "net1", "vm1")
    assert_same_files(site, openstack, "net1")


def test_default_host_route_without_gateway(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--no-gateway",
         "--host-route", "destination=0.0.0.0/0,nexthop=10.0.0.254")
    vm(site, "net1", "vm1")
    assert_same_files(site, openstack, "net1")


def test_dns_any_address_announces_no_dns(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--no-gateway", "--dns-nameserver", "0.0.0.0")
    vm(site, "net1", "vm1")
    mine, _ = assert_same_files(site, openstack, "net1")
    assert mine.files["opts"].splitlines()[0].endswith(",option:dns-server")


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"])
def test_ipv6_modes(site, openstack, mode):
    site("net-create", "net1")
    s4 = site.id("subnet-create", "net1", "10.0.0.0/24", "--no-gateway")
    s6 = site.id("subnet-create", "net1", "2001:db8:1::/64", "--ip-version", "6",
                 "--ipv6-address-mode", mode, "--ipv6-ra-mode", mode,
                 "--dns-nameserver", "2001:db8::53")
    vm(site, "net1", "vm1", f"subnet={s6}")
    vm(site, "net1", "vm2", f"subnet={s4}", f"subnet={s6}")
    mine, theirs = assert_same_files(site, openstack, "net1")
    assert [a for a in mine.argv if a.startswith("--dhcp-range")] == \
        [a for a in theirs.argv if a.startswith("--dhcp-range")]
    if mode != "dhcpv6-stateful":  # automatic addresses: Neutron's IPAM picks them (EUI-64)
        ports = [(f["ip_address"], p["mac_address"]) for p in json.loads(
            site("port-list", "--network", "net1", "-f", "json")) for f in
            json.loads(site("port-show", p["id"], "-f", "json"))["fixed_ips"] if ":" in f["ip_address"]]
        assert len(ports) == 3  # both instances and the DHCP port
        neutron = openstack.run("neutron_eui64", {"ports": [["2001:db8:1::/64", mac] for _, mac in ports]})
        assert [ip for ip, _ in ports] == neutron


def test_ipv6_without_modes(site, openstack):
    site("net-create", "net1")
    s6 = site.id("subnet-create", "net1", "2001:db8:1::/64", "--ip-version", "6")
    vm(site, "net1", "vm1", f"subnet={s6}")
    assert_same_files(site, openstack, "net1")


def test_dual_stack_port(site, openstack):
    site("net-create", "net1")
    s4 = site.id("subnet-create", "net1", "10.0.0.0/24", "--gateway", "10.0.0.1")
    s6 = site.id("subnet-create", "net1", "2001:db8:1::/64", "--ip-version", "6",
                 "--ipv6-address-mode", "dhcpv6-stateful", "--ipv6-ra-mode", "dhcpv6-stateful")
    vm(site, "net1", "vm1", f"subnet={s4}", f"subnet={s6}")
    mine, _ = assert_same_files(site, openstack, "net1")
    v6_lines = [l for l in mine.files["host"].splitlines() if "[" in l]
    assert v6_lines and all(",tag:dhcpv6," in l for l in v6_lines)


def test_hundred_ports(site, openstack):
    site("net-create", "net1")
    site("subnet-create", "net1", "10.1.0.0/22", "--no-gateway")
    for i in range(100):
        site("port-create", "net1", "--name", f"p{(i * 37) % 100:02d}")
    assert_same_files(site, openstack, "net1")


def test_without_dns_integration(tmp_path, monkeypatch, openstack):
    site = Site(tmp_path, monkeypatch, "dns_integration = false\n")
    site("net-create", "net1")
    site("subnet-create", "net1", "10.0.0.0/24", "--no-gateway")
    vm(site, "net1", "vm1")
    mine, _ = assert_same_files(site, openstack, "net1")
    assert ".openstacklocal," in mine.files["host"]


# What mdtool adds to Neutron's argv, at the end (docs/openstack.md, "dnsmasq"): it runs
# dnsmasq itself in the foreground under its process manager, with its own log.
def mdtool_only_args(site) -> list[str]:
    log = site.state_dir / "log" / f"dnsmasq-{site.net_id}.log"
    return ["--keep-in-foreground", "--dhcp-authoritative", f"--log-facility={log}"]


@pytest.mark.parametrize("case", ["v4", "dual", "small", "v6-only", "dns-servers"])
def test_argv(tmp_path, monkeypatch, openstack, case):
    extra = "dnsmasq_dns_servers = 192.0.2.1,192.0.2.2\n" if case == "dns-servers" else ""
    site = Site(tmp_path, monkeypatch, extra)
    site("net-create", "net1", "--mtu", "1450")
    if case != "v6-only":
        site("subnet-create", "net1", "10.0.0.0/28" if case == "small" else "10.0.0.0/24",
             "--no-gateway")
    if case in ("dual", "v6-only"):
        site("subnet-create", "net1", "2001:db8:1::/64", "--ip-version", "6",
             "--ipv6-address-mode", "dhcpv6-stateful", "--ipv6-ra-mode", "dhcpv6-stateful")
        site("subnet-create", "net1", "2001:db8:2::/64", "--ip-version", "6",
             "--ipv6-address-mode", "slaac", "--ipv6-ra-mode", "slaac")
    site.net_id = site.id("net-show", "net1")
    mine, theirs = render_both(site, openstack, "net1")
    assert mine.argv == theirs.argv + mdtool_only_args(site), show(mine) + show(theirs)
