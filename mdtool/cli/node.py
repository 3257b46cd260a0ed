"""node run: this network node's own loop (Neutron's DHCP agent in one process)."""

from __future__ import annotations

import click

from mdtool.cli.app import HelpGroup


@click.group("node", cls=HelpGroup)
def node():
    """This network node: keep what the registry says it serves converged."""


@node.command("run")
@click.option("--resync-interval", type=click.FloatRange(min=1.0), default=60.0,
              show_default=True, metavar="S",
              help="Seconds between full resyncs (enable over every served network).")
@click.option("--cleanup", is_flag=True,
              help="On SIGTERM tear this node's namespaces, dnsmasq and daemons down "
                   "(default: leave DHCP and metadata serving).")
@click.pass_obj
def node_run(ctx, resync_interval, cleanup):
    """Run in the foreground: follow the registry's changes (dnsmasq reloaded within a
    second on every node serving the network), start again any dnsmasq, proxy, agent or
    metadata service that dies, resync everything periodically. SIGTERM exits 0."""
    from mdtool import logs
    from mdtool.node import run
    logs.setup(ctx.config, "node", verbose=ctx.verbose)
    raise SystemExit(run(ctx.config, ctx.registry, resync_interval=resync_interval,
                         cleanup=cleanup))
