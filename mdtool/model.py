"""Plain, detached views of registry objects.

The registry returns these; renderers, daemons and inspect consume them, so nothing
outside ``mdtool.registry`` needs the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DHCP_OWNER = "network:dhcp"
COMPUTE_OWNER = "compute:nova"
DEFAULT_FLAVOR = "m1.small"
METADATA_IPV4 = "169.254.169.254"
METADATA_IPV6 = "fe80::a9fe:a9fe"
# Neutron's ipv6_address_mode / ipv6_ra_mode values.
IPV6_SLAAC = "slaac"
IPV6_DHCP_STATEFUL = "dhcpv6-stateful"
IPV6_DHCP_STATELESS = "dhcpv6-stateless"
IPV6_MODES = (IPV6_SLAAC, IPV6_DHCP_STATEFUL, IPV6_DHCP_STATELESS)
# dnsmasq refuses a DHCPv6 range on a shorter prefix ("prefix length must be at least 64")
# and then does not start at all.
DNSMASQ_MIN_IPV6_PREFIX = 64


def dnsmasq_range_wanted(ip_version: int, enable_dhcp: bool, address_mode: str | None,
                         ra_mode: str | None) -> bool:
    """Whether dnsmasq gets a --dhcp-range for a subnet, as Neutron decides it: IPv4 with
    DHCP; IPv6 with DHCPv6 (stateful, stateless, or neither mode set); not SLAAC."""
    if not enable_dhcp:
        return False
    if ip_version == 4:
        return True
    if address_mode is None:
        return ra_mode is None
    return address_mode in (IPV6_DHCP_STATEFUL, IPV6_DHCP_STATELESS)


# Ports that get no dnsmasq host entries (Neutron's DHCP_CONFIG_NOT_REQUIRED_OWNERS).
NO_DHCP_CONFIG_OWNERS = frozenset({DHCP_OWNER, "network:router_ha_interface",
                                   "network:floatingip", "network:distributed"})


@dataclass(frozen=True)
class FixedIP:
    subnet_id: str
    ip_address: str


@dataclass(frozen=True)
class AllocationPool:
    start: str
    end: str


@dataclass(frozen=True)
class HostRoute:
    destination: str
    nexthop: str


@dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    enable_dhcp: bool
    allocation_pools: list[AllocationPool] = field(default_factory=list)
    dns_nameservers: list[str] = field(default_factory=list)
    host_routes: list[HostRoute] = field(default_factory=list)
    project_id: str = ""
    ipv6_address_mode: str | None = None  # IPv6 only: one of IPV6_MODES, or None
    ipv6_ra_mode: str | None = None


@dataclass
class Port:
    id: str
    name: str
    network_id: str
    mac_address: str
    fixed_ips: list[FixedIP] = field(default_factory=list)
    device_id: str = ""
    device_owner: str = ""
    project_id: str = ""
    host: str = ""  # node identity, for DHCP ports
    # Neutron's port_security_enabled: anti-spoofing rules on the bridge when mdtool plugs it.
    port_security_enabled: bool = True


@dataclass
class Network:
    id: str
    name: str
    bridge: str
    mtu: int
    project_id: str = ""
    subnets: list[Subnet] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # the nodes serving it (DHCP, metadata)


@dataclass
class Instance:
    id: str
    name: str
    hostname: str
    project_id: str
    key_name: str | None = None
    public_keys: dict[str, str] = field(default_factory=dict)  # key name -> key text
    meta: dict[str, str] = field(default_factory=dict)
    user_data: bytes | None = None
    vendor_data: dict | None = None
    availability_zone: str = "nova"
    launch_index: int = 0
    created_at: str = ""
    password: str | None = None
    flavor: str = DEFAULT_FLAVOR  # its name: Nova's EC2 instance-type
