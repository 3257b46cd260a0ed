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
    files = render(network([subnet(S4, "172.17.17.0/24")], [vm]), dhcp)
    assert files["host"] == (
        "fa:16:3e:00:00:01,host-172-17-17-1.openstacklocal.,172.17.17.1\n"
        "fa:16:3e:aa:bb:cc,host-172-17-17-3.openstacklocal.,172.17.17.3\n"
    )
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,169.254.169.254/32,172.17.17.1\n"
        f"tag:subnet-{S4},249,169.254.169.254/32,172.17.17.1\n"
        f"tag:subnet-{S4},option:router"
    )
    assert files["addn_hosts"] == (
        "172.17.17.1\thost-172-17-17-1.openstacklocal. host-172-17-17-1\n"
        "172.17.17.3\thost-172-17-17-3.openstacklocal. host-172-17-17-3\n"
    )
    assert files["leases"] == (
        "0 fa:16:3e:00:00:01 172.17.17.1 * *\n"
        "0 fa:16:3e:aa:bb:cc 172.17.17.3 * *\n"
    )


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
    # the DHCP port listed among the network's ports is not duplicated
    assert files["host"] == (
        "fa:16:3e:00:00:01,host-192-168-1-2.openstacklocal.,192.168.1.2\n"
        "fa:16:3e:00:00:0b,host-192-168-1-11.openstacklocal.,192.168.1.11\n"
    )
    assert files["addn_hosts"] == (
        "192.168.1.2\thost-192-168-1-2.openstacklocal. host-192-168-1-2\n"
        "192.168.1.11\thost-192-168-1-11.openstacklocal. host-192-168-1-11\n"
    )


def test_a_default_host_route_replaces_the_gateway_route():
    s = subnet(S4, "192.168.1.0/24", gateway="192.168.1.254",
               routes=[("0.0.0.0/0", "192.168.1.250")])
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "192.168.1.2"))
    opts = render(network([s], []), dhcp)["opts"]
    assert opts.splitlines()[0] == (f"tag:subnet-{S4},option:classless-static-route,"
                                    "0.0.0.0/0,192.168.1.250,169.254.169.254/32,192.168.1.2")


def test_two_ipv4_subnets_on_one_network():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), (S4B, "10.1.0.2"))
    vm = port("p1", "fa:16:3e:00:00:0c", (S4, "10.0.0.12"), (S4B, "10.1.0.12"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S4B, "10.1.0.0/24", gateway="10.1.0.1")], [vm])
    files = render(net, dhcp)
    assert files["host"] == (
        "fa:16:3e:00:00:01,host-10-0-0-2.openstacklocal.,10.0.0.2\n"
        "fa:16:3e:00:00:0c,host-10-0-0-12.openstacklocal.,10.0.0.12\n"
        "fa:16:3e:00:00:01,host-10-1-0-2.openstacklocal.,10.1.0.2\n"
        "fa:16:3e:00:00:0c,host-10-1-0-12.openstacklocal.,10.1.0.12\n"
    )
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},249,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},option:router\n"
        f"tag:subnet-{S4B},option:classless-static-route,169.254.169.254/32,10.1.0.2,0.0.0.0/0,10.1.0.1\n"
        f"tag:subnet-{S4B},249,169.254.169.254/32,10.1.0.2,0.0.0.0/0,10.1.0.1\n"
        f"tag:subnet-{S4B},option:router,10.1.0.1"
    )
    assert files["addn_hosts"] == (
        "10.0.0.2\thost-10-0-0-2.openstacklocal. host-10-0-0-2\n"
        "10.0.0.12\thost-10-0-0-12.openstacklocal. host-10-0-0-12\n"
        "10.1.0.2\thost-10-1-0-2.openstacklocal. host-10-1-0-2\n"
        "10.1.0.12\thost-10-1-0-12.openstacklocal. host-10-1-0-12\n"
    )


def test_ipv6_subnet_beside_ipv4():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"), (S6, "fd00:1::2"))
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "10.0.0.11"), (S6, "fd00:1::b"))
    net = network([subnet(S4, "10.0.0.0/24"),
                   subnet(S6, "fd00:1::/64", version=6, dns=["fd00:1::53"])], [vm])
    files = render(net, dhcp)
    assert files["host"] == (
        "fa:16:3e:00:00:01,host-10-0-0-2.openstacklocal.,10.0.0.2\n"
        "fa:16:3e:00:00:0b,host-10-0-0-11.openstacklocal.,10.0.0.11\n"
        "fa:16:3e:00:00:01,host-fd00-1--2.openstacklocal.,[fd00:1::2]\n"
        "fa:16:3e:00:00:0b,host-fd00-1--b.openstacklocal.,[fd00:1::b]\n"
    )
    # no option 121 for IPv6 subnets
    assert files["opts"] == (
        f"tag:subnet-{S4},option:classless-static-route,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},249,169.254.169.254/32,10.0.0.2\n"
        f"tag:subnet-{S4},option:router\n"
        f"tag:subnet-{S6},option6:dns-server,[fd00:1::53]"
    )
    assert files["addn_hosts"] == (
        "10.0.0.2\thost-10-0-0-2.openstacklocal. host-10-0-0-2\n"
        "10.0.0.11\thost-10-0-0-11.openstacklocal. host-10-0-0-11\n"
        "fd00:1::2\thost-fd00-1--2.openstacklocal. host-fd00-1--2\n"
        "fd00:1::b\thost-fd00-1--b.openstacklocal. host-fd00-1--b\n"
    )
    # the leases seed is IPv4 only (dnsmasq's DHCPv6 lease lines need a DUID)
    assert files["leases"] == (
        "0 fa:16:3e:00:00:01 10.0.0.2 * *\n"
        "0 fa:16:3e:00:00:0b 10.0.0.11 * *\n"
    )


def test_subnets_without_dhcp_are_left_out():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    vm = port("p1", "fa:16:3e:00:00:0b", (S4, "10.0.0.11"), (S4B, "10.1.0.11"))
    net = network([subnet(S4, "10.0.0.0/24"), subnet(S4B, "10.1.0.0/24", dhcp=False)], [vm])
    files = render(net, dhcp)
    assert "10.1.0.11" not in files["host"] + files["addn_hosts"] + files["leases"]
    assert S4B not in files["opts"]


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
        "--bind-interfaces", "--interface=tapc2ac4ed4-f3", "--except-interface=lo",
        f"--dhcp-range=set:subnet-{S4},10.0.0.0,static,255.255.255.0,86400s",
        f"--dhcp-range=set:subnet-{S6},fd00:1::,static,64,86400s",
        "--dhcp-lease-max=16777216", "--domain=openstacklocal",
        "--dhcp-option-force=option:mtu,1450", "--server=192.0.2.53",
        "--conf-file=/dev/null", "--keep-in-foreground", "--dhcp-authoritative",
        f"--log-facility=/var/lib/mdtool/log/dnsmasq-{NET}.log",
    ]


def test_command_line_without_mtu_or_servers():
    dhcp = port(DHCP_PORT, "fa:16:3e:00:00:01", (S4, "10.0.0.2"))
    net = network([subnet(S4, "10.0.0.0/24")], [], mtu=0)
    paths = Paths.in_dir(Path("/s/dhcp/x"), Path("/s/log/x.log"))
    argv = command_line(net, dhcp, paths, dns_domain="example.org.", lease_duration=600,
                        lease_max=10, dns_servers=[])
    assert not any(a.startswith(("--dhcp-option-force", "--server")) for a in argv)
    assert "--domain=example.org" in argv


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
