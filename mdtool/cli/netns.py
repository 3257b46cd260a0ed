"""netns up / down / list: the namespace qdhcp-<network_id> and its DHCP port."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli.app import HelpGroup, node, report
from mdtool.cli.output import format_options, listing


@click.group("netns", cls=HelpGroup)
def netns():
    """The DHCP namespace of a network: qdhcp-<network_id>, its DHCP port and 169.254.169.254."""


@netns.command("up")
@click.argument("network", shell_complete=complete.networks)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.pass_obj
def up(ctx, network, dry_run):
    """Create the bridge, namespace and DHCP port veth of NETWORK (completes one left half built)."""
    with node(ctx) as n:
        report(ctx, f"netns up {network}", n.netns_up(network, dry_run=dry_run), dry_run)


@netns.command("down")
@click.argument("network", shell_complete=complete.networks)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.pass_obj
def down(ctx, network, dry_run):
    """Remove the namespace, both veth ends, and the bridge if mdtool created it and it is idle."""
    from mdtool.teardown import netns_down
    report(ctx, f"netns down {network}",
           netns_down(ctx.config, ctx.registry, network, dry_run=dry_run), dry_run)


@netns.command("list")
@format_options(listing=True)
@click.pass_obj
def list_(ctx, fmt, columns):
    """DHCP namespaces on this host and whether each matches the registry."""
    from mdtool.netns import dhcp_port, names
    present = set(dhcp_port.list_namespaces())
    nets = {n.id: n for n in ctx.registry.list_networks()}
    rows = []
    with node(ctx) as this:
        for ns in sorted(present | {names.namespace_name(i) for i in nets}):
            nid = names.network_id_of_namespace(ns)
            net = nets.get(nid)
            if ns not in present:
                if not ctx.registry.dhcp_ports(nid):
                    continue  # never brought up: nothing to report
                state = "missing (mdtool netns up)"
            elif net is None:
                state = ("not in the registry: an orphan of this node (mdtool cleanup)"
                         if ctx.config.dhcp_dir(nid).is_dir() else
                         "not in the registry (another state dir's)")
            else:
                plan = this.netns_up(nid, dry_run=True)
                state = "ok" if not plan else f"drift: {len(plan)} change(s) needed (mdtool netns up)"
            rows.append({"namespace": ns, "network": net.name if net else "", "state": state})
    text = listing(rows, ["namespace", "network", "state"], fmt, columns)
    if text:
        click.echo(text)
