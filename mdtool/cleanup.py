"""``mdtool cleanup``: remove what this node made and the registry no longer knows.

Only this state dir's own objects are considered, so another state dir (another node on
the same host, another test) is never touched:

- a network this node served has ``<state_dir>/dhcp/<network_id>/``: when the registry no
  longer has the network, or no longer has this node's DHCP port on it, its dnsmasq, its
  namespace ``qdhcp-<id>`` with both veth ends, and that dir go;
- a port this node plugged has ``<state_dir>/plugs/<port_id>.json`` (:mod:`mdtool.plugs`):
  when the registry no longer has the port, its namespace, veth and port security rules go
  (the network's nftables table, when the registry no longer has the network either);
- a bridge mdtool created for one of those networks (alias ``mdtool:<network_id>``) goes
  when nothing else is left on it;
- the shared daemons of this state dir (pid files) stop when no network is left to serve.

The plan is made once: ``--dry-run`` prints it, a real run prints the same lines as it
carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from mdtool import model, plugs
from mdtool.config import Config
from mdtool.errors import NotFound
from mdtool.registry import Registry

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink


@dataclass
class Task:
    text: str
    do: Callable[[], object] = field(repr=False)


@dataclass
class Orphan:
    what: str                     # "namespace qdhcp-… (network … is not in the registry)"
    tasks: list[Task] = field(default_factory=list)


def _network_gone(registry: Registry, config: Config, network_id: str) -> tuple[model.Network | None, str | None]:
    """(the network, why this node no longer serves it) or (network, None) when it does."""
    try:
        net = registry.get_network(network_id)
    except NotFound:
        return None, f"network {network_id} is not in the registry"
    if not any(p.device_owner == model.DHCP_OWNER and p.host == config.host for p in net.ports):
        return net, f"network {net.name or net.id} has no DHCP port of host {config.host}"
    return net, None


def _actions(nl: Netlink, actions) -> list[Task]:
    from mdtool.netns.actions import apply
    return [Task(a.text, lambda a=a: apply(nl, [a])) for a in actions]


def _served_dirs(config: Config) -> list[str]:
    d = config.state_dir / "dhcp"
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def find(config: Config, registry: Registry, nl: Netlink) -> list[Orphan]:
    """Every orphan of this node with the tasks that remove it (read only); the tasks
    reach the kernel through ``nl``, so they run before it closes."""
    import shutil

    from mdtool import daemons
    from mdtool.dnsmasq import control
    from mdtool.netns import dhcp_port, ip_lib, names, portsec
    from mdtool.netns import plug as netns_plug
    from mdtool.netns.actions import delete_idle_bridge

    orphans: list[Orphan] = []
    bridges: dict[str, str] = {}        # bridge name -> network id it was made for
    removed: set[str] = set()           # host links the tasks delete
    tables_gone: set[str] = set()       # networks whose port security table goes
    still_served = []
    for net_id in _served_dirs(config):
        net, why = _network_gone(registry, config, net_id)
        if why is None:
            still_served.append(net_id)
            continue
        ns = names.namespace_name(net_id)
        o = Orphan(f"{ns} ({why})")
        pid = control.running_pid(config, net_id)
        if pid is not None:
            o.tasks.append(Task(f"stop dnsmasq of {net_id} (pid {pid})",
                                lambda n=net_id: control.stop(config, n)))
        # Our bridge ends are the peers of the veths in our namespace; other ends with the
        # same marker belong to other nodes' DHCP ports (two nodes may share one host).
        seen = dhcp_port.observe(nl, net_id)
        ours = {"ns-" + l.ifname[3:] for l in seen.ns_links
                if l.kind == "veth" and l.ifname.startswith("tap")}
        keep = [l.ifname for l in seen.host_ends if l.ifname not in ours]
        # the bridge is judged below, once every orphan's links are known
        actions = dhcp_port.down(nl, net_id, None, dry_run=True, keep=keep)
        o.tasks += _actions(nl, actions)
        removed |= {a.args["ifname"] for a in actions
                    if a.op == "delete_link" and not a.args.get("netns")}
        bridge = net.bridge if net else _bridge_of(nl, net_id)
        if bridge:
            bridges[bridge] = net_id
        d = config.dhcp_dir(net_id)
        o.tasks.append(Task(f"remove {d}", lambda d=d: shutil.rmtree(d, ignore_errors=True)))
        orphans.append(o)

    for rec in plugs.list_plugs(config):
        try:
            registry.get_port(rec.port_id)
            continue
        except NotFound:
            pass
        o = Orphan(f"namespace {rec.namespace} (plugged port {rec.port_id} is not in the registry)")
        try:  # the port's port security rules go with it; the table with its network
            net = registry.get_network(rec.network_id)
        except NotFound:
            net = None
        actions = netns_plug.unplug(nl, rec.port_id, rec.namespace, network=net, dry_run=True)
        if net is None and rec.network_id not in tables_gone:
            tables_gone.add(rec.network_id)
            actions += portsec.plan_forget(rec.network_id)
        o.tasks += _actions(nl, actions)
        removed |= {a.args["ifname"] for a in actions
                    if a.op == "delete_link" and not a.args.get("netns")}
        o.tasks.append(Task(f"forget plug record {rec.port_id}.json",
                            lambda p=rec.port_id: plugs.forget(config, p)))
        bridges.setdefault(rec.bridge, rec.network_id)
        orphans.append(o)

    for bridge, net_id in sorted(bridges.items()):
        links = ip_lib.host_links_matching(nl, names=(bridge,), master=bridge)
        br = next((l for l in links if l.ifname == bridge), None)
        ports = [l.ifname for l in links if l.master == bridge]
        acts = delete_idle_bridge(bridge, br, net_id, ports, removed)
        if acts:
            orphans.append(Orphan(f"bridge {bridge} (made for {net_id}, idle once the above go)",
                                  _actions(nl, acts)))

    if orphans and not [n for n in still_served
                        if ip_lib.namespace_exists(names.namespace_name(n))]:
        stop = Orphan("mdtool daemons of this state dir (no network left to serve)")
        for role in reversed(daemons.ROLES):
            pid = daemons.running(config, role)
            if pid is not None:
                stop.tasks.append(Task(f"stop mdtool {role} (pid {pid})",
                                       lambda r=role: daemons.stop(config, r)))
        if stop.tasks:
            orphans.append(stop)
    return orphans


def _bridge_of(nl: Netlink, network_id: str) -> str | None:
    """The bridge mdtool made for a network the registry forgot: found by its alias."""
    from mdtool.netns import ip_lib, names
    found = ip_lib.host_links_matching(nl, alias=names.bridge_alias(network_id))
    return found[0].ifname if found else None
