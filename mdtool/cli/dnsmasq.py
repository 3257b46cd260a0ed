"""dnsmasq render / start / stop / reload: DHCP with the metadata route (option 121)."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli.app import HelpGroup, node, report


@click.group("dnsmasq", cls=HelpGroup)
def dnsmasq():
    """dnsmasq of a network, with Neutron's host, opts and addn_hosts files."""


@dnsmasq.command("render")
@click.argument("network", shell_complete=complete.networks)
@click.option("--output-dir", metavar="DIR",
              help="Write here instead of <state_dir>/dhcp/<network_id>/.")
@click.pass_obj
def render(ctx, network, output_dir):
    """Write host, opts, addn_hosts and leases (atomically, only when they change)."""
    with node(ctx) as n:
        report(ctx, f"dnsmasq render {network}", n.dnsmasq_render(network, output_dir))


@dnsmasq.command("start")
@click.argument("network", shell_complete=complete.networks)
@click.pass_obj
def start(ctx, network):
    """Start dnsmasq inside the network's namespace (renders first)."""
    with node(ctx) as n:
        report(ctx, f"dnsmasq start {network}", n.dnsmasq_start(network))


@dnsmasq.command("stop")
@click.argument("network", shell_complete=complete.networks)
@click.pass_obj
def stop(ctx, network):
    """Stop the network's dnsmasq."""
    with node(ctx) as n:
        report(ctx, f"dnsmasq stop {network}", n.dnsmasq_stop(network))


@dnsmasq.command("reload")
@click.argument("network", shell_complete=complete.networks)
@click.pass_obj
def reload(ctx, network):
    """Re-render and SIGHUP dnsmasq when a file changed (new or deleted ports, routes)."""
    with node(ctx) as n:
        report(ctx, f"dnsmasq reload {network}", n.dnsmasq_reload(network))
