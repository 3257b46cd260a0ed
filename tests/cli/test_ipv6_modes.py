"""subnet-create --ipv6-address-mode / --ipv6-ra-mode: Neutron's rules, and no IPv6 subnet
that dnsmasq cannot serve (it would stop DHCP for the whole network)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def net(run, cli_db):
    assert run("net-create", "net1").exit_code == 0
    assert run("subnet-create", "net1", "10.0.0.0/24", "--no-gateway").exit_code == 0
    return "net1"


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"])
def test_modes_are_stored_and_shown(run, net, mode):
    r = run("subnet-create", net, "fd00:1::/64", "--ipv6-address-mode", mode,
            "--ipv6-ra-mode", mode, "-f", "json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["ipv6_address_mode"], s["ipv6_ra_mode"]) == (mode, mode)
    shown = json.loads(run("subnet-show", s["id"], "-f", "json").stdout)
    assert shown["ipv6_address_mode"] == mode


def test_an_ipv4_subnet_table_has_no_ipv6_rows(run, net):
    r = run("subnet-show", json.loads(run("subnet-list", "-f", "json").stdout)[0]["id"])
    assert "ipv6" not in r.stdout


@pytest.mark.parametrize("args, words", [
    (["fd00:1::/56"], "dnsmasq serves DHCPv6 only on a /64"),
    (["fd00:1::/56", "--ipv6-address-mode", "dhcpv6-stateful"], "dnsmasq serves DHCPv6 only"),
    (["fd00:1::/56", "--ipv6-address-mode", "slaac"], "EUI-64"),
    (["fd00:1::/80", "--ipv6-ra-mode", "dhcpv6-stateless"], "EUI-64"),
    (["fd00:1::/64", "--ipv6-address-mode", "slaac", "--ipv6-ra-mode", "dhcpv6-stateful"],
     "must be the same"),
    (["10.1.0.0/24", "--ipv6-address-mode", "slaac"], "is IPv4"),
    (["fd00:1::/64", "--ipv6-address-mode", "slaac", "--disable-dhcp"], "--disable-dhcp"),
])
def test_refused_with_exit_2_and_nothing_changed(run, net, db_snapshot, args, words):
    before = db_snapshot()
    r = run("subnet-create", net, *args)
    assert r.exit_code == 2
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert db_snapshot() == before


def test_a_short_prefix_without_dhcp_is_fine(run, net):
    assert run("subnet-create", net, "fd00:1::/56", "--disable-dhcp").exit_code == 0


def test_a_mode_that_is_not_neutrons_is_a_usage_error(run, net):
    r = run("subnet-create", net, "fd00:1::/64", "--ipv6-address-mode", "dhcpv6")
    assert r.exit_code == 2 and "dhcpv6-stateful" in r.stderr


def test_update_keeps_the_rules(run, net, db_snapshot):
    s56 = json.loads(run("subnet-create", net, "fd00:1::/56", "--disable-dhcp", "-f", "json").stdout)
    s64 = json.loads(run("subnet-create", net, "fd00:2::/64", "--ipv6-address-mode", "slaac",
                         "-f", "json").stdout)
    before = db_snapshot()
    r = run("subnet-update", s56["id"], "--enable-dhcp")
    assert r.exit_code == 2 and "dnsmasq serves DHCPv6 only" in r.stderr
    r = run("subnet-update", s64["id"], "--disable-dhcp")
    assert r.exit_code == 2 and "IPv6 modes" in r.stderr
    assert db_snapshot() == before


def test_ports_get_eui64_addresses_on_automatic_subnets(run, net, db_snapshot):
    s6 = json.loads(run("subnet-create", net, "fd00:1::/64", "--ipv6-address-mode", "slaac",
                        "-f", "json").stdout)
    st = json.loads(run("subnet-create", net, "fd00:2::/64", "--ipv6-address-mode",
                        "dhcpv6-stateful", "-f", "json").stdout)
    # Neutron's default: one IPv4, one DHCPv6 address, and the EUI-64 one of every SLAAC subnet
    p = json.loads(run("port-create", net, "--mac-address", "fa:16:3e:00:00:0b", "-f", "json").stdout)
    got = {f["subnet_id"]: f["ip_address"] for f in p["fixed_ips"]}
    assert got[s6["id"]] == "fd00:1::f816:3eff:fe00:b"
    assert got[st["id"]].startswith("fd00:2::") and len(got) == 3
    # naming other subnets still brings the automatic address along
    p = json.loads(run("port-create", net, "--mac-address", "fa:16:3e:00:00:0c",
                       "--fixed-ip", f"subnet={st['id']}", "-f", "json").stdout)
    assert [f["ip_address"] for f in p["fixed_ips"]][-1] == "fd00:1::f816:3eff:fe00:c"
    before = db_snapshot()
    r = run("port-create", net, "--fixed-ip", "ip_address=fd00:1::5")
    assert r.exit_code == 2 and "automatic addresses" in r.stderr, r.stderr
    assert db_snapshot() == before


def test_a_new_automatic_subnet_addresses_the_ports_already_there(run, net):
    p = json.loads(run("port-create", net, "--mac-address", "fa:16:3e:00:00:0d", "-f", "json").stdout)
    assert run("subnet-create", net, "fd00:1::/64", "--ipv6-address-mode", "dhcpv6-stateless").exit_code == 0
    ips = [f["ip_address"] for f in json.loads(run("port-show", p["id"], "-f", "json").stdout)["fixed_ips"]]
    assert ips == [p["fixed_ips"][0]["ip_address"], "fd00:1::f816:3eff:fe00:d"]
    # a DHCPv6-stateful subnet does not: its addresses are asked for
    assert run("subnet-create", net, "fd00:2::/64", "--ipv6-address-mode", "dhcpv6-stateful").exit_code == 0
    assert len(json.loads(run("port-show", p["id"], "-f", "json").stdout)["fixed_ips"]) == 2
