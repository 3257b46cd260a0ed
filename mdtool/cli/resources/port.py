"""port-create, port-list, port-show, port-update, port-delete."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli import records
from mdtool.cli.output import format_options
from mdtool.cli.resources.common import delete_each, emit_list, emit_one, parse_pairs, pass_ctx

FIXED_IP_KEYS = ("subnet", "ip_address")


@click.command("port-create")
@click.argument("network", shell_complete=complete.networks)
@click.option("--name", default="", help="Port name.")
@click.option("--mac-address", metavar="MAC", help="Default: a free fa:16:3e:xx:xx:xx.")
@click.option("--fixed-ip", "fixed_ips", multiple=True, metavar="subnet=S,ip_address=IP",
              help="Address to hold (repeatable; either key may be left out; default: next free).")
@click.option("--device-id", metavar="INSTANCE", shell_complete=complete.instances, help="Instance (name or id) that owns the port.")
@click.option("--project-id", metavar="P", help="Default: the instance's, else the network's.")
@click.option("--port-security/--no-port-security", "port_security", default=True,
              show_default=True,
              help="Anti-spoofing rules on the bridge when plugged: only the port's MAC, "
                   "fixed IPs and DHCP as a client.")
@format_options
@pass_ctx
def port_create(ctx, network, name, mac_address, fixed_ips, device_id, project_id, port_security,
                fmt, columns):
    """Create a port on NETWORK; its address comes from the subnet's pool unless given."""
    specs = parse_pairs(fixed_ips, FIXED_IP_KEYS, "--fixed-ip", ()) if fixed_ips else None
    p = ctx.registry.create_port(network, name=name, mac_address=mac_address, fixed_ips=specs,
                                 device_id=device_id, project_id=project_id,
                                 port_security_enabled=port_security)
    emit_one(records.port(p), fmt, columns, "Created a new port:")


@click.command("port-list")
@click.option("--network", metavar="NETWORK", shell_complete=complete.networks, help="Only this network's ports.")
@click.option("--device-id", metavar="ID", help="Only ports of this device.")
@format_options(listing=True)
@pass_ctx
def port_list(ctx, network, device_id, fmt, columns):
    """List ports."""
    emit_list([records.port(p) for p in ctx.registry.list_ports(network, device_id)],
              ["id", "name", "mac_address", "fixed_ips", "device_owner"], fmt, columns)


@click.command("port-show")
@click.argument("port", shell_complete=complete.ports)
@format_options
@pass_ctx
def port_show(ctx, port, fmt, columns):
    """Show a port (name or id)."""
    emit_one(records.port(ctx.registry.get_port(port)), fmt, columns)


@click.command("port-update")
@click.argument("port", shell_complete=complete.ports)
@click.option("--name", help="New name.")
@click.option("--device-id", metavar="INSTANCE", shell_complete=complete.instances, help="Move the port to this instance ('' unbinds).")
@click.option("--fixed-ip", "fixed_ips", multiple=True, metavar="subnet=S,ip_address=IP",
              help="Replace the port's addresses.")
@click.option("--mac-address", metavar="MAC", help="New MAC address.")
@click.option("--port-security/--no-port-security", "port_security", default=None,
              help="Turn the port's anti-spoofing rules on or off.")
@format_options
@pass_ctx
def port_update(ctx, port, name, device_id, fixed_ips, mac_address, port_security, fmt, columns):
    """Change a port; the agent serves the change within a second."""
    specs = parse_pairs(fixed_ips, FIXED_IP_KEYS, "--fixed-ip", ()) if fixed_ips else None
    p = ctx.registry.update_port(port, name=name, device_id=device_id, fixed_ips=specs,
                                 mac_address=mac_address, port_security_enabled=port_security)
    if port_security is not None or specs is not None or mac_address is not None:
        _sync_port_security(ctx, p.network_id)
    emit_one(records.port(p), fmt, columns, "Updated port:")


@click.command("port-delete")
@click.argument("ports", nargs=-1, required=True, metavar="PORT...", shell_complete=complete.ports)
@pass_ctx
def port_delete(ctx, ports):
    """Delete ports (a plugged port is unplugged first); `dnsmasq reload NETWORK` stops
    their leases."""
    from mdtool.teardown import delete_port

    def delete(ref: str) -> list[str]:
        p, unplugged = delete_port(ctx.config, ctx.registry, ref)
        _sync_port_security(ctx, p.network_id)  # a tap another state dir plugged
        ips = ", ".join(f.ip_address for f in p.fixed_ips)
        return [f"unplug: {c}" for c in unplugged] + [f"Deleted port: {p.name or p.id} ({ips})"]
    delete_each(ctx, "port", ports, delete)


def _sync_port_security(ctx, network_id: str) -> None:
    """The rules of the network's ports plugged on this node follow the registry at once
    (another node's follow on its next port-plug)."""
    from mdtool.cli.app import netlink
    from mdtool.netns import portsec
    network = ctx.registry.get_network(network_id)
    with netlink() as nl:
        actions = portsec.sync(nl, network)
    for action in actions:
        ctx.say(f"port security: {action.text}")


COMMANDS = [port_create, port_list, port_show, port_update, port_delete]
