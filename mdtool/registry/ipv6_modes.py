"""``ipv6_address_mode`` / ``ipv6_ra_mode`` of a subnet: Neutron's API rules, and the one
mdtool adds so that dnsmasq can always start (apart from the CIDR rules of validate.py)."""

from __future__ import annotations

import ipaddress

from mdtool import model
from mdtool.errors import BadInput


def is_auto_address(address_mode: str | None, ra_mode: str | None) -> bool:
    """Instances make their own address (SLAAC or DHCPv6-stateless): Neutron then gives
    every port the modified EUI-64 address of its MAC, and no other."""
    return (address_mode or ra_mode) in (model.IPV6_SLAAC, model.IPV6_DHCP_STATELESS)


def eui64_address(cidr: str, mac: str) -> ipaddress.IPv6Address:
    """The address an instance with ``mac`` gives itself in the /64 ``cidr`` (RFC 4291
    modified EUI-64: universal/local bit flipped, ff:fe in the middle)."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    net = ipaddress.IPv6Network(cidr)
    return ipaddress.IPv6Address(int(net.network_address) | int.from_bytes(iid, "big"))


def check(net: ipaddress.IPv4Network | ipaddress.IPv6Network, address_mode: str | None,
          ra_mode: str | None, enable_dhcp: bool) -> None:
    """Refuse (BadInput, exit 2) what Neutron refuses, and a DHCPv6 subnet dnsmasq cannot
    serve: it would take the DHCP of the whole network down with it."""
    for option, mode in (("--ipv6-address-mode", address_mode), ("--ipv6-ra-mode", ra_mode)):
        if mode is not None and mode not in model.IPV6_MODES:
            raise BadInput(f"{option} {mode!r}: expected one of {', '.join(model.IPV6_MODES)}")
    if address_mode or ra_mode:
        if net.version != 6:
            raise BadInput(f"{net} is IPv4: --ipv6-address-mode and --ipv6-ra-mode are for "
                           "IPv6 subnets")
        if not enable_dhcp:
            raise BadInput("--ipv6-address-mode and --ipv6-ra-mode cannot be set with "
                           "--disable-dhcp (as in Neutron)")
        if address_mode and ra_mode and address_mode != ra_mode:
            raise BadInput(f"--ipv6-ra-mode {ra_mode} with --ipv6-address-mode {address_mode}: "
                           "when both are set they must be the same (as in Neutron)")
        if is_auto_address(address_mode, ra_mode) and net.prefixlen != 64:
            raise BadInput(f"{net} with {address_mode or ra_mode}: addresses are EUI-64, "
                           "which needs a /64 (as in Neutron)")
    if net.version == 6 and model.dnsmasq_range_wanted(6, enable_dhcp, address_mode, ra_mode) \
            and net.prefixlen < model.DNSMASQ_MIN_IPV6_PREFIX:
        raise BadInput(f"{net}: dnsmasq serves DHCPv6 only on a /{model.DNSMASQ_MIN_IPV6_PREFIX} "
                       "or longer prefix, and would stop serving the whole network; use a /64, "
                       "--ipv6-address-mode slaac with a router of your own, or --disable-dhcp")


def check_dhcp_change(subnet: model.Subnet, enable_dhcp: bool) -> None:
    """subnet-update --enable-dhcp/--disable-dhcp under the same rules."""
    if not enable_dhcp and (subnet.ipv6_address_mode or subnet.ipv6_ra_mode):
        raise BadInput(f"subnet {subnet.name or subnet.id} has IPv6 modes set: DHCP cannot be "
                       "switched off (as in Neutron)")
    check(ipaddress.ip_network(subnet.cidr), subnet.ipv6_address_mode, subnet.ipv6_ra_mode,
          enable_dhcp)
