"""cleanup: remove this node's namespaces, bridges, veths and processes the registry forgot."""

from __future__ import annotations

import click

from mdtool.cli.app import netlink, report


@click.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
@click.pass_obj
def cleanup(ctx, dry_run):
    """Remove every namespace, bridge, veth and process of this node (its state dir) that
    the registry no longer knows: networks deleted, DHCP ports or plugged ports gone. Never
    touches another state dir's objects. --dry-run prints exactly what a real run does."""
    from mdtool import cleanup as domain
    with netlink() as nl:  # the tasks use it: they run inside the block
        orphans = domain.find(ctx.config, ctx.registry, nl)
        for o in orphans:
            ctx.say(f"orphan: {o.what}")
        tasks = [t for o in orphans for t in o.tasks]
        if not tasks:
            ctx.say("cleanup: nothing to clean up")
            return
        if dry_run:
            report(ctx, "cleanup", [t.text for t in tasks], dry_run=True)
            return
        for t in tasks:  # said as each is done: a failure leaves the done ones on screen
            t.do()
            ctx.say(f"  [green]✓[/green] {t.text}")
    ctx.say(f"cleanup: {len(tasks)} change(s) done")
