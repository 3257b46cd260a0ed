"""Port security on the bridge, against real instances: the secondary-IP trick, ARP
spoofing and a rogue DHCP server get nothing of a neighbour's; ``--no-port-security``
really turns the rules off for that one port (the same attacks then work).

The nft listing and the packets are checked with nft, ip and raw sockets of their own,
not with mdtool's code.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import http
from tests.e2e.test_isolation import two_instances
from tests.e2e.helpers import ns_ipv4, processes_matching, requires, wait_for, wait_for_log

pytestmark = [
    requires("nft", "dnsmasq", "udhcpc", "curl"),
    pytest.mark.timeout(300),
]

USER_DATA = "/openstack/latest/user_data"

# Sent from inside an instance namespace: an ARP reply claiming IP $2 is at this port's MAC,
# broadcast (gratuitous) and unicast to $4/$5 (the DHCP port), as an ARP spoofer does.
ARP_SPOOF = r"""
import socket, sys
ifname, claimed_ip, mac, peer_mac, peer_ip = sys.argv[1:6]
m = lambda s: bytes.fromhex(s.replace(":", ""))
ip = socket.inet_aton
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for dst, tha, tpa in ((b"\xff" * 6, b"\xff" * 6, ip(claimed_ip)), (m(peer_mac), m(peer_mac), ip(peer_ip))):
    arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + m(mac) + ip(claimed_ip) + tha + tpa
    for _ in range(3):
        s.send(dst + m(mac) + b"\x08\x06" + arp)
"""


def nft_table(net: str) -> str | None:
    res = subprocess.run(["nft", "list", "table", "bridge", f"mdtool-{net}"], capture_output=True,
                         text=True)
    return res.stdout if res.returncode == 0 else None


def chain(table: str, port_id: str) -> list[str] | None:
    """The rules of a port's chain, one string each (None: no such chain)."""
    head = f"\tchain port-{port_id} {{\n"
    if head not in table:
        return None
    return [line.strip() for line in table.split(head, 1)[1].split("\t}\n", 1)[0].splitlines()]


def verdict(report: dict) -> str:
    return next(c["status"] for c in report["checks"] if c["name"] == "port security rules")


def dhcp_port(site, net: str) -> dict:
    return next(p for p in site.json("port-list", "--network", net)
                if p["device_owner"] == "network:dhcp")


def neighbour_mac(net: str, ip: str) -> str | None:
    out = subprocess.run(["ip", "netns", "exec", f"qdhcp-{net}", "ip", "-j", "neigh", "show", ip],
                         capture_output=True, text=True).stdout
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr") if entries else None


def spoof_arp(vm, claimed_ip: str, dhcp: dict) -> None:
    subprocess.run(["ip", "netns", "exec", vm.namespace, sys.executable, "-c", ARP_SPOOF, "eth0",
                    claimed_ip, vm.mac, dhcp["mac_address"], dhcp["fixed_ips"][0]["ip_address"]],
                   check=True, capture_output=True, timeout=20)


def steal(site, thief, victim, dhcp: dict) -> tuple[int, str]:
    """The thief poses as the victim: ARP for the victim's IP, then a GET from that IP."""
    spoof_arp(thief, victim.ip, dhcp)
    subprocess.run(["ip", "netns", "exec", thief.namespace, "ip", "neigh", "flush", "dev", "eth0"],
                   check=True)
    return http(site.curl(thief, USER_DATA, "--interface", victim.ip, "-m", "2"))


def test_secondary_ip_and_arp_spoofing_get_nothing_of_the_neighbours(site, tmp_path):
    net = site.network("ps-net", "10.88.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    (tmp_path / "a").write_text("secret of a")
    (tmp_path / "b").write_text("data of b")
    a = site.instance("vm-a", net, "--user-data", tmp_path / "a")
    b = site.instance("vm-b", net, "--user-data", tmp_path / "b")
    site.mdtool("dnsmasq", "reload", net)
    site.boot(a)
    site.boot(b)
    dhcp = dhcp_port(site, net)

    # the rules of both ports are in the network's table, as the registry says
    table = nft_table(net)
    assert table is not None
    for vm in (a, b):
        rules = chain(table, vm.port_id)
        assert rules[0] == f"ether saddr != {vm.mac} drop"
        assert f"arp saddr ip {vm.ip} accept" in rules and f"ip saddr {vm.ip} accept" in rules
        assert rules[-1] == "drop"
        assert f'iifname "tap{vm.port_id[:11]}" jump port-{vm.port_id}' in table
    # re-plugging changes nothing
    again = site.mdtool("port-plug", b.port_id, b.namespace)
    assert "nothing to do" in again.stderr and nft_table(net) == table
    # inspect shows the rules and finds them as the registry says; by hand changed, not
    report = json.loads(site.mdtool("inspect", net, "-f", "json", check=False).stdout)
    assert report["port_security"]["rules"] == table and report["port_security"]["current"]
    assert verdict(report) == "ok"
    subprocess.run(["nft", "flush", "chain", "bridge", f"mdtool-{net}", f"port-{a.port_id}"],
                   check=True)
    res = site.mdtool("inspect", net, "-f", "json", check=False)
    assert res.returncode == 1 and verdict(json.loads(res.stdout)) == "fail"
    site.mdtool("port-update", a.port_id, "--port-security")  # what the check says to run
    assert nft_table(net) == table

    assert http(site.curl(a, USER_DATA)) == (200, "secret of a")
    # b takes a's address as a secondary one, and claims it over ARP
    subprocess.run(["ip", "netns", "exec", b.namespace, "ip", "addr", "add", f"{a.ip}/32",
                    "dev", "eth0"], check=True)
    code, body = steal(site, b, a, dhcp)
    assert (code, "secret of a" in body) == (0, False)
    assert neighbour_mac(net, a.ip) != b.mac  # the ARP claims never reached the DHCP port
    # both still get their own (b after its own ARP entry for the DHCP port, which its
    # spoofed packets left unresolved, has failed and been resolved again from its own IP)
    assert http(site.curl(a, USER_DATA)) == (200, "secret of a")
    wait_for(lambda: http(site.curl(b, USER_DATA, "-m", "2")) == (200, "data of b"), 20,
             "b's own user-data")

    # the switch really switches: without port security on b, the same trick works
    off = site.mdtool("port-update", b.port_id, "--no-port-security")
    assert "port security: replace nft table" in off.stderr
    assert chain(nft_table(net), b.port_id) is None and chain(nft_table(net), a.port_id)

    def stolen():
        return steal(site, b, a, dhcp) == (200, "secret of a")
    wait_for(stolen, 15, "b to read a's user-data without port security")
    assert neighbour_mac(net, a.ip) == b.mac

    # on again; unplugging removes a port's rules, the last one the table
    site.mdtool("port-update", b.port_id, "--port-security")
    assert chain(nft_table(net), b.port_id) is not None
    site.mdtool("port-unplug", b.port_id, b.namespace)
    assert chain(nft_table(net), b.port_id) is None and chain(nft_table(net), a.port_id)
    site.mdtool("port-unplug", a.port_id, a.namespace)
    assert nft_table(net) is None


@pytest.fixture
def rogue(tmp_path, site):
    """Start a DHCP server (dnsmasq) inside an instance namespace, offering its own range."""
    procs = []

    def start(vm, first: str, last: str):
        log = tmp_path / f"rogue-{vm.name}.log"
        argv = ["ip", "netns", "exec", vm.namespace, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                "--port=0", "--interface=eth0", "--bind-interfaces", "--except-interface=lo",
                f"--dhcp-range={first},{last},255.255.255.0,120", "--dhcp-authoritative",
                f"--dhcp-leasefile={tmp_path}/rogue-{vm.name}.leases", "--user=root",
                f"--pid-file={tmp_path}/rogue-{vm.name}.pid", f"--log-facility={log}", "--log-dhcp"]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for_log(log, "DHCP, IP range", 10)
        return log

    yield start
    for p in procs:
        p.kill()
        p.wait()
    assert not processes_matching("dnsmasq", str(tmp_path))


def test_a_rogue_dhcp_server_reaches_no_other_instance(site, rogue):
    net, r, c = two_instances(site, "10.89.0.0/24")
    log = rogue(r, "10.89.0.200", "10.89.0.250")

    # mdtool's dnsmasq answers: c gets its own address, whatever the rogue offers
    site.dhcp.flush(c.namespace)
    assert site.dhcp.udhcpc(c.namespace), site.dhcp.output("udhcpc")
    assert ns_ipv4(c.namespace, "eth0") == [f"{c.ip}/24"]
    # with the rogue the only server: it offers (it saw the discovers), none arrives
    site.mdtool("dnsmasq", "stop", net)
    site.dhcp.flush(c.namespace)
    assert not site.dhcp.udhcpc(c.namespace, tries=3)
    assert "DHCPOFFER(eth0) 10.89.0.2" in log.read_text()
    assert ns_ipv4(c.namespace, "eth0") == []

    # without port security on the rogue's port, its offers arrive: c takes its address
    site.mdtool("port-update", r.port_id, "--no-port-security")
    assert site.dhcp.udhcpc(c.namespace), site.dhcp.output("udhcpc")
    [got] = ns_ipv4(c.namespace, "eth0")
    assert got.startswith("10.89.0.2") and got != f"{c.ip}/24"


def eui64_link_local(mac: str) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def curl6(vm, path: str) -> tuple[int, str]:
    return http(subprocess.run(["ip", "netns", "exec", vm.namespace, "curl", "-sS", "-m", "2", "-g",
                                "-w", "\n%{http_code}", f"http://[fe80::a9fe:a9fe%eth0]{path}"],
                               capture_output=True, text=True, timeout=20))


def test_a_neighbours_ipv6_link_local_gets_nothing(site, tmp_path):
    """Over IPv6 the instance is known by the EUI-64 link-local of its MAC: b, with a's
    link-local address instead of its own, gets nothing of a's."""
    net = site.network("ps-v6", "10.90.0.0/24")
    site.mdtool("subnet-create", net, "fd00:90::/64", "--ip-version", "6", "--no-gateway")
    site.mdtool("enable-isolated-metadata", net)
    (tmp_path / "a").write_text("secret of a")
    a = site.instance("vm-a6", net, "--user-data", tmp_path / "a")
    b = site.instance("vm-b6", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(a)
    site.boot(b)
    wait_for(lambda: curl6(a, USER_DATA) == (200, "secret of a"), 20, "a's user-data over IPv6")
    lla = eui64_link_local(a.mac)
    assert f"ip6 saddr {lla} accept" in chain(nft_table(net), a.port_id)
    in_b = ["ip", "netns", "exec", b.namespace, "ip"]
    subprocess.run(in_b + ["-6", "addr", "flush", "dev", "eth0", "scope", "link"], check=True)
    subprocess.run(in_b + ["addr", "add", f"{lla}/64", "dev", "eth0", "nodad"], check=True)
    code, body = curl6(b, USER_DATA)
    assert (code, "secret of a" in body) == (0, False)
    assert curl6(a, USER_DATA) == (200, "secret of a")
    # without port security on b, the same works
    site.mdtool("port-update", b.port_id, "--no-port-security")
    wait_for(lambda: curl6(b, USER_DATA) == (200, "secret of a"), 20,
             "b to read a's user-data over IPv6 without port security")
