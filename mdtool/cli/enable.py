"""enable-isolated-metadata / disable-isolated-metadata: the whole pipeline in one command."""

from __future__ import annotations

import click

from mdtool.cli import complete

def _printer(ctx, dry_run: bool):
    counter = {"n": 0, "changes": 0}

    def on_step(step) -> None:
        counter["n"] += 1
        counter["changes"] += len(step.changes)
        if step.changes:
            mark = "[yellow]plan[/yellow]" if dry_run else "[green]changed[/green]"
            ctx.say(f"[bold]{counter['n']}. {step.name}[/bold]: {mark}")
            for c in step.changes:
                ctx.say(f"     {'would ' if dry_run else ''}{c}")
        else:
            ctx.say(f"[bold]{counter['n']}. {step.name}[/bold]: [dim]ok, nothing to do[/dim]")
        if step.note:
            ctx.say(f"     [dim]{step.note}[/dim]")

    return on_step, counter


@click.command("enable-isolated-metadata")
@click.argument("network", shell_complete=complete.networks)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.pass_obj
def enable_isolated_metadata(ctx, network, dry_run):
    """Give NETWORK's instances 169.254.169.254: DHCP port, namespace, dnsmasq with option 121,
    the metadata service, agent and proxy. Only what is missing is done; on failure, what this
    run did is rolled back."""
    from mdtool.enable import enable
    on_step, counter = _printer(ctx, dry_run)
    enable(ctx.config, ctx.registry, network, dry_run=dry_run, on_step=on_step)
    if dry_run:
        ctx.say(f"dry run: {counter['changes']} change(s) planned, nothing changed")
    elif counter["changes"]:
        ctx.say(f"[green]isolated metadata enabled on {network}[/green]: {counter['changes']} change(s); "
                f"check with: mdtool inspect {network}")
    else:
        ctx.say(f"isolated metadata already enabled on {network}: nothing changed")


@click.command("disable-isolated-metadata")
@click.argument("network", shell_complete=complete.networks)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.pass_obj
def disable_isolated_metadata(ctx, network, dry_run):
    """Remove NETWORK's namespace, dnsmasq and DHCP port; stop the shared daemons when no
    other network needs them."""
    from mdtool.enable import disable
    on_step, counter = _printer(ctx, dry_run)
    disable(ctx.config, ctx.registry, network, dry_run=dry_run, on_step=on_step)
    if dry_run:
        ctx.say(f"dry run: {counter['changes']} change(s) planned, nothing changed")
    elif counter["changes"]:
        ctx.say(f"isolated metadata disabled on {network}: {counter['changes']} change(s)")
    else:
        ctx.say(f"isolated metadata already disabled on {network}: nothing changed")
