"""Port security on the bridge: what an instance port may send (Neutron's
``port_security_enabled``, as its L2 agents enforce it).

The source IP is an instance's identity toward the metadata service, so a port may send
only from its MAC and its fixed IPs: IPv4, ARP with its own sender MAC and IP, IPv6 from
its fixed IPs and the EUI-64 link-local of its MAC (neighbour advertisements only for
those), and DHCP as a client (v4 from 0.0.0.0; v6 from the link-local). DHCP server
replies (UDP source port 67 or 547), router advertisements and redirects from an instance
port are dropped, so no instance plays DHCP server or router for its neighbours.

One nftables table per network (``bridge mdtool-<network_id>``, prerouting hook): a jump
per plugged port with port security on, one chain per such port. The table holds only the
ports plugged on this host (their ``tap`` end carries mdtool's alias); it is rendered from
the registry (pure), compared with the live table, and replaced whole when they differ.
Without such a port the table is deleted.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dataclasses import dataclass, field

from mdtool import model, templates
from mdtool.errors import MdtoolError
from mdtool.netns import ip_lib, names, nft
from mdtool.netns.actions import Action, apply

TEMPLATE = "nftables/port_security.nft.j2"
LOCK_DIR = Path("/run/lock")


def table_name(network_id: str) -> str:
    return "mdtool-" + network_id


def chain_name(port_id: str) -> str:
    return "port-" + port_id


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The modified EUI-64 link-local of ``mac`` (fa:16:3e:00:00:0b -> fe80::f816:3eff:fe00:b)."""
    b = bytes.fromhex(names.normalise_mac(mac).replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid)


def secured(network: model.Network, plugged: set[str]) -> list[model.Port]:
    """The ports that get rules: plugged here, port security on, in registry order."""
    return [p for p in network.ports
            if p.id in plugged and p.port_security_enabled and p.device_owner != model.DHCP_OWNER]


def _port_context(port: model.Port) -> dict:
    ips = [ipaddress.ip_address(f.ip_address) for f in port.fixed_ips]
    v4 = [str(ip) for ip in ips if ip.version == 4]
    v6 = [link_local(port.mac_address)] + [ip for ip in ips if ip.version == 6]
    return {"tap": names.tap_name(port.id), "chain": chain_name(port.id),
            "mac": names.normalise_mac(port.mac_address), "ipv4": v4,
            "ipv6": [str(ip) for ip in v6],
            # the target address of a neighbour advertisement, as a raw 128-bit match
            "nd_targets": [hex(int(ip)) for ip in v6]}


def render(network: model.Network, ports: list[model.Port], *, orphans: tuple[str, ...] = (),
           replace: bool = False) -> str:
    """The table for ``ports`` of ``network`` (pure); ``orphans``: taps of deleted ports,
    which may send nothing; ``replace``: as an ``nft -f`` script."""
    return templates.render(TEMPLATE, table=table_name(network.id), replace=replace,
                            comment=f"mdtool port security, network {network.id}",
                            ports=[_port_context(p) for p in ports], orphans=sorted(orphans))


def plan(network: model.Network, plugged: set[str], live: str | None,
         orphans: tuple[str, ...] = ()) -> list[Action]:
    """Pure: the action that brings the live table (None: absent) to what ``plugged``
    (port ids) and ``orphans`` (taps of ports the registry no longer has) need."""
    table = table_name(network.id)
    ports = secured(network, plugged)
    if not ports and not orphans:
        if live is None:
            return []
        return [Action(f"delete nft table bridge {table} (no plugged port with port security)",
                       "nft.delete_table", {"table": table})]
    if live == render(network, ports, orphans=orphans):
        return []
    what = "create" if live is None else "replace"
    covered = [names.tap_name(p.id) for p in ports] + [f"{t} (deleted port: drop all)"
                                                       for t in sorted(orphans)]
    return [Action(f"{what} nft table bridge {table}: port security of " + ", ".join(covered),
                   "nft.replace_table",
                   {"table": table, "ruleset": render(network, ports, orphans=orphans,
                                                      replace=True)})]


def plan_forget(network_id: str) -> list[Action]:
    """The network is gone from the registry: its table goes too, if it is there."""
    table = table_name(network_id)
    if shutil.which("nft") is None or nft.list_table(table) is None:
        return []
    return [Action(f"delete nft table bridge {table} (network {network_id} is not in the registry)",
                   "nft.delete_table", {"table": table})]


def observe_plugged(nl: ip_lib.Netlink,
                    network: model.Network) -> tuple[set[str], tuple[str, ...]]:
    """(ids of the network's ports plugged on this host, taps on its bridge that mdtool
    plugged for a port the registry no longer has). A plugged tap carries our alias."""
    taps = {names.tap_name(p.id): p.id for p in network.ports}
    plugged: set[str] = set()
    orphans: list[str] = []
    for link in ip_lib.host_links_matching(nl, names=tuple(taps), master=network.bridge):
        if link.ifname in taps and link.alias == names.port_end_alias(taps[link.ifname]):
            plugged.add(taps[link.ifname])
        elif (link.master == network.bridge and link.alias
              and link.alias.startswith(names.port_end_alias(""))):
            orphans.append(link.ifname)
    return plugged, tuple(orphans)


def plan_sync(nl: ip_lib.Netlink, network: model.Network, *, plugging: str | None = None,
              unplugging: str | None = None) -> list[Action]:
    """Observe the plugged ports and the live table; plan what brings them in line.
    ``plugging``/``unplugging``: a port about to be (un)plugged by the same plan."""
    plugged, orphans = observe_plugged(nl, network)
    if plugging:
        plugged.add(plugging)
    if unplugging:
        plugged.discard(unplugging)
        orphans = tuple(t for t in orphans if t != names.tap_name(unplugging))
    if not secured(network, plugged) and not orphans and shutil.which("nft") is None:
        return []  # nothing to protect, and without nft no table of ours can exist
    return plan(network, plugged, nft.list_table(table_name(network.id)), orphans)


@contextmanager
def locked() -> Iterator[None]:
    """One writer of port security tables at a time on this host: a plug and a port update
    that observe and apply side by side would each drop the other's port from the table."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / "mdtool-portsec.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class State:
    """What ``inspect`` shows and judges: the live table against the registry."""
    table: str
    plugged: list[str] = field(default_factory=list)     # taps of plugged ports
    unsecured: list[str] = field(default_factory=list)   # plugged, port security off
    orphans: list[str] = field(default_factory=list)     # taps of deleted ports
    expected: str | None = None   # what the registry says the table must be (None: no table)
    live: str | None = None       # what ``nft list table`` prints (None: no table)
    error: str | None = None      # why the live table could not be read


def observe(nl: ip_lib.Netlink, network: model.Network) -> State:
    """Read only: the plugged ports, the table they need, and the live table."""
    plugged, orphans = observe_plugged(nl, network)
    ports = secured(network, plugged)
    st = State(table=table_name(network.id),
               plugged=[names.tap_name(p.id) for p in network.ports if p.id in plugged],
               unsecured=[names.tap_name(p.id) for p in network.ports
                          if p.id in plugged and not p.port_security_enabled],
               orphans=list(orphans),
               expected=render(network, ports, orphans=orphans) if ports or orphans else None)
    if st.expected is None and shutil.which("nft") is None:
        return st
    try:
        st.live = nft.list_table(st.table)
    except MdtoolError as e:
        st.error = str(e)
    return st


def sync(nl: ip_lib.Netlink, network: model.Network, *, dry_run: bool = False) -> list[Action]:
    """After a registry change (port update or delete): bring the rules of the ports
    plugged on this host in line; nothing at all (not even nft) when none is."""
    plugged, orphans = observe_plugged(nl, network)
    if not plugged and not orphans:
        return []
    if dry_run:
        return plan_sync(nl, network)
    with locked():
        return apply(nl, plan_sync(nl, network))
