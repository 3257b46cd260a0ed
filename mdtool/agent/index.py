"""Which instance sent this request: (network id, source address) -> port -> instance.

Pure and in memory: :class:`PortIndex` is built from the registry's port list and answers
each lookup with a dict access. An IPv6 link-local source carries no fixed IP; its
interface id is the modified EUI-64 of the instance's MAC, so the port is found by MAC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from mdtool import model

_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


@dataclass(frozen=True)
class Match:
    instance_id: str
    project_id: str
    port_id: str


def normalize_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header: scope id dropped, IPv4-mapped IPv6 unwrapped; None if bad."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def mac_from_link_local(addr: ipaddress.IPv6Address) -> str | None:
    """fe80::f816:3eff:fe00:b -> fa:16:3e:00:00:0b (modified EUI-64); None when not EUI-64."""
    if addr not in _LINK_LOCAL:
        return None
    iid = addr.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    mac = bytes([iid[0] ^ 0x02]) + iid[1:3] + iid[5:8]
    return ":".join(f"{b:02x}" for b in mac)


class PortIndex:
    """Instance ports by (network, IP) and by (network, MAC)."""

    def __init__(self, ports: Iterable[model.Port], revision: int = 0,
                 instance_projects: Mapping[str, str] | None = None):
        self.revision = revision
        self.by_ip: dict[tuple[str, str], list[Match]] = {}
        self.by_mac: dict[tuple[str, str], list[Match]] = {}
        projects = instance_projects or {}
        count = 0
        for port in ports:
            # Only a port bound to an instance can ask for that instance's metadata;
            # the DHCP port (the namespace itself) never resolves to one.
            if not port.device_id or port.device_owner == model.DHCP_OWNER:
                continue
            count += 1
            match = Match(port.device_id, port.project_id or projects.get(port.device_id, ""),
                          port.id)
            for fip in port.fixed_ips:
                addr = normalize_ip(fip.ip_address)
                if addr is not None:
                    self.by_ip.setdefault((port.network_id, str(addr)), []).append(match)
            if port.mac_address:
                self.by_mac.setdefault((port.network_id, port.mac_address.lower()), []).append(match)
        self.port_count = count

    def lookup(self, network_id: str, source: str) -> list[Match]:
        """Every instance port on ``network_id`` that ``source`` may be; the caller wants one."""
        hit = self.by_ip.get((network_id, source))  # fast path: already canonical
        if hit is not None:
            return hit
        addr = normalize_ip(source)
        if addr is None:
            return []
        hit = self.by_ip.get((network_id, str(addr)))
        if hit is not None:
            return hit
        if addr.version == 6:
            mac = mac_from_link_local(addr)
            if mac is not None:
                return self.by_mac.get((network_id, mac), [])
        return []
