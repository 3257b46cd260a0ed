"""subnet-create, subnet-list, subnet-show, subnet-update, subnet-delete."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.model import IPV6_MODES
from mdtool.cli import records
from mdtool.cli.output import format_options
from mdtool.cli.resources.common import delete_each, emit_list, emit_one, parse_pairs, pass_ctx


@click.command("subnet-create")
@click.argument("network", shell_complete=complete.networks)
@click.argument("cidr")
@click.option("--name", default="", help="Subnet name.")
@click.option("--no-gateway", is_flag=True, help="No gateway: an isolated subnet, metadata via DHCP.")
@click.option("--gateway", metavar="IP", help="Gateway IP (default: the first host address).")
@click.option("--allocation-pool", "pools", multiple=True, metavar="start=A,end=B",
              help="Pool of addresses handed out (repeatable; default: the whole subnet).")
@click.option("--dns-nameserver", "dns", multiple=True, metavar="IP", help="DNS server (repeatable).")
@click.option("--host-route", "routes", multiple=True, metavar="destination=CIDR,nexthop=IP",
              help="Extra classless static route (repeatable).")
@click.option("--disable-dhcp", is_flag=True, help="No DHCP (and so no metadata route) on this subnet.")
@click.option("--ip-version", type=click.Choice(["4", "6"]), help="Checked against the CIDR.")
@click.option("--ipv6-address-mode", type=click.Choice(IPV6_MODES),
              help="IPv6: how instances get addresses (dnsmasq serves DHCPv6 for the dhcpv6 modes).")
@click.option("--ipv6-ra-mode", type=click.Choice(IPV6_MODES),
              help="IPv6: what router advertisements announce (same value as the address mode).")
@click.option("--project-id", metavar="P", help="Default: the network's project.")
@format_options
@pass_ctx
def subnet_create(ctx, network, cidr, name, no_gateway, gateway, pools, dns, routes, disable_dhcp,
                  ip_version, ipv6_address_mode, ipv6_ra_mode, project_id, fmt, columns):
    """Create a subnet on NETWORK.

    \b
    An isolated subnet, as in the story (metadata via DHCP option 121):
      mdtool subnet-create net1 172.17.17.0/24 --no-gateway --name=sub1
    """
    pool_specs = [(p["start"], p["end"]) for p in parse_pairs(pools, ("start", "end"), "--allocation-pool")]
    route_specs = [(r["destination"], r["nexthop"])
                   for r in parse_pairs(routes, ("destination", "nexthop"), "--host-route")]
    s = ctx.registry.create_subnet(
        network, cidr, name=name, gateway=gateway, no_gateway=no_gateway, pools=pool_specs,
        dns_nameservers=dns, host_routes=route_specs, enable_dhcp=not disable_dhcp,
        ip_version=int(ip_version) if ip_version else None, project_id=project_id,
        ipv6_address_mode=ipv6_address_mode, ipv6_ra_mode=ipv6_ra_mode)
    emit_one(records.subnet(s), fmt, columns, "Created a new subnet:")


@click.command("subnet-list")
@click.option("--network", metavar="NETWORK", shell_complete=complete.networks, help="Only this network's subnets.")
@format_options(listing=True)
@pass_ctx
def subnet_list(ctx, network, fmt, columns):
    """List subnets."""
    emit_list([records.subnet(s) for s in ctx.registry.list_subnets(network)],
              ["id", "name", "cidr", "allocation_pools"], fmt, columns)


@click.command("subnet-show")
@click.argument("subnet", shell_complete=complete.subnets)
@format_options
@pass_ctx
def subnet_show(ctx, subnet, fmt, columns):
    """Show a subnet (name or id)."""
    emit_one(records.subnet(ctx.registry.get_subnet(subnet)), fmt, columns)


@click.command("subnet-update")
@click.argument("subnet", shell_complete=complete.subnets)
@click.option("--name", help="New name.")
@click.option("--dns-nameserver", "dns", multiple=True, metavar="IP", help="Replace the DNS servers.")
@click.option("--no-dns-nameservers", is_flag=True, help="Remove every DNS server.")
@click.option("--host-route", "routes", multiple=True, metavar="destination=CIDR,nexthop=IP",
              help="Replace the host routes.")
@click.option("--no-host-routes", is_flag=True, help="Remove every host route.")
@click.option("--enable-dhcp/--disable-dhcp", default=None, help="Turn DHCP on or off.")
@format_options
@pass_ctx
def subnet_update(ctx, subnet, name, dns, no_dns_nameservers, routes, no_host_routes, enable_dhcp,
                  fmt, columns):
    """Change a subnet; `dnsmasq reload NETWORK` hands the change out."""
    route_specs = None
    if routes or no_host_routes:
        route_specs = [(r["destination"], r["nexthop"])
                       for r in parse_pairs(routes, ("destination", "nexthop"), "--host-route")]
    dns_list = list(dns) if dns or no_dns_nameservers else None
    s = ctx.registry.update_subnet(subnet, name=name, dns_nameservers=dns_list,
                                   host_routes=route_specs, enable_dhcp=enable_dhcp)
    emit_one(records.subnet(s), fmt, columns, "Updated subnet:")


@click.command("subnet-delete")
@click.argument("subnets", nargs=-1, required=True, metavar="SUBNET...",
                shell_complete=complete.subnets)
@pass_ctx
def subnet_delete(ctx, subnets):
    """Delete subnets (each refused while addresses are allocated on it)."""
    def delete(ref: str) -> list[str]:
        s = ctx.registry.delete_subnet(ref)
        return [f"Deleted subnet: {s.name or s.id} ({s.cidr})"]
    delete_each(ctx, "subnet", subnets, delete)


COMMANDS = [subnet_create, subnet_list, subnet_show, subnet_update, subnet_delete]
