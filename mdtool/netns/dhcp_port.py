"""The DHCP port of a network: namespace ``qdhcp-<id>``, a veth into the bridge, its IPs.

Plan, then apply: ``observe`` reads the kernel, ``plan`` (pure) compares with what the
model asks for, ``apply`` runs the difference. ``up`` twice changes nothing the second
time and returns no actions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from mdtool import model
from mdtool.errors import BadInput
from mdtool.netns import ip_lib, names
from mdtool.netns.actions import Action, apply, delete_idle_bridge
from mdtool.netns.ip_lib import Address, Link

METADATA_V4 = model.METADATA_IPV4 + "/32"
METADATA_V6 = model.METADATA_IPV6 + "/128"


@dataclass(frozen=True)
class DesiredAddress:
    cidr: str
    nodad: bool = False


@dataclass(frozen=True)
class Desired:
    network_id: str
    namespace: str
    bridge: str
    tap: str
    bridge_end: str
    mac: str
    mtu: int | None
    addresses: tuple[DesiredAddress, ...]


@dataclass
class Observed:
    namespace: str
    namespace_exists: bool = False
    lo_up: bool = False
    bridge: Link | None = None
    bridge_ports: list[str] = field(default_factory=list)
    ns_links: list[Link] = field(default_factory=list)     # links inside the namespace
    tap: Link | None = None                                # namespace end (if wanted name known)
    tap_addresses: list[Address] = field(default_factory=list)
    host_ends: list[Link] = field(default_factory=list)    # host links marked as this network's


def desired_state(network: model.Network, dhcp_port: model.Port) -> Desired:
    """What must exist for ``dhcp_port`` of ``network`` (pure)."""
    subnets = {s.id: s for s in network.subnets}
    addrs: list[DesiredAddress] = []
    for fip in dhcp_port.fixed_ips:
        subnet = subnets.get(fip.subnet_id)
        if subnet is None:
            raise BadInput(f"DHCP port {dhcp_port.id} has an address on subnet {fip.subnet_id}, "
                           f"which is not a subnet of network {network.id}")
        plen = ipaddress.ip_network(subnet.cidr, strict=False).prefixlen
        v6 = ipaddress.ip_address(fip.ip_address).version == 6
        # nodad on IPv6: a DHCP server address must be usable at once, not "tentative"
        addrs.append(DesiredAddress(names.normalise_cidr(f"{fip.ip_address}/{plen}"), nodad=v6))
    addrs.append(DesiredAddress(METADATA_V4))
    if any(s.ip_version == 6 for s in network.subnets):
        addrs.append(DesiredAddress(METADATA_V6, nodad=True))
    return Desired(
        network_id=network.id,
        namespace=names.namespace_name(network.id),
        bridge=names.check_ifname(network.bridge),
        tap=names.tap_name(dhcp_port.id),
        bridge_end=names.bridge_end_name(dhcp_port.id),
        mac=names.normalise_mac(dhcp_port.mac_address),
        mtu=network.mtu or None,
        addresses=tuple(addrs),
    )


def observe(nl: ip_lib.Netlink, network_id: str, bridge: str | None = None,
            tap: str | None = None) -> Observed:
    """Read-only: the namespace, its links and addresses, the bridge and our host ends."""
    ns = names.namespace_name(network_id)
    obs = Observed(namespace=ns, namespace_exists=ip_lib.namespace_exists(ns))
    alias = names.dhcp_end_alias(network_id)
    host_links = ip_lib.host_links_matching(
        nl, names=(bridge, "ns-" + tap[3:] if tap else None), master=bridge, alias=alias)
    if bridge:
        obs.bridge = next((l for l in host_links if l.ifname == bridge), None)
        obs.bridge_ports = [l.ifname for l in host_links if l.master == bridge]
    obs.host_ends = [l for l in host_links if l.alias == alias]
    if obs.namespace_exists:
        # links and addresses in one read through one socket (cheap: this runs for every
        # network on every enable, changes or not)
        obs.ns_links, ns_addresses = ip_lib.read_namespace(nl, ns)
        lo = next((l for l in obs.ns_links if l.ifname == "lo"), None)
        obs.lo_up = bool(lo and lo.up)
        if tap:
            obs.tap = next((l for l in obs.ns_links if l.ifname == tap), None)
            if obs.tap is not None:
                obs.tap_addresses = [a for a in ns_addresses if a.ifname == tap]
    if tap:
        # a bridge end left behind by a namespace deleted under it, not yet marked
        wanted = "ns-" + tap[3:]
        if not any(l.ifname == wanted for l in obs.host_ends):
            leftover = next((l for l in host_links if l.ifname == wanted), None)
            if leftover is not None:
                obs.host_ends.append(leftover)
    return obs


def _is_kernel_link_local(addr: Address) -> bool:
    # The kernel's own EUI-64 fe80::/64 address: not ours to manage.
    return addr.family == 6 and addr.prefixlen == 64 and addr.address.lower().startswith("fe80:")


def plan(desired: Desired, observed: Observed) -> list[Action]:
    """The actions that turn ``observed`` into ``desired`` (pure)."""
    d, o = desired, observed
    ns = d.namespace
    actions: list[Action] = []
    if not o.namespace_exists:
        actions.append(Action(f"create namespace {ns}", "create_namespace", {"name": ns}))
    if not o.lo_up:
        actions.append(Action(f"set lo up in {ns}", "set_link",
                              {"ifname": "lo", "netns": ns, "up": True}))
    if o.bridge is None:
        actions.append(Action(f"create bridge {d.bridge}", "create_bridge",
                              {"name": d.bridge, "alias": names.bridge_alias(d.network_id)}))
    elif not o.bridge.up:
        actions.append(Action(f"set bridge {d.bridge} up", "set_link",
                              {"ifname": d.bridge, "up": True}))

    tap = o.tap if o.namespace_exists else None
    host_end = next((l for l in o.host_ends if l.ifname == d.bridge_end), None)
    if tap is None:
        # half-built: a bridge end whose namespace end is gone (or never was) is rebuilt
        if host_end is not None:
            actions.append(Action(f"delete leftover veth end {d.bridge_end}", "delete_link",
                                  {"ifname": d.bridge_end}))
        actions.append(Action(f"create veth {d.tap} (in {ns}) / {d.bridge_end} (on the host)",
                              "create_veth", {"ifname": d.bridge_end, "peer": d.tap,
                                              "peer_netns": ns}))
        host_end = None

    # namespace end: MAC, MTU, up
    spec: dict = {}
    changes = []
    if tap is None or (tap.mac or "").lower() != d.mac:
        spec["mac"] = d.mac
        changes.append(f"MAC {d.mac}")
    if d.mtu and (tap is None or tap.mtu != d.mtu):
        spec["mtu"] = d.mtu
        changes.append(f"MTU {d.mtu}")
    if tap is None or not tap.up:
        spec["up"] = True
        changes.append("up")
    if spec:
        actions.append(Action(f"set {d.tap} " + ", ".join(changes), "set_link",
                              {"ifname": d.tap, "netns": ns, **spec}))

    # bridge end: marker, MTU, master, up
    spec, changes = {}, []
    if host_end is None or host_end.alias != names.dhcp_end_alias(d.network_id):
        spec["alias"] = names.dhcp_end_alias(d.network_id)
        changes.append(f"alias {spec['alias']}")
    if d.mtu and (host_end is None or host_end.mtu != d.mtu):
        spec["mtu"] = d.mtu
        changes.append(f"MTU {d.mtu}")
    if host_end is None or host_end.master != d.bridge:
        spec["master"] = d.bridge
        changes.append(f"master {d.bridge}")
    if host_end is None or not host_end.up:
        spec["up"] = True
        changes.append("up")
    if spec:
        actions.append(Action(f"set {d.bridge_end} " + ", ".join(changes), "set_link",
                              {"ifname": d.bridge_end, **spec}))

    # addresses
    have = {} if tap is None else {
        names.normalise_cidr(a.cidr): a for a in o.tap_addresses if not _is_kernel_link_local(a)}
    want = {a.cidr: a for a in d.addresses}
    for cidr, a in want.items():
        if cidr not in have:
            actions.append(Action(f"add {cidr} to {d.tap}" + (" (nodad)" if a.nodad else ""),
                                  "add_address", {"ifname": d.tap, "cidr": cidr, "netns": ns,
                                                  "nodad": a.nodad}))
    for cidr in have:
        if cidr not in want:
            actions.append(Action(f"remove stale {cidr} from {d.tap}", "delete_address",
                                  {"ifname": d.tap, "cidr": cidr, "netns": ns}))
    return actions


def up(nl: ip_lib.Netlink, network: model.Network, dhcp_port: model.Port, *,
       dry_run: bool = False) -> list[Action]:
    """Make the DHCP port of ``network`` exist as the model says; [] when it already does."""
    desired = desired_state(network, dhcp_port)
    observed = observe(nl, network.id, bridge=desired.bridge, tap=desired.tap)
    actions = plan(desired, observed)
    return actions if dry_run else apply(nl, actions)


def plan_down(network_id: str, bridge_name: str | None, observed: Observed) -> list[Action]:
    """Everything of the network's DHCP port goes: namespace, both veth ends, our bridge (pure)."""
    ns = names.namespace_name(network_id)
    actions: list[Action] = []
    removed: set[str] = set()
    if observed.namespace_exists:
        # Deleting the namespace end takes the peer with it; deleting only the namespace
        # does not always (kernel trap), so veths go first, explicitly.
        for link in observed.ns_links:
            if link.kind == "veth":
                actions.append(Action(f"delete veth {link.ifname} in {ns}", "delete_link",
                                      {"ifname": link.ifname, "netns": ns}))
                removed.add("ns-" + link.ifname[3:] if link.ifname.startswith("tap")
                            else link.ifname)
        actions.append(Action(f"delete namespace {ns}", "delete_namespace", {"name": ns}))
    for link in observed.host_ends:
        # delete_link tolerates ENODEV: the peer may already be gone with its pair
        actions.append(Action(f"delete veth end {link.ifname}", "delete_link",
                              {"ifname": link.ifname}))
        removed.add(link.ifname)
    return actions + delete_idle_bridge(bridge_name, observed.bridge, network_id,
                                        observed.bridge_ports, removed)


def down(nl: ip_lib.Netlink, network_id: str, bridge_name: str | None, *,
         dry_run: bool = False, keep: Iterable[str] = ()) -> list[Action]:
    """Remove the namespace, both veth ends, and the bridge if mdtool made it and it is idle.

    ``keep``: bridge ends of other nodes' DHCP ports on this network. They carry the same
    alias; when two nodes share one host's network namespace (a test, a lab) they are not
    ours to delete.
    """
    observed = observe(nl, network_id, bridge=bridge_name)
    keep = set(keep)
    observed.host_ends = [l for l in observed.host_ends if l.ifname not in keep]
    # host ends named after the namespace's taps count too (an unmarked leftover)
    host_names = {l.ifname for l in observed.host_ends}
    taps = [l.ifname for l in observed.ns_links if l.kind == "veth" and l.ifname.startswith("tap")]
    if taps:  # read by name: a node of 1,000 networks has thousands of host links
        observed.host_ends += ip_lib.host_links_matching(
            nl, names=tuple(sorted({"ns-" + t[3:] for t in taps} - host_names)))
    actions = plan_down(network_id, bridge_name, observed)
    return actions if dry_run else apply(nl, actions)


def list_namespaces() -> list[str]:
    """Names of the ``qdhcp-*`` namespaces on this host."""
    return [n for n in ip_lib.list_namespaces() if n.startswith(names.NAMESPACE_PREFIX)]
