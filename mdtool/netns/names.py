"""Pure name and argument normalisers (no kernel access).

Interface names must fit IFNAMSIZ (15 characters + NUL). Like Neutron we take the first
11 characters of the port id: ``tap`` + 11 = 14 and ``ns-`` + 11 = 14, unique enough
(11 hex-ish characters of a UUID) and recognisable next to the port id in ``ip link``.

- DHCP port, namespace end: ``tap<port_id[:11]>`` (what Neutron names it, what dnsmasq binds)
- DHCP port, bridge end:    ``ns-<port_id[:11]>``
- instance port (plug), bridge end: ``tap<port_id[:11]>`` (as Nova/libvirt name it on the host)

mdtool marks what it creates with the link alias (``ip link set X alias ...``), so ``down``
removes only its own objects: a bridge ``mdtool:<network_id>``, a DHCP port's bridge end
``mdtool:dhcp:<network_id>``, an instance port's bridge end ``mdtool:port:<port_id>``.
"""

from __future__ import annotations

import ipaddress

from mdtool.errors import BadInput

NAMESPACE_PREFIX = "qdhcp-"
IFNAME_MAX = 15


def namespace_name(network_id: str) -> str:
    return NAMESPACE_PREFIX + network_id


def network_id_of_namespace(name: str) -> str | None:
    return name[len(NAMESPACE_PREFIX):] if name.startswith(NAMESPACE_PREFIX) else None


def tap_name(port_id: str) -> str:
    return "tap" + port_id[:11]


def bridge_end_name(port_id: str) -> str:
    return "ns-" + port_id[:11]


def bridge_alias(network_id: str) -> str:
    return "mdtool:" + network_id


def dhcp_end_alias(network_id: str) -> str:
    return "mdtool:dhcp:" + network_id


def port_end_alias(port_id: str) -> str:
    return "mdtool:port:" + port_id


def check_ifname(name: str) -> str:
    if not name or len(name) > IFNAME_MAX or "/" in name or any(c.isspace() for c in name):
        raise BadInput(f"bad interface name {name!r}: 1 to {IFNAME_MAX} characters, no '/' or spaces")
    return name


def normalise_cidr(cidr: str) -> str:
    """``ip/prefixlen`` in canonical form (IPv6 compressed, lower case)."""
    iface = ipaddress.ip_interface(cidr)
    return f"{iface.ip}/{iface.network.prefixlen}"


def normalise_mac(mac: str) -> str:
    parts = mac.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise BadInput(f"bad MAC address {mac!r}")
    return ":".join(parts)
