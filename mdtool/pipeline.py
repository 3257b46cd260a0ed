"""The DHCP-side steps of one node, composed from registry, netns and dnsmasq.

Each step is idempotent and returns what it changed (human text); an empty list means
"already as asked". The CLI and enable-isolated-metadata both call these. A step gets the
``Network`` model its caller read; the kernel is reached through the one netlink session
the node was given (``ip_lib.Netlink``), which its creator closes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mdtool import model
from mdtool.config import Config
from mdtool.errors import BadInput
from mdtool.plan import Action, Run, Step
from mdtool.registry import Registry

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink


def _apply(actions: list[Action]) -> list[str]:
    """Apply one command's actions in order, with rollback; what was done."""
    return Run(dry_run=False).apply(Step("", actions)).changes


@dataclass
class DhcpState:
    network: model.Network
    port: model.Port | None
    changes: list[str] = field(default_factory=list)


class Node:
    """This node (config.host) acting on the registry's networks through netlink session
    ``nl``."""

    def __init__(self, config: Config, registry: Registry, nl: Netlink):
        self.config, self.registry, self.nl = config, registry, nl

    # -- the DHCP port ------------------------------------------------------------------

    def dhcp(self, net: model.Network, *, create: bool) -> DhcpState:
        """The network and this node's DHCP port (reserved when ``create``; the network is
        read again when ``net`` did not have that port as it is now)."""
        if not any(s.enable_dhcp for s in net.subnets):
            raise BadInput(f"network {net.name} has no DHCP-enabled subnet: "
                           f"mdtool subnet-create {net.name} CIDR --no-gateway")
        port = self.own_dhcp_port(net)
        changes: list[str] = []
        if create:  # writes only when something is missing (see ensure_dhcp_port)
            had = port
            port, changed = self.registry.ensure_dhcp_port(net.id, self.config.host)
            if changed:
                ips = ", ".join(f.ip_address for f in port.fixed_ips)
                changes.append(f"reserve DHCP port {port.id[:8]} ({port.mac_address}, {ips})")
            if changed or had is None:
                net = self.registry.get_network(net.id)
        return DhcpState(net, port, changes)

    def own_dhcp_port(self, net: model.Network) -> model.Port | None:
        for p in net.ports:
            if p.device_owner == model.DHCP_OWNER and p.host == self.config.host:
                return p
        return None

    def release_dhcp_port(self, network_ref: str) -> list[str]:
        net = self.registry.get_network(network_ref)
        port = self.own_dhcp_port(net)
        if port is None:
            return []
        self.registry.delete_port(port.id)
        return [f"release DHCP port {port.id[:8]}"]

    # -- namespace ----------------------------------------------------------------------

    def netns_up(self, network_ref: str, *, dry_run: bool = False) -> list[str]:
        from mdtool.netns import dhcp_port
        st = self.dhcp(self.registry.get_network(network_ref), create=not dry_run)
        if st.port is None:  # dry run without a reserved port: describe, do not reserve
            return [f"reserve DHCP port on {st.network.name}",
                    f"create namespace qdhcp-{st.network.id} with the DHCP port, its addresses "
                    "and 169.254.169.254/32"]
        actions = dhcp_port.up(self.nl, st.network, st.port, dry_run=dry_run)
        if not dry_run and any(_adds_metadata_v6(a) for a in actions):
            self._wake_proxy_v6()
        if not dry_run:
            # The dhcp dir marks the network as served by this node (the proxy follows it).
            from mdtool.files import ensure_dir
            ensure_dir(self.config.dhcp_dir(st.network.id), 0o755)
        return st.changes + [a.text for a in actions]

    def netns_down(self, net: model.Network, *, dry_run: bool = False) -> list[str]:
        from mdtool.netns import dhcp_port
        actions = dhcp_port.down(self.nl, net.id, net.bridge, dry_run=dry_run,
                                 keep=self._others_ends(net))
        return [a.text for a in actions]

    def _others_ends(self, net: model.Network) -> list[str]:
        """Bridge ends of other nodes' DHCP ports on ``net``: not ours to delete."""
        from mdtool.netns import names
        return [names.bridge_end_name(p.id) for p in net.ports
                if p.device_owner == model.DHCP_OWNER and p.host != self.config.host]

    # -- dnsmasq ------------------------------------------------------------------------

    def _dnsmasq_state(self, network_ref: str) -> DhcpState:
        st = self.dhcp(self.registry.get_network(network_ref), create=False)
        if st.port is None:
            raise BadInput(f"network {st.network.name} has no DHCP port on {self.config.host}: "
                           f"run `mdtool netns up {st.network.name}` first")
        return st

    def dnsmasq_render(self, network_ref: str, output_dir: str | None = None) -> list[str]:
        from mdtool.dnsmasq import control
        st = self._dnsmasq_state(network_ref)
        changed = control.render_to_disk(self.config, st.network, st.port, output_dir=output_dir)
        return [f"write {n}" for n in changed]

    def dnsmasq_start(self, network_ref: str) -> list[str]:
        """Render and start dnsmasq as the model says: restart it when its command line
        changed (SIGHUP re-reads files, not the command line: MTU, ranges)."""
        st = self._dnsmasq_state(network_ref)
        return _apply(self.plan_dnsmasq(st.network, st.port))

    def dnsmasq_stop(self, network_ref: str) -> list[str]:
        from mdtool.dnsmasq import control
        net = self.registry.get_network(network_ref)
        return [f"stop dnsmasq for {net.name}"] if control.stop(self.config, net.id) else []

    def dnsmasq_reload(self, network_ref: str) -> list[str]:
        """Re-render; SIGHUP when a file changed; restart when the command line changed."""
        from mdtool.dnsmasq import control
        st = self._dnsmasq_state(network_ref)
        if control.manager(self.config, st.network, st.port).check().pid is None:
            raise BadInput(f"dnsmasq is not running for {st.network.name}: "
                           f"mdtool dnsmasq start {st.network.name}")
        return _apply(self.plan_dnsmasq(st.network, st.port))

    # -- plans (observe, then the actions that bring the node to the model) ---------------

    def plan_dnsmasq(self, net: model.Network, port: model.Port) -> list[Action]:
        from mdtool.dnsmasq import control
        return control.plan(self.config, net, port)

    def plan_netns_up(self, net: model.Network, port: model.Port) -> list[Action]:
        """The DHCP port's namespace, veth and addresses; creating the namespace is undone
        by taking the whole DHCP port down again."""
        from mdtool.netns import actions as netns_actions, dhcp_port
        planned = dhcp_port.up(self.nl, net, port, dry_run=True)
        out = []
        for a in planned:
            undo = (lambda: self.netns_down(net)) if a.op == "create_namespace" else None
            def do(a=a, wake=_adds_metadata_v6(a)):
                netns_actions.apply(self.nl, [a])
                if wake:
                    self._wake_proxy_v6()
            out.append(Action(a.text, do, undo))
        return out

    def _wake_proxy_v6(self) -> None:
        """The proxy looks for fe80::a9fe:a9fe now, not on its backed-off periodic look."""
        from mdtool import daemons
        daemons.wake_proxy(self.config, ipv6=True)

    def plan_netns_down(self, net: model.Network) -> list[Action]:
        from mdtool.netns import actions as netns_actions, dhcp_port
        planned = dhcp_port.down(self.nl, net.id, net.bridge, dry_run=True,
                                 keep=self._others_ends(net))
        return [Action(a.text, lambda a=a: netns_actions.apply(self.nl, [a])) for a in planned]

    def forget_dhcp_files(self, network_id: str) -> list[str]:
        d = self.config.dhcp_dir(network_id)
        if d.exists():
            shutil.rmtree(d)
            return [f"remove {d}"]
        return []


def _adds_metadata_v6(action) -> bool:
    """A netns action adding fe80::a9fe:a9fe, the address the proxy serves IPv6 metadata on."""
    from mdtool.netns import dhcp_port
    return action.op == "add_address" and action.args.get("cidr") == dhcp_port.METADATA_V6
