"""mdtool demo: an isolated network with two instances that read their metadata."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--keep", is_flag=True, help="Leave the demo up for exploring (remove it later with "
              "`mdtool demo --cleanup`).")
@click.option("--cleanup", is_flag=True, help="Remove a demo left up by --keep, and stop.")
@click.pass_obj
def demo(ctx, keep, cleanup):
    """Create an isolated network (no gateway) and two instances, enable isolated metadata, let
    each instance get DHCP and read 169.254.169.254, show what they received and the inspect view."""
    from rich.table import Table

    from mdtool.cli.app import make_console

    from mdtool import demo as d
    from mdtool.dhcpclient import lease
    from mdtool.errors import BadInput, MdtoolError

    out = make_console()
    say = lambda msg: ctx.console.print(f"[dim]{msg}[/dim]")  # noqa: E731
    cfg, reg = ctx.config, ctx.registry
    saved = d.state_file(cfg)
    if cleanup:
        if not saved.exists():
            ctx.say("no demo is up: nothing to do")
            return
        d.destroy(cfg, reg, d.Demo.load(saved), say)
        return
    if saved.exists():
        raise BadInput("a demo is already up (started with --keep): remove it with `mdtool demo --cleanup`")
    demo_ = None
    try:
        demo_ = d.create(cfg, reg, say)
        for inst in demo_.instances:
            routes = lease(inst.namespace)
            say(f"$ ip netns exec {inst.namespace} udhcpc -i eth0 -O staticroutes -s <own hook>")
            for r in routes:
                say(f"    {r}")
            d.fetch(inst)
        for inst in demo_.instances:
            t = Table(title=f"{inst.name}: GET http://169.254.169.254/openstack/latest/meta_data.json "
                            f"from {inst.ip}", title_justify="left", show_header=False)
            t.add_column("field", style="bold")
            t.add_column("value")
            for k, v in inst.received.items():
                t.add_row(k, v if isinstance(v, str) else str(v))
            out.print(t)
        from mdtool.cli.inspect import inspect as inspect_command
        out.rule(f"mdtool inspect {demo_.network_name}")
        try:
            click.get_current_context().invoke(inspect_command, network=demo_.network_id)
            inspect_ok = True
        except click.exceptions.Exit as e:  # inspect says which check failed, and exits 1
            inspect_ok = e.exit_code == 0
        ok = inspect_ok and all(i.received.get("uuid") == i.instance_id for i in demo_.instances)
        out.print("[bold green]both instances received their own metadata[/bold green]" if ok
                  else "[bold red]an instance did not receive its own metadata[/bold red]")
        if keep:
            out.print(f"kept: explore with `mdtool inspect {demo_.network_name}`, "
                      f"`ip netns exec {demo_.instances[0].namespace} curl "
                      f"http://169.254.169.254/openstack/latest/meta_data.json`; "
                      "remove with `mdtool demo --cleanup`")
        if not ok:
            raise SystemExit(1)
    except (MdtoolError, KeyboardInterrupt):
        keep = False
        raise
    finally:
        if demo_ is not None and not keep:
            d.destroy(cfg, reg, demo_, say)
