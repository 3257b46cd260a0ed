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


def _check_targets(networks, all_: bool) -> None:
    from mdtool.errors import BadInput
    if all_ and networks:
        raise BadInput("give NETWORK names or --all, not both")
    if not all_ and not networks:
        raise click.UsageError("missing NETWORK (or --all)")


def _pick(read, ref: str):
    """The network ``ref`` names exactly (its id, or the one network with that name) in the
    batch's read; None leaves a prefix, an ambiguous or an unknown name to the registry
    (enable looks it up in its registry step, which says why it fails)."""
    same = [n for n in read if n.id == ref] or [n for n in read if n.name == ref]
    return same[0] if len(same) == 1 else None


def _many(ctx, action: str, fn, networks, all_: bool, dry_run: bool,
          as_json: bool = False) -> None:
    """Several networks: one progress bar on stderr and a line per network; a network that
    fails does not stop the others, and the exit code says whether any failed. ``as_json``:
    also what changed, per network and step, as a JSON array on stdout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mdtool.cli.app import netlink
    from mdtool.enable import as_read, batch
    from mdtool.errors import MdtoolError
    from mdtool.node import node_lock
    # One registry read and one netlink session for the whole batch; each network is still
    # observed in full (kernel, files, processes) and repaired where it drifted, and read
    # again when the registry moved since (as_read).
    revision, read = ctx.registry.networks_with_ports()
    if all_:
        targets = [(n.name or n.id, n) for n in read if any(s.enable_dhcp for s in n.subnets)]
    else:
        targets = [(ref, _pick(read, ref)) for ref in dict.fromkeys(networks)]
    total_changes = 0
    report: dict[int, dict] = {}  # by target: the JSON keeps the targets' order
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())

    def failure(i: int, net: str, error: str, steps: list[dict]) -> None:
        report[i] = {"network": net, "ok": False, "error": error, "steps": steps}
        progress.console.print(f"[red]✗[/red] {net}: {error}")

    def success(i: int, net: str, changes: int, steps: list[dict]) -> None:
        nonlocal total_changes
        report[i] = {"network": net, "ok": True, "changes": changes,
                     "dry_run": dry_run, "steps": steps}
        total_changes += changes
        what = (f"{changes} change(s) {'planned' if dry_run else 'done'}" if changes
                else "nothing to do")
        progress.console.print(f"[green]✓[/green] {net}: {what}")

    # networks whose enable handed its wait for the proxy to the batch: reported once the
    # batch's one wait has answered
    waiting: list[tuple[int, str, int, list[dict], int]] = []
    with netlink() as nl, batch(ctx.config) as b, \
            Progress(*columns, console=ctx.console, transient=True,
                     disable=not ctx.console.is_terminal) as progress:
        task = progress.add_task(action, total=len(targets))
        for i, (net, model) in enumerate(targets):
            changes = 0
            steps: list[dict] = []

            def on_step(step, net=net, steps=steps) -> None:
                nonlocal changes
                changes += len(step.changes)
                steps.append({"step": step.name, "changes": [str(c) for c in step.changes]})
                progress.update(task, description=f"{action} {net}: {step.name}")

            try:
                target = net if model is None else as_read(ctx.registry, model, revision)
                with node_lock(ctx.config):
                    fn(ctx.config, ctx.registry, nl, target, dry_run=dry_run, on_step=on_step,
                       batch=b)
            except MdtoolError as e:
                failure(i, net, str(e), steps)
                progress.advance(task)
                continue
            deferred = b.take_deferred()
            if deferred is None:
                success(i, net, changes, steps)
                progress.advance(task)
            else:
                waiting.append((i, net, changes, steps, id(deferred[1])))
        if waiting:
            progress.update(task, description=f"{action}: waiting for the proxy to serve "
                                              f"{len(waiting)} network(s)")
        late = b.finish()
        for i, net, changes, steps, key in waiting:
            if key in late:
                failure(i, net, late[key], steps)
            else:
                success(i, net, changes, steps)
            progress.advance(task)
    failed = [r["network"] for _, r in sorted(report.items()) if not r["ok"]]
    if as_json:
        import json
        click.echo(json.dumps([report[i] for i in sorted(report)], indent=2))
    done = len(targets) - len(failed)
    ctx.say(f"{action}: {done} of {len(targets)} network(s) ok, {total_changes} change(s)"
            + (" planned, nothing changed" if dry_run else ""))
    if failed:
        from mdtool.cli.app import abort
        abort(f"{action} failed on {len(failed)} network(s): {', '.join(failed)}", 1)


def _run(ctx, action: str, fn, networks, all_: bool, dry_run: bool, done: str,
         fmt: str = "table") -> None:
    """One network: every step as it happens and a summary; several: a progress bar.
    -f json: what changed, per network and step, on stdout (one network too)."""
    _check_targets(networks, all_)
    if len(set(networks)) != 1 or all_ or fmt == "json":
        _many(ctx, action, fn, networks, all_, dry_run, as_json=fmt == "json")
        return
    network = networks[0]
    from mdtool.cli.app import netlink
    from mdtool.node import node_lock
    on_step, counter = _printer(ctx, dry_run)
    with netlink() as nl, node_lock(ctx.config):  # a `node run` of this node waits, and so do we
        fn(ctx.config, ctx.registry, nl, network, dry_run=dry_run, on_step=on_step)
    if dry_run:
        ctx.say(f"dry run: {counter['changes']} change(s) planned, nothing changed")
    elif counter["changes"]:
        hint = f"; check with: mdtool inspect {network}" if done == "enabled" else ""
        ctx.say(f"[green]isolated metadata {done} on {network}[/green]: "
                f"{counter['changes']} change(s){hint}")
    else:
        ctx.say(f"isolated metadata already {done} on {network}: nothing changed")


@click.command("enable-isolated-metadata")
@click.argument("networks", nargs=-1, metavar="NETWORK...", shell_complete=complete.networks)
@click.option("--all", "all_", is_flag=True, help="Every network with a DHCP-enabled subnet.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-f", "--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True, help="json: what changed, per network and step, on stdout.")
@click.pass_obj
def enable_isolated_metadata(ctx, networks, all_, dry_run, fmt):
    """Give NETWORK's instances 169.254.169.254: DHCP port, namespace, dnsmasq with option 121,
    the metadata service, agent and proxy. Only what is missing is done; on failure, what this
    run did is rolled back. Several networks (or --all) show a progress bar."""
    from mdtool.enable import enable
    _run(ctx, "enable-isolated-metadata", enable, networks, all_, dry_run, "enabled", fmt)


@click.command("disable-isolated-metadata")
@click.argument("networks", nargs=-1, metavar="NETWORK...", shell_complete=complete.networks)
@click.option("--all", "all_", is_flag=True, help="Every network with a DHCP-enabled subnet.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-f", "--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True, help="json: what changed, per network and step, on stdout.")
@click.pass_obj
def disable_isolated_metadata(ctx, networks, all_, dry_run, fmt):
    """Remove NETWORK's namespace, dnsmasq and DHCP port; stop the shared daemons when no
    other network needs them."""
    from mdtool.enable import disable
    _run(ctx, "disable-isolated-metadata", disable, networks, all_, dry_run, "disabled", fmt)
