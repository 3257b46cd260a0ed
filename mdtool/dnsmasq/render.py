"""dnsmasq's files and command line for one network, rendered purely from the model.

Python shapes the data (which addresses, which routes, in which order); the Jinja
templates in ``templates/dnsmasq/`` own every character of the output, Neutron's formats.

The command line comes from a template too (``cmdline.j2``), one argument per line: an
operator can adjust it like the other files, and since each line is exactly one argv
element there is no shell quoting or word splitting to get wrong.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from mdtool import model
from mdtool.netns import names
from mdtool.templates import render

FILES = ("host", "opts", "addn_hosts", "leases")


@dataclass(frozen=True)
class Paths:
    host: Path
    opts: Path
    addn_hosts: Path
    leases: Path
    pid: Path
    log: Path

    @classmethod
    def in_dir(cls, dhcp_dir: Path, log: Path) -> "Paths":
        d = Path(dhcp_dir)
        return cls(host=d / "host", opts=d / "opts", addn_hosts=d / "addn_hosts",
                   leases=d / "leases", pid=d / "pid", log=Path(log))


@dataclass(frozen=True)
class HostEntry:
    mac: str
    ip: str
    version: int
    hostname: str
    fqdn: str

    @property
    def ip_field(self) -> str:
        return f"[{self.ip}]" if self.version == 6 else self.ip


@dataclass(frozen=True)
class SubnetOptions:
    id: str
    version: int
    dns_servers: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]  # (destination cidr, nexthop)
    gateway: str | None


@dataclass(frozen=True)
class DhcpRange:
    subnet_id: str
    network_address: str
    mask: str  # dotted netmask for IPv4, prefix length for IPv6 (dnsmasq's syntax)


def _domain(dns_domain: str) -> str:
    return dns_domain.strip().strip(".")


def _dhcp_subnets(network: model.Network) -> dict[str, model.Subnet]:
    return {s.id: s for s in network.subnets if s.enable_dhcp}


def _ip_sort_key(entry: HostEntry):
    return (entry.version, int(ipaddress.ip_address(entry.ip)), entry.mac)


def host_entries(network: model.Network, dhcp_port: model.Port, dns_domain: str) -> list[HostEntry]:
    """One entry per address on a DHCP-enabled subnet, the DHCP port's own included
    (Neutron does so too: its name resolves), sorted by address for stable files."""
    subnets = _dhcp_subnets(network)
    ports = list(network.ports)
    if not any(p.id == dhcp_port.id for p in ports):
        ports.append(dhcp_port)
    domain = _domain(dns_domain)
    entries: dict[tuple[str, str], HostEntry] = {}
    for port in ports:
        mac = names.normalise_mac(port.mac_address)
        for fip in port.fixed_ips:
            if fip.subnet_id not in subnets:
                continue
            ip = ipaddress.ip_address(fip.ip_address)
            hostname = "host-" + str(ip).replace(".", "-").replace(":", "-")
            fqdn = f"{hostname}.{domain}." if domain else f"{hostname}."
            entries[(mac, str(ip))] = HostEntry(mac, str(ip), ip.version, hostname, fqdn)
    return sorted(entries.values(), key=_ip_sort_key)


def subnet_options(network: model.Network, dhcp_port: model.Port) -> list[SubnetOptions]:
    """Per DHCP-enabled subnet: DNS servers, classless routes (IPv4), gateway."""
    port_ips = {f.subnet_id: f.ip_address for f in dhcp_port.fixed_ips}
    out = []
    for s in network.subnets:
        if not s.enable_dhcp:
            continue
        if s.ip_version == 6:
            out.append(SubnetOptions(s.id, 6, tuple(f"[{d}]" for d in s.dns_nameservers), (), None))
            continue
        routes = [(r.destination, r.nexthop) for r in s.host_routes]
        if s.id in port_ips:
            routes.append((model.METADATA_IPV4 + "/32", port_ips[s.id]))
        # RFC 3442: a client that gets option 121 ignores option 3, so the default route
        # must be in the list too -- unless a host route already is one.
        if s.gateway_ip and not any(ipaddress.ip_network(d, strict=False).prefixlen == 0
                                    for d, _ in routes):
            routes.append(("0.0.0.0/0", s.gateway_ip))
        out.append(SubnetOptions(s.id, 4, tuple(s.dns_nameservers), tuple(routes),
                                 s.gateway_ip or None))
    return out


def dhcp_ranges(network: model.Network) -> list[DhcpRange]:
    out = []
    for s in network.subnets:
        if not s.enable_dhcp:
            continue
        net = ipaddress.ip_network(s.cidr, strict=False)
        mask = str(net.netmask) if net.version == 4 else str(net.prefixlen)
        out.append(DhcpRange(s.id, str(net.network_address), mask))
    return out


def render_files(network: model.Network, dhcp_port: model.Port, *, dns_domain: str,
                 lease_duration: int) -> dict[str, str]:
    """The text of host, opts, addn_hosts and the leases seed (pure)."""
    hosts = host_entries(network, dhcp_port, dns_domain)
    return {
        "host": render("dnsmasq/host.j2", hosts=hosts),
        "opts": render("dnsmasq/opts.j2", subnets=subnet_options(network, dhcp_port)),
        "addn_hosts": render("dnsmasq/addn_hosts.j2", hosts=hosts),
        "leases": render("dnsmasq/leases.j2", hosts=hosts, lease_duration=lease_duration),
    }


def command_line(network: model.Network, dhcp_port: model.Port, paths: Paths, *,
                 dns_domain: str, lease_duration: int, lease_max: int,
                 dns_servers: list[str]) -> list[str]:
    """dnsmasq's argv (pure)."""
    for p in (paths.host, paths.opts, paths.addn_hosts, paths.leases, paths.pid, paths.log):
        if "\n" in str(p):
            raise ValueError(f"path {p!r} contains a newline")
    text = render("dnsmasq/cmdline.j2", paths=paths, interface=names.tap_name(dhcp_port.id),
                  ranges=dhcp_ranges(network), lease_duration=lease_duration,
                  lease_max=lease_max, dns_domain=_domain(dns_domain), mtu=network.mtu or None,
                  dns_servers=list(dns_servers))
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
