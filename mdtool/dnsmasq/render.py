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
    """One address of one port, in Neutron's terms: ``dhcp`` False for an address the
    client configures itself (SLAAC, DHCPv6-stateless), which gets no host line."""
    mac: str
    ip: str
    version: int
    hostname: str
    fqdn: str
    dhcp: bool  # on a DHCP-enabled subnet, and dnsmasq hands this address out
    tag: str    # "tag:dhcpv6," for IPv6 host lines, so DHCPv4 never matches them

    @property
    def ip_field(self) -> str:
        return f"[{self.ip}]" if self.version == 6 else self.ip


@dataclass(frozen=True)
class SubnetOptions:
    id: str
    version: int
    dns_servers: tuple[str, ...] | None  # None: no line; (): a bare option, announce none
    domain_search: str | None            # IPv6: option6:domain-search
    routes: tuple[tuple[str, str], ...]  # IPv4: (destination cidr, nexthop), in order
    gateway: str | None                  # IPv4: option:router (bare without one)


@dataclass(frozen=True)
class DhcpServersAsDns:
    """Several DHCP ports on a subnet without DNS servers: each dnsmasq names them all."""
    subnet_id: str
    version: int
    servers: tuple[str, ...]


@dataclass(frozen=True)
class DhcpRange:
    subnet_id: str
    network_address: str
    mask: str  # dotted netmask for IPv4, prefix length for IPv6 (dnsmasq's syntax)


def _ipv6_no_dhcp(subnet: model.Subnet) -> bool:
    """The client configures the address itself: dnsmasq hands out no address."""
    return subnet.ip_version == 6 and subnet.ipv6_address_mode in (
        model.IPV6_SLAAC, model.IPV6_DHCP_STATELESS)


def _fqdn(hostname: str, dns_domain: str, dns_integration: bool) -> str:
    """As Neutron names a host: its server's dns_assignment (ML2 ``dns`` extension) ends
    the domain with a dot; the DHCP agent alone appends its dns_domain as it is."""
    domain = dns_domain.strip()
    if not domain:
        return hostname
    if dns_integration and not domain.endswith("."):
        domain += "."
    return f"{hostname}.{domain}"


def host_entries(network: model.Network, dns_domain: str,
                 dns_integration: bool = True) -> list[HostEntry]:
    """Every address of every port that needs DHCP configuration (not the DHCP ports),
    in port order; within a port, DHCPv6-stateless addresses first (dnsmasq reads its
    hosts file from the end, Neutron orders it so)."""
    subnets = {s.id: s for s in network.subnets}
    out = []
    for port in network.ports:
        if port.device_owner in model.NO_DHCP_CONFIG_OWNERS:
            continue
        mac = names.normalise_mac(port.mac_address)
        fips = sorted(port.fixed_ips, key=lambda f: not (
            f.subnet_id in subnets and subnets[f.subnet_id].ip_version == 6
            and subnets[f.subnet_id].ipv6_address_mode == model.IPV6_DHCP_STATELESS))
        for fip in fips:
            subnet = subnets.get(fip.subnet_id)
            if subnet is None:
                continue
            ip = ipaddress.ip_address(fip.ip_address)
            hostname = "host-" + str(ip).replace(".", "-").replace(":", "-")
            out.append(HostEntry(
                mac=mac, ip=str(ip), version=ip.version, hostname=hostname,
                fqdn=_fqdn(hostname, dns_domain, dns_integration),
                dhcp=subnet.enable_dhcp and not _ipv6_no_dhcp(subnet),
                tag="tag:dhcpv6," if ip.version == 6 else ""))
    return out


def _is_any_address(servers: list[str], version: int) -> bool:
    """A lone 0.0.0.0 (or ::) means: announce no DNS server at all."""
    return len(servers) == 1 and ipaddress.ip_address(servers[0]) == \
        ipaddress.ip_address("0.0.0.0" if version == 4 else "::")


def _classless_routes(network: model.Network, subnet: model.Subnet,
                      dhcp_ip: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """(option 121/249 routes, router) of an IPv4 subnet, in Neutron's order: on-link
    routes to the network's other IPv4 subnets, the host routes, the metadata route via
    this DHCP port, then the default route. A 0.0.0.0/0 host route gives way to the
    gateway, or stands in for it when the subnet has none."""
    gateway = subnet.gateway_ip or None
    routes = []
    for r in subnet.host_routes:
        if ipaddress.ip_network(r.destination, strict=False).prefixlen == 0:
            gateway = gateway or r.nexthop
        else:
            routes.append((r.destination, r.nexthop))
    if dhcp_ip:
        routes.append((model.METADATA_IPV4 + "/32", dhcp_ip))
    on_link = [(s.cidr, "0.0.0.0") for s in network.subnets
               if s.ip_version == 4 and s.cidr != subnet.cidr]
    routes = on_link[::-1] + routes
    if routes and gateway:
        routes.append(("0.0.0.0/0", gateway))
    return routes, gateway


def subnet_options(network: model.Network, dhcp_port: model.Port,
                   dns_domain: str = "") -> list[SubnetOptions]:
    """Per subnet that dnsmasq answers options for (DHCP on, not SLAAC)."""
    port_ips = {f.subnet_id: f.ip_address for f in dhcp_port.fixed_ips}
    out = []
    for s in network.subnets:
        if not s.enable_dhcp or (s.ip_version == 6 and s.ipv6_address_mode == model.IPV6_SLAAC):
            continue
        dns = None
        if s.dns_nameservers:
            dns = () if _is_any_address(s.dns_nameservers, s.ip_version) else tuple(
                f"[{d}]" if s.ip_version == 6 else d for d in s.dns_nameservers)
        if s.ip_version == 6:
            out.append(SubnetOptions(s.id, 6, dns, dns_domain.strip() or None, (), None))
            continue
        routes, gateway = _classless_routes(network, s, port_ips.get(s.id))
        out.append(SubnetOptions(s.id, 4, dns, None, tuple(routes), gateway))
    return out


def dhcp_servers_as_dns(network: model.Network, served: list[SubnetOptions]) -> list[DhcpServersAsDns]:
    """Subnets served by several DHCP ports (several nodes) and given no DNS server: the
    DHCP ports' addresses, so a client can fall back from one dnsmasq to the next."""
    without_dns = {o.id for o in served if o.dns_servers is None}
    ips: dict[str, list[str]] = {}
    for port in network.ports:
        if port.device_owner != model.DHCP_OWNER:
            continue
        for f in port.fixed_ips:
            if f.subnet_id in without_dns:
                ips.setdefault(f.subnet_id, []).append(f.ip_address)
    out = []
    for subnet_id, addrs in ips.items():
        for version in (4, 6):
            same = [a for a in addrs if ipaddress.ip_address(a).version == version]
            if len(same) > 1:
                out.append(DhcpServersAsDns(subnet_id, version, tuple(
                    f"[{a}]" if version == 6 else a for a in same)))
    return out


def _dnsmasq_serves_range(subnet: model.Subnet) -> bool:
    """A --dhcp-range for this subnet. An IPv6 prefix dnsmasq refuses would stop the whole
    dnsmasq: subnet-create refuses those, and one left from before is skipped (as Neutron
    skips it), so the rest of the network keeps DHCP."""
    return model.dnsmasq_range_wanted(
        subnet.ip_version, subnet.enable_dhcp, subnet.ipv6_address_mode, subnet.ipv6_ra_mode
    ) and (subnet.ip_version == 4 or ipaddress.ip_network(subnet.cidr, strict=False).prefixlen
           >= model.DNSMASQ_MIN_IPV6_PREFIX)


def dhcp_ranges(network: model.Network) -> list[DhcpRange]:
    out = []
    for s in network.subnets:
        if not _dnsmasq_serves_range(s):
            continue
        net = ipaddress.ip_network(s.cidr, strict=False)
        mask = str(net.netmask) if net.version == 4 else str(net.prefixlen)
        out.append(DhcpRange(s.id, str(net.network_address), mask))
    return out


def capped_lease_max(network: model.Network, configured: int) -> int:
    """--dhcp-lease-max: the addresses of the served ranges, capped by the option."""
    total = sum(ipaddress.ip_network(s.cidr, strict=False).num_addresses
                for s in network.subnets if _dnsmasq_serves_range(s))
    return min(total, configured)


def render_files(network: model.Network, dhcp_port: model.Port, *, dns_domain: str,
                 lease_duration: int, dns_integration: bool = True) -> dict[str, str]:
    """The text of host, opts, addn_hosts and the leases seed (pure)."""
    hosts = host_entries(network, dns_domain, dns_integration)
    served = subnet_options(network, dhcp_port, dns_domain)
    return {
        "host": render("dnsmasq/host.j2", hosts=hosts),
        "opts": render("dnsmasq/opts.j2", subnets=served,
                       dhcp_dns=dhcp_servers_as_dns(network, served)),
        "addn_hosts": render("dnsmasq/addn_hosts.j2", hosts=hosts),
        "leases": render("dnsmasq/leases.j2", hosts=hosts, lease_duration=lease_duration),
    }


def command_line(network: model.Network, dhcp_port: model.Port, paths: Paths, *,
                 dns_domain: str, lease_duration: int, lease_max: int,
                 dns_servers: list[str]) -> list[str]:
    """dnsmasq's argv (pure). ``lease_max`` is the configured cap (dnsmasq_lease_max)."""
    for p in (paths.host, paths.opts, paths.addn_hosts, paths.leases, paths.pid, paths.log):
        if "\n" in str(p):
            raise ValueError(f"path {p!r} contains a newline")
    text = render("dnsmasq/cmdline.j2", paths=paths, ranges=dhcp_ranges(network),
                  lease_duration=lease_duration,
                  lease_max=capped_lease_max(network, lease_max),
                  dns_domain=dns_domain.strip(), mtu=network.mtu if network.mtu > 0 else None,
                  dns_servers=list(dns_servers))
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
