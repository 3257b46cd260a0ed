"""Deleting resources without leaking host objects.

The registry alone would forget a port while its namespace and veth stay plugged, or a
network while its namespace, dnsmasq and bridge stay up. These deletes look at this node
first: a plugged port or instance is unplugged before its rows go (as Nova unplugs a VIF
before Neutron deletes the port); a network still served on this node is refused with the
command that tears it down (another node's service is the registry's to refuse: its DHCP
port is a port).
"""

from __future__ import annotations

from mdtool import model, plugs
from mdtool.config import Config
from mdtool.errors import Conflict
from mdtool.registry import Registry


def delete_port(config: Config, registry: Registry, ref: str) -> tuple[model.Port, list[str]]:
    """Unplug the port if this node plugged it, then delete it: (port, what was unplugged)."""
    from mdtool.netns.ip_lib import Netlink
    port = registry.get_port(ref)
    with Netlink() as nl:
        changes = plugs.unplug(config, nl, port.id,
                               network=registry.get_network(port.network_id))
    return registry.delete_port(port.id), changes


def delete_instance(config: Config, registry: Registry,
                    ref: str) -> tuple[model.Instance, list[model.Port], list[str]]:
    """Unplug the instance's plugged ports, then delete it and (as Nova) its compute ports."""
    from mdtool.netns.ip_lib import Netlink
    inst = registry.get_instance(ref)
    changes: list[str] = []
    with Netlink() as nl:
        for port in registry.list_ports(device_id=inst.id):
            if port.device_owner == model.COMPUTE_OWNER:
                changes += plugs.unplug(config, nl, port.id,
                                        network=registry.get_network(port.network_id))
    i, ports = registry.delete_instance(inst.id)
    return i, ports, changes


def served_here(config: Config, network_id: str) -> list[str]:
    """What of the network this node still runs: its namespace, its dhcp dir."""
    from mdtool.netns import ip_lib, names
    found = []
    ns = names.namespace_name(network_id)
    if ip_lib.namespace_exists(ns):
        found.append(f"namespace {ns}")
    if config.dhcp_dir(network_id).is_dir():
        found.append(f"files {config.dhcp_dir(network_id)}")
    return found


def delete_network(config: Config, registry: Registry, ref: str) -> model.Network:
    """Delete a network and its subnets; refused (exit 2, with the command to run) while
    this node serves it or the registry still has ports on it."""
    net = registry.get_network(ref)
    here = served_here(config, net.id)
    if here:
        raise Conflict(f"network {net.name or net.id} is still served on this node "
                       f"({', '.join(here)}): mdtool disable-isolated-metadata {ref}, then "
                       "net-delete again")
    return registry.delete_network(net.id)


def unplug_port(config: Config, registry: Registry, ref: str, namespace: str, *,
                dry_run: bool = False) -> list[str]:
    """port-unplug: by the registry's port, or by this node's record of a port the registry
    no longer has (deleted elsewhere)."""
    from mdtool.errors import NotFound
    from mdtool.netns.ip_lib import Netlink
    try:
        port = registry.get_port(ref)
    except NotFound:
        rec = plugs.find(config, ref)
        if rec is None:
            raise
        with Netlink() as nl:
            return plugs.unplug(config, nl, rec.port_id, namespace, dry_run=dry_run)
    network = registry.get_network(port.network_id)
    with Netlink() as nl:
        return plugs.unplug(config, nl, port.id, namespace, network=network, dry_run=dry_run)


def netns_down(config: Config, registry: Registry, ref: str, *,
               dry_run: bool = False) -> list[str]:
    """netns down; for a network the registry no longer has, the error names cleanup when
    this node still holds something of it."""
    from mdtool.errors import NotFound
    from mdtool.netns.ip_lib import Netlink
    from mdtool.pipeline import Node
    try:
        net = registry.get_network(ref)
    except NotFound as e:
        here = served_here(config, ref)
        if here:
            raise NotFound(f"{e}; what is left of it on this node ({', '.join(here)}): "
                           "mdtool cleanup") from None
        raise
    with Netlink() as nl:
        return Node(config, registry, nl).netns_down(net, dry_run=dry_run)
