"""port-plug / port-unplug: a namespace wired to a port, as an instance or container."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli.app import netlink, report


def _check_namespace_name(name: str) -> None:
    import re
    from mdtool.errors import BadInput
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name.startswith("qdhcp-"):
        raise BadInput(f"invalid namespace name {name!r}: letters, digits, . _ - (not qdhcp-…)")


@click.command("port-plug")
@click.argument("port", shell_complete=complete.ports)
@click.argument("namespace")
@click.option("--ifname", default="eth0", show_default=True, help="Interface name in NAMESPACE.")
@click.option("--dhcp", is_flag=True, help="Then get a lease in NAMESPACE (udhcpc with option "
              "121 and mdtool's own hook, which never touches the host's resolv.conf).")
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.pass_obj
def port_plug(ctx, port, namespace, ifname, dhcp, dry_run):
    """Create NAMESPACE attached to PORT's network with the port's MAC; with --dhcp, also
    configure it by DHCP, as an instance booting."""
    from mdtool import plugs
    _check_namespace_name(namespace)
    p = ctx.registry.get_port(port)
    net = ctx.registry.get_network(p.network_id)
    with netlink() as nl:
        changes = plugs.plug(ctx.config, nl, p, net, namespace, ifname=ifname, dry_run=dry_run)
    report(ctx, f"port-plug {port} {namespace}", changes, dry_run)
    if dhcp and not dry_run:
        from mdtool.dhcpclient import lease
        for route in lease(namespace, ifname):
            ctx.say(f"  {namespace}: {route}")


@click.command("port-unplug")
@click.argument("port", shell_complete=complete.ports)
@click.argument("namespace")
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.pass_obj
def port_unplug(ctx, port, namespace, dry_run):
    """Remove NAMESPACE, both ends of its veth to PORT, and the network's bridge when mdtool
    created it and PORT was the last it carried."""
    from mdtool.teardown import unplug_port
    report(ctx, f"port-unplug {port} {namespace}",
           unplug_port(ctx.config, ctx.registry, port, namespace, dry_run=dry_run), dry_run)
