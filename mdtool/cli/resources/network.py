"""net-create, net-list, net-show, net-update, net-delete."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli import records
from mdtool.cli.output import format_options
from mdtool.cli.resources.common import delete_each, emit_list, emit_one, pass_ctx


@click.command("net-create")
@click.argument("name")
@click.option("--bridge", metavar="BR", help="Linux bridge of the network (default brq<id[:11]>; "
              "an existing bridge, e.g. libvirt's virbr0, is used as it is).")
@click.option("--mtu", type=click.IntRange(68, 65535), default=1500, show_default=True,
              help="MTU that DHCP hands out (option 26) and the DHCP port uses.")
@click.option("--project-id", default="admin", show_default=True, metavar="P",
              help="Project (tenant) that owns the network.")
@format_options
@pass_ctx
def net_create(ctx, name, bridge, mtu, project_id, fmt, columns):
    """Create a network."""
    n = ctx.registry.create_network(name, bridge=bridge, mtu=mtu, project_id=project_id)
    emit_one(records.network(n), fmt, columns, "Created a new network:")


@click.command("net-list")
@format_options(listing=True)
@pass_ctx
def net_list(ctx, fmt, columns):
    """List networks."""
    emit_list([records.network_list_row(n) for n in ctx.registry.list_networks()],
              ["id", "name", "subnets"], fmt, columns)


@click.command("net-show")
@click.argument("network", shell_complete=complete.networks)
@format_options
@pass_ctx
def net_show(ctx, network, fmt, columns):
    """Show a network (name or id)."""
    emit_one(records.network(ctx.registry.get_network(network)), fmt, columns)


@click.command("net-update")
@click.argument("network", shell_complete=complete.networks)
@click.option("--name", help="New name.")
@click.option("--mtu", type=click.IntRange(68, 65535), help="New MTU (dnsmasq reload hands it out).")
@format_options
@pass_ctx
def net_update(ctx, network, name, mtu, fmt, columns):
    """Change a network's name or MTU."""
    n = ctx.registry.update_network(network, name=name, mtu=mtu)
    emit_one(records.network(n), fmt, columns, "Updated network:")


@click.command("net-delete")
@click.argument("networks", nargs=-1, required=True, metavar="NETWORK...",
                shell_complete=complete.networks)
@pass_ctx
def net_delete(ctx, networks):
    """Delete networks and their subnets (each refused while it has ports or is served)."""
    from mdtool.teardown import delete_network

    def delete(ref: str) -> list[str]:
        n = delete_network(ctx.config, ctx.registry, ref)
        return [f"Deleted network: {n.name} ({n.id})"]
    delete_each(ctx, "network", networks, delete)


COMMANDS = [net_create, net_list, net_show, net_update, net_delete]
