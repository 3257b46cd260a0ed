"""The exact text of dnsmasq's files (Neutron's formats) and its command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtool import model
from mdtool.dnsmasq.render import Paths, command_line, render_files

NET = "0d1c5b5e-7a3c-4d2e-9a61-2b5c7f0e1a11"
S4 = "a507c135-12b9-419c-ab43-ecaa7ca57f83"
S4B = "b2f0d9a4-5c1e-4b7a-8d3f-0e6a9c2b1d44"
S6 = "c6e6e0a1-3b2d-4f5e-8a9b-1c2d3e4f5a66"
DHCP_PORT = "c2ac4ed4-f3aa-4b1c-9d2e-3f4a5b6c7d88"


def subnet(sid, cidr, version=4, gateway=None, dns=(), routes=(), dhcp=True):
    return model.Subnet(id=sid, name="s", network_id=NET, cidr=cidr, ip_version=version,
                        gateway_ip=gateway, enable_dhcp=dhcp, dns_nameservers=list(dns),
                        host_routes=[model.HostRoute(d, n) for d, n in routes])


def port(pid, mac, *ips, owner=model.COMPUTE_OWNER):
    return model.Port(id=pid, name="", network_id=NET, mac_address=mac,
                      fixed_ips=[model.FixedIP(s, ip) for s, ip in ips], device_owner=owner)


def network(subnets, ports, mtu=1500):
    return model.Network(id=NET, name="net1", bridge="brq0d1c5b5e-7a", mtu=mtu,
                         subnets=subnets, ports=ports)


def render(net, dhcp):
    return render_files(net, dhcp, dns_domain="openstacklocal", lease_duration=86400)


def test_isolated_subnet_without_gateway():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "172.17.17.1"), owner=model.DHCP_OWNER)
    vm = port("p1", "FA:16:3E:AA:BB:CC", (S4, "172.17.17.3"))
    files = render(network([subnet(S4, "172.17.17.0/24")], [vm, dhcp]), dhcp)
    # the DHCP port gets no lines (Neutron: port_requires_dhcp_configuration)
    assert files["host"] == "fa:16:3e:aa:bb:cc,host-172-17-17-3.openstacklocal.,172.17.17.3\n"
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,169.254.169.254/32,172.17.17.1\n"
        f"tag:subnet-{S4},249,169.254.169.254/32,172.17.17.1\n"
        f"tag:subnet-{S4},option:router"
    )
    assert files["addn_hosts"] == "172.17.17.3\thost-172-17-17-3.openstacklocal. host-172-17-17-3\n"
    assert files["leases"] == "0 fa:16:3e:aa:bb:cc 172.17.17.3 * *\n"


def test_gateway_dns_server_and_host_route():
    s = subnet(S4, "192.168.1.0/24", gateway="192.168.1.254", dns=["8.8.8.8", "9.9.9.9"],
               routes=[("10.20.0.0/16", "192.168.1.253")])
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "192.168.1.2"), owner=model.DHCP_OWNER)
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "192.168.1.11"))
    files = render(network([s], [vm, dhcp]), dhcp)
    routes = "10.20.0.0/16,192.168.1.253,169.254.169.254/32,192.168.1.2,0.0.0.0/0,192.168.1.254"
    assert files["opts"] == (
        f"tag:subnet-{S4},option:dns-server,8.8.8.8,9.9.9.9\n"
        f"tag:subnet-{S4},option:classless-static-route,{routes}\n"
        f"tag:subnet-{S4},249,{routes}\n"
        f"tag:subnet-{S4},option:router,192.168.1.254"
    )
    assert files["host"] == "fa:16:3e:00:00:0b,host-192-168-1-11.openstacklocal.,192.168.1.11\n"
    assert files["addn_hosts"] == (
        "192.168.1.11\thost-192-168-1-11.openstacklocal. host-192-168-1-11\n")


def test_a_default_host_route_gives_way_to_the_gateway():
    s = subnet(S4, "192.168.1.0/24", gateway="192.168.1.254",
               routes=[("0.0.0.0/0", "192.168.1.250")])
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "192.168.1.2"))
    opts = render(network([s], []), dhcp)["opts"]
    assert opts.splitlines()[0] == (f"tag:subnet-{S4},option:classless-static-route,"
                                    "169.254.169.254/32,192.168.1.2,0.0.0.0/0,192.168.1.254")
    assert opts.splitlines()[2] == f"tag:subnet-{S4},option:router,192.168.1.254"


def test_a_default_host_route_stands_in_for_a_missing_gateway():
    s = subnet(S4, "192.168.1.0/24", routes=[("0.0.0.0/0", "192.168.1.250")])
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "192.168.1.2"))
    opts = render(network([s], []), dhcp)["opts"]
    assert opts.splitlines()[0] == (f"tag:subnet-{S4},option:classless-static-route,"
                                    "169.254.169.254/32,192.168.1.2,0.0.0.0/0,192.168.1.250")
    assert opts.splitlines()[2] == f"tag:subnet-{S4},option:router,192.168.1.250"


def test_dns_any_address_announces_no_dns_server():
    s = subnet(S4, "192.168.1.0/24", dns=["0.0.0.0"])
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "192.168.1.2"))
    opts = render(network([s], []), dhcp)["opts"]
    assert opts.splitlines()[0] == f"tag:subnet-{S4},option:dns-server"


def test_two_ipv4_subnets_on_one_network():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), (S4B, "10.1.0.2"))
    vm = port("p1", "fa:16:3e:00:00:0c", (S4, "10.0.0.12"), (S4B, "10.1.0.12"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S4B, "10.1.0.0/24", gateway="10.1.0.1")], [vm])
    files = render(net, dhcp)
    assert files["host"] == (
        "fa:16:3e:00:00:0c,host-10-0-0-12.openstacklocal.,10.0.0.12\n"
        "fa:16:3e:00:00:0c,host-10-1-0-12.openstacklocal.,10.1.0.12\n"
    )
    # each subnet reaches the other on-link (0.0.0.0 as next hop), first in the list
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,10.1.0.0/24,0.0.0.0,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},249,10.1.0.0/24,0.0.0.0,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},option:router\n"
        f"tag:subnet-{S4B},option:classless-static-route,10.0.0.0/24,0.0.0.0,169.254.169.254/32,10.1.0.2,0.0.0.0/0,10.1.0.1\n"
        f"tag:subnet-{S4B},249,10.0.0.0/24,0.0.0.0,169.254.169.254/32,10.1.0.2,0.0.0.0/0,10.1.0.1\n"
        f"tag:subnet-{S4B},option:router,10.1.0.1"
    )
    assert files["addn_hosts"] == (
        "10.0.0.12\thost-10-0-0-12.openstacklocal. host-10-0-0-12\n"
        "10.1.0.12\thost-10-1-0-12.openstacklocal. host-10-1-0-12\n"
    )


def test_ipv6_subnet_beside_ipv4():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), (S6, "fd00:1::2"))
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "10.0.0.11"), (S6, "fd00:1::b"))
    net = network([subnet(S4, "10.0.0.0/24"),
                   subnet(S6, "fd00:1::/64", version=6, dns=["fd00:1::53"])], [vm])
    files = render(net, dhcp)
    # IPv6 host lines are for DHCPv6 only: a DHCPv4 request never matches them
    assert files["host"] == (
        "fa:16:3e:00:00:0b,host-10-0-0-11.openstacklocal.,10.0.0.11\n"
        "fa:16:3e:00:00:0b,tag:dhcpv6,host-fd00-1--b.openstacklocal.,[fd00:1::b]\n"
    )
    # no option 121 for IPv6 subnets; the domain searched
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},249,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},option:router\n"
        f"tag:subnet-{S6},option6:dns-server,[fd00:1::53]\n"
        f"tag:subnet-{S6},option6:domain-search,openstacklocal"
    )
    assert files["addn_hosts"] == (
        "10.0.0.11\thost-10-0-0-11.openstacklocal. host-10-0-0-11\n"
        "fd00:1::b\thost-fd00-1--b.openstacklocal. host-fd00-1--b\n"
    )
    # the leases seed is IPv4 only (dnsmasq's DHCPv6 lease lines need a DUID)
    assert files["leases"] == "0 fa:16:3e:00:00:0b 10.0.0.11 * *\n"


def test_a_subnet_without_dhcp_is_named_and_reached_but_not_served():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "10.0.0.11"), (S4B, "10.1.0.11"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S4B, "10.1.0.0/24", dhcp=False)], [vm])
    files = render(net, dhcp)
    assert "10.1.0.11" not in files["host"] + files["leases"]
    assert "10.1.0.11\thost-10-1-0-11.openstacklocal. host-10-1-0-11\n" in files["addn_hosts"]
    assert f"tag:subnet-{S4B}" not in files["opts"]
    assert files["opts"].splitlines()[0] == (
        f"tag:subnet-{S4},option:classless-static-route,10.1.0.0/24,0.0.0.0,169.254.169.254/32,10.0.0.2")


def test_ports_keep_their_order_and_stateless_ipv6_comes_first():
    s6 = subnet(S6, "fd00:1::/64", version=6)
    s6.ipv6_address_mode = model.IPV6_DHCP_STATELESS
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), owner=model.DHCP_OWNER)
    vm9 = port("p9", "fa:16:3e:00:00:09", (S4, "10.0.0.9"), (S6, "fd00:1::9"))
    vm3 = port("p3", "fa:16:3e:00:00:03", (S4, "10.0.0.3"))
    files = render(network([subnet(S4, "10.0.0.0/24"), s6], [vm9, dhcp, vm3]), dhcp)
    assert files["addn_hosts"] == (
        "fd00:1::9\thost-fd00-1--9.openstacklocal. host-fd00-1--9\n"
        "10.0.0.9\thost-10-0-0-9.openstacklocal. host-10-0-0-9\n"
        "10.0.0.3\thost-10-0-0-3.openstacklocal. host-10-0-0-3\n"
    )
    # a stateless address is the client's own: no host line for it
    assert "fd00" not in files["host"]


def test_fqdn_without_dns_integration_has_no_trailing_dot():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "10.0.0.11"))
    files = render_files(network([subnet(S4, "10.0.0.0/24")], [vm]), dhcp,
                         dns_domain="openstacklocal", lease_duration=86400, dns_integration=False)
    assert files["host"] == "fa:16:3e:00:00:0b,host-10-0-0-11.openstacklocal,10.0.0.11\n"


def test_several_dhcp_ports_are_the_dns_servers_of_a_subnet_without_any():
    dhcp1 = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), owner=model.DHCP_OWNER)
    dhcp2 = port("d2", "fa:16:3e:00:00:02", (S4, "10.0.0.3"), owner=model.DHCP_OWNER)
    opts = render(network([subnet(S4, "10.0.0.0/24")], [dhcp1, dhcp2]), dhcp1)["opts"]
    assert opts.splitlines()[-1] == f"tag:subnet-{S4},option:dns-server,10.0.0.2,10.0.0.3"


def test_command_line():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), (S6, "fd00:1::2"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S6, "fd00:1::/64", version=6)], [],
                  mtu=1450)
    d = f"/var/lib/mdtool/dhcp/{NET}"
    paths = Paths.in_dir(Path(d), Path(f"/var/lib/mdtool/log/dnsmasq-{NET}.log"))
    argv = command_line(net, dhcp, paths, dns_domain="openstacklocal", lease_duration=86400,
                        lease_max=16777216, dns_servers=["192.0.2.53"])
    assert argv == [
        "dnsmasq", "--no-hosts", "--no-resolv",
        f"--pid-file={d}/pid", f"--dhcp-hostsfile={d}/host", f"--addn-hosts={d}/addn_hosts",
        f"--dhcp-optsfile={d}/opts", f"--dhcp-leasefile={d}/leases",
        "--dhcp-match=set:ipxe,175", "--dhcp-userclass=set:ipxe6,iPXE",
        "--local-service", "--bind-dynamic",
        f"--dhcp-range=set:subnet-{S4},10.0.0.0,static,255.255.255.0,86400s",
        f"--dhcp-range=set:subnet-{S6},fd00:1::,static,64,86400s",
        "--dhcp-option-force=option:mtu,1450", "--dhcp-lease-max=16777216",
        "--conf-file=/dev/null", "--server=192.0.2.53", "--domain=openstacklocal",
        "--keep-in-foreground", "--dhcp-authoritative",
        f"--log-facility=/var/lib/mdtool/log/dnsmasq-{NET}.log",
    ]


def test_command_line_without_mtu_or_servers():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    net = network([subnet(S4, "10.0.0.0/24")], [], mtu=0)
    paths = Paths.in_dir(Path("/s/dhcp/x"), Path("/s/log/x.log"))
    argv = command_line(net, dhcp, paths, dns_domain="example.org", lease_duration=600,
                        lease_max=10, dns_servers=[])
    assert not any(a.startswith(("--dhcp-option-force", "--server")) for a in argv)
    assert "--domain=example.org" in argv
    assert "--dhcp-lease-max=10" in argv


def test_lease_max_is_capped_to_the_addresses_served():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    net = network([subnet(S4, "10.0.0.0/28"), subnet(S4B, "10.1.0.0/24", dhcp=False)], [])
    paths = Paths.in_dir(Path("/s/dhcp/x"), Path("/s/log/x.log"))
    argv = command_line(net, dhcp, paths, dns_domain="openstacklocal", lease_duration=600,
                        lease_max=16777216, dns_servers=[])
    assert "--dhcp-lease-max=16" in argv


def test_an_ipv6_range_dnsmasq_refuses_is_left_out():
    """A /56 with DHCPv6 left from before subnet-create refused it: dnsmasq would not start
    at all ("prefix length must be at least 64"), so the range is skipped, as Neutron does."""
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S6, "fd00:1::/56", version=6)], [])
    paths = Paths.in_dir(Path("/s/dhcp/x"), Path("/s/log/x.log"))
    argv = command_line(net, dhcp, paths, dns_domain="openstacklocal", lease_duration=600,
                        lease_max=16777216, dns_servers=[])
    assert [a for a in argv if a.startswith("--dhcp-range")] == [
        f"--dhcp-range=set:subnet-{S4},10.0.0.0,static,255.255.255.0,600s"]
    assert "--dhcp-lease-max=256" in argv


def test_bad_mac_is_bad_input():
    from mdtool.errors import BadInput
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    vm = port("p1", "not-a-mac", (S4, "10.0.0.11"))
    with pytest.raises(BadInput):
        render(network([subnet(S4, "10.0.0.0/24")], [vm]), dhcp)


def test_templates_refuse_unknown_variables():
    import jinja2
    from mdtool.templates import render as render_template
    with pytest.raises(jinja2.UndefinedError):
        render_template("dnsmasq/host.j2")


def test_dnsmasq_files_are_replaced_atomically_without_a_disk_flush(tmp_path, monkeypatch):
    """Every file is rendered again by each enable and resync: an fsync per file (four per
    new network) was a tenth of enable --all's wall time."""
    import os

    from mdtool.dnsmasq import control

    def no_flush(fd):
        raise AssertionError("fsync of a file rendered again by every enable")
    monkeypatch.setattr(os, "fsync", no_flush)
    p = Paths.in_dir(tmp_path / "dhcp", tmp_path / "log" / "dnsmasq.log")
    control._write(p, "host", "fa:16:3e:00:00:01,10.0.0.5\n")
    assert p.host.read_text() == "fa:16:3e:00:00:01,10.0.0.5\n"
    assert p.host.stat().st_mode & 0o777 == 0o644
    assert [f.name for f in p.host.parent.iterdir()] == ["host"]  # no temp file left
