"""Plug an instance port: a namespace standing in for the instance, wired to the bridge.

For containers, tests and the demo: namespace ``ns_name`` with a veth ``ifname`` (the port's
MAC, the network's MTU, up; no address, DHCP gives it) whose other end ``tap<port_id[:11]>``
sits on the network's bridge, as Nova's tap would. Idempotent, plan then apply.
"""

from __future__ import annotations

from mdtool import model
from mdtool.netns import ip_lib, names, portsec
from mdtool.netns.actions import Action, apply, delete_idle_bridge


def plan_plug(port: model.Port, network: model.Network, ns_name: str, ifname: str,
              *, ns_exists: bool, ns_links: list[ip_lib.Link],
              host_links: list[ip_lib.Link]) -> list[Action]:
    """Pure: the actions that plug ``port`` given what was observed."""
    names.check_ifname(ifname)
    bridge = names.check_ifname(network.bridge)
    host_end_name = names.tap_name(port.id)
    mac = names.normalise_mac(port.mac_address)
    mtu = network.mtu or None
    actions: list[Action] = []
    if not ns_exists:
        actions.append(Action(f"create namespace {ns_name}", "create_namespace", {"name": ns_name}))
    lo = next((l for l in ns_links if l.ifname == "lo"), None)
    if lo is None or not lo.up:
        actions.append(Action(f"set lo up in {ns_name}", "set_link",
                              {"ifname": "lo", "netns": ns_name, "up": True}))
    br = next((l for l in host_links if l.ifname == bridge), None)
    if br is None:
        actions.append(Action(f"create bridge {bridge}", "create_bridge",
                              {"name": bridge, "alias": names.bridge_alias(network.id)}))
    elif not br.up:
        actions.append(Action(f"set bridge {bridge} up", "set_link", {"ifname": bridge, "up": True}))
    inst = next((l for l in ns_links if l.ifname == ifname), None)
    host = next((l for l in host_links if l.ifname == host_end_name), None)
    if inst is None:
        if host is not None:
            actions.append(Action(f"delete leftover veth end {host_end_name}", "delete_link",
                                  {"ifname": host_end_name}))
        actions.append(Action(f"create veth {ifname} (in {ns_name}) / {host_end_name} (on the host)",
                              "create_veth", {"ifname": host_end_name, "peer": ifname,
                                              "peer_netns": ns_name}))
        host = None
    spec: dict = {}
    changes: list[str] = []
    if inst is None or (inst.mac or "").lower() != mac:
        spec["mac"] = mac
        changes.append(f"MAC {mac}")
    if mtu and (inst is None or inst.mtu != mtu):
        spec["mtu"] = mtu
        changes.append(f"MTU {mtu}")
    if inst is None or not inst.up:
        spec["up"] = True
        changes.append("up")
    if spec:
        actions.append(Action(f"set {ifname} in {ns_name} " + ", ".join(changes), "set_link",
                              {"ifname": ifname, "netns": ns_name, **spec}))
    spec, changes = {}, []
    alias = names.port_end_alias(port.id)
    if host is None or host.alias != alias:
        spec["alias"] = alias
        changes.append(f"alias {alias}")
    if mtu and (host is None or host.mtu != mtu):
        spec["mtu"] = mtu
        changes.append(f"MTU {mtu}")
    if host is None or host.master != bridge:
        spec["master"] = bridge
        changes.append(f"master {bridge}")
    if host is None or not host.up:
        spec["up"] = True
        changes.append("up")
    if spec:
        actions.append(Action(f"set {host_end_name} " + ", ".join(changes), "set_link",
                              {"ifname": host_end_name, **spec}))
    return actions


def plug(nl: ip_lib.Netlink, port: model.Port, network: model.Network, ns_name: str, *,
         ifname: str = "eth0", dry_run: bool = False) -> list[Action]:
    """Wire ``port`` into namespace ``ns_name`` behind its port security rules; [] when it
    already is so. The rules come first: they match the tap by name, so they hold from the
    tap's first frame."""
    if dry_run:
        return _plan_plug_here(nl, port, network, ns_name, ifname)
    with portsec.locked():
        return apply(nl, _plan_plug_here(nl, port, network, ns_name, ifname))


def _plan_plug_here(nl: ip_lib.Netlink, port: model.Port, network: model.Network,
                    ns_name: str, ifname: str) -> list[Action]:
    ns_exists = ip_lib.namespace_exists(ns_name)
    return portsec.plan_sync(nl, network, plugging=port.id) + plan_plug(
        port, network, ns_name, ifname, ns_exists=ns_exists,
        ns_links=ip_lib.list_links(nl, ns_name) if ns_exists else [],
        host_links=ip_lib.list_links(nl, None))


def unplug(nl: ip_lib.Netlink, port_id: str, ns_name: str, *, bridge: str | None = None,
           network_id: str | None = None, network: model.Network | None = None,
           dry_run: bool = False) -> list[Action]:
    """Remove both veth ends and the namespace, ``bridge`` when mdtool created it for
    ``network_id`` and this port was the last it carried, and the port's rules from
    ``network``'s port security table (the table itself with the last port); [] when
    nothing was there."""
    if dry_run:
        return _plan_unplug(nl, port_id, ns_name, bridge, network_id, network)
    with portsec.locked():
        return apply(nl, _plan_unplug(nl, port_id, ns_name, bridge, network_id, network))


def _plan_unplug(nl: ip_lib.Netlink, port_id: str, ns_name: str, bridge: str | None, network_id: str | None,
                 network: model.Network | None) -> list[Action]:
    actions: list[Action] = []
    removed: set[str] = set()
    host_end_name = names.tap_name(port_id)
    if ip_lib.namespace_exists(ns_name):
        for link in ip_lib.list_links(nl, ns_name):
            if link.kind == "veth":
                actions.append(Action(f"delete veth {link.ifname} in {ns_name}", "delete_link",
                                      {"ifname": link.ifname, "netns": ns_name}))
        actions.append(Action(f"delete namespace {ns_name}", "delete_namespace", {"name": ns_name}))
    if ip_lib.get_link(nl, host_end_name) is not None:
        actions.append(Action(f"delete veth end {host_end_name}", "delete_link",
                              {"ifname": host_end_name}))
    removed.add(host_end_name)
    if bridge and network_id:
        links = ip_lib.host_links_matching(nl, names=(bridge,), master=bridge)
        br = next((l for l in links if l.ifname == bridge), None)
        actions += delete_idle_bridge(bridge, br, network_id,
                                      [l.ifname for l in links if l.master == bridge], removed)
    if network is not None:
        actions += portsec.plan_sync(nl, network, unplugging=port_id)
    return actions
