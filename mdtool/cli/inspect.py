"""inspect [NETWORK]: what the operator of the 2013 story typed by hand, in one look,
plus health checks and an end-to-end probe (read only)."""

from __future__ import annotations

import sys

import click

from mdtool.cli import complete
from mdtool.cli.app import abort, make_console, netlink


@click.command("inspect")
@click.argument("network", required=False, shell_complete=complete.networks)
@click.option("--port", "port_ref", metavar="PORT", shell_complete=complete.ports,
              help="This port's view (host file, lease, plug, route, last request) and the "
                   "probe as it (default probe: the first port with an instance).")
@click.option("--instance", "instance_ref", metavar="VM", shell_complete=complete.instances,
              help="The same view for this instance's port on NETWORK.")
@click.option("-f", "--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True, help="Output format.")
@click.pass_obj
def inspect(ctx, network, port_ref, instance_ref, fmt):
    """Show NETWORK's namespace, addresses, routes, sockets, dnsmasq and daemons as the
    usual commands would, then check every piece (one cause per fault) and probe the
    metadata path. Without NETWORK: one line and a row per network this node serves, and
    what the registry no longer knows (fix: mdtool cleanup). Exit 1 when a check fails."""
    import json

    from mdtool.inspect import inspect_network
    from mdtool.inspect.report import to_dict

    if port_ref and instance_ref:
        abort("--port and --instance exclude each other", 2)
    if not network:
        if port_ref or instance_ref:
            abort(f"{'--port' if port_ref else '--instance'} needs a NETWORK", 2)
        return _node_summary(ctx, fmt)
    with netlink() as nl:
        report = inspect_network(ctx.config, ctx.registry, nl, network, port_ref, instance_ref)
    if fmt == "json":
        click.echo(json.dumps(to_dict(report), indent=2))
    else:
        _show(_console(), report)
    failed = report.failed
    if failed:
        ctx.say(f"[red]{len(failed)} check(s) failed[/red]: "
                + "; ".join(c.name for c in failed))
        raise click.exceptions.Exit(1)
    return 0


def _console():
    # soft_wrap: rich never breaks a printed line (a UUID stays whole at any width)
    return make_console(width=None if sys.stdout.isatty() else 160)


def _node_summary(ctx, fmt: str) -> int:
    """Every network this node serves: one summary line and a row per network; the
    orphans the registry no longer knows, with the command that removes them."""
    import json

    from mdtool import cleanup
    from mdtool.enable import enabled_networks
    from mdtool.errors import NotFound
    from mdtool.inspect import inspect_network, summary
    from mdtool.inspect.report import to_dict

    known = []
    for ref in enabled_networks(ctx.config):
        try:
            ctx.registry.get_network(ref)
        except NotFound:
            continue  # an orphan: cleanup lists it
        known.append(ref)
    with netlink() as nl:
        orphans = [o.what for o in cleanup.find(ctx.config, ctx.registry, nl)]
        if not known and not orphans:
            ctx.say("no network is served by this node (enable one with: "
                    "mdtool enable-isolated-metadata NETWORK)")
            return 0
        reports = [inspect_network(ctx.config, ctx.registry, nl, ref) for ref in known]
    line = summary.line(reports, orphans)
    ok = all(r.ok for r in reports) and not orphans
    if fmt == "json":
        click.echo(json.dumps({"summary": line, "ok": ok, "networks": [to_dict(r) for r in reports],
                               "orphans": orphans, "orphans_fix": "mdtool cleanup" if orphans else ""},
                              indent=2))
    else:
        from rich.text import Text
        console = _console()
        console.print(Text(line, style="bold" if ok else "bold red"))
        rows = summary.rows(reports)
        if rows:
            w = max(len("network"), *(len(r["network"]) for r in rows))
            console.print(Text(f"{'network':<{w}}  status  {'id':<36}  cause", style="bold"))
            for r in rows:
                console.print(Text(f"{r['network']:<{w}}  {r['status']:<6}  {r['id']:<36}  {r['cause']}"))
                if r["fix"]:
                    console.print(Text(f"{'':<{w}}  {'':<6}  {'':<36}  fix: {r['fix']}"))
        if orphans:
            console.print(Text("orphans (fix: mdtool cleanup):", style="bold"))
            for what in orphans:
                console.print(Text(f"  {what}"))
    if not ok:
        raise click.exceptions.Exit(1)
    return 0


def _block(console, heading: str, text: str) -> None:
    from rich.text import Text
    console.print(Text(f"# {heading}", style="bold cyan"))
    console.print(Text(text) if text else Text("(nothing)", style="dim"))
    console.print()


def _show(console, report) -> None:
    from rich.table import Table
    from rich.text import Text

    from mdtool.inspect import layout

    o = report.observation
    ns = o.namespace
    exec_ = f"ip netns exec {ns}"
    console.print(Text(f"── network {o.network.name} ({o.network.id}) ──", style="bold"))
    served = ", ".join(o.network.hosts) or "no node (mdtool enable-isolated-metadata " + o.ref + ")"
    console.print(Text(f"served by: {served}; this node: {o.host}"))
    _block(console, f"ip netns | grep {ns}",
           ns if o.namespace_exists else f"(missing: no namespace {ns})")
    if o.namespace_exists:
        _block(console, f"{exec_} ip -4 a", layout.ip_addr(o.links, o.addresses, 4))
        if any(a.family == 6 and a.ifname != "lo" for a in o.addresses):
            _block(console, f"{exec_} ip -6 a", layout.ip_addr(o.links, o.addresses, 6))
        _block(console, f"{exec_} route -n", layout.route_n(o.routes))
        if any(s.ip_version == 6 for s in o.network.subnets):
            _block(console, f"{exec_} route -n -A inet6", layout.route6_n(o.routes))
        _block(console, f"{exec_} netstat -anpt",
               layout.netstat_anpt(o.sockets, {a.address for a in o.addresses}))
    d = o.dnsmasq
    if d is not None:
        if d.pid:
            _block(console, f"ps -o args= --pid {d.pid}", " ".join(d.cmdline or []))
        else:
            _block(console, f"cat {d.pidfile}", "(dnsmasq is not running)")
        opts = d.files.get("opts")
        _block(console, f"cat {opts.path if opts else d.pidfile.rsplit('/', 1)[0] + '/opts'}",
               "\n".join(d.opts_lines) if d.opts_lines is not None else "(no opts file)")

    ps = o.port_security
    if ps is not None and (ps.live or ps.expected):
        _block(console, f"nft list table bridge {ps.table}",
               (ps.live or "(missing)").rstrip("\n"))
    console.print(Text("# mdtool daemons", style="bold cyan"))
    daemons = Table(box=None, pad_edge=False)
    for col in ("role", "state", "pid", "log"):
        daemons.add_column(col)
    for role, s in o.daemons.items():
        daemons.add_row(role, "[green]running[/green]" if s.running else "[red]not running[/red]",
                        str(s.pid or "-"), s.log)
    console.print(daemons)
    console.print()

    _checks(console, "# checks", report.checks)
    p = o.probe
    console.print()
    console.print(Text("# probe", style="bold cyan"))
    if p.agent is not None:
        console.print(Text(f"agent socket, as port {p.port_id} ({p.port_ip}) of instance "
                           f"{p.instance_id}: {p.agent.describe()}"
                           + (f", uuid {p.uuid}" if p.uuid else "")))
    else:
        console.print(Text(f"agent: skipped: {p.skipped}"))
    if p.proxy is not None:
        console.print(Text(f"proxy from inside {ns} (source: the namespace's own address): "
                           f"{p.proxy.describe()}"))
    console.print()
    v = report.instance
    if v is not None:
        who = f"instance {v.instance.name} ({v.instance.id})" if v.instance else "no instance"
        _checks(console, f"# port {v.port.id} ({v.port.mac_address}, {', '.join(v.ips)}): {who}",
                report.instance_checks)
        console.print()


def _checks(console, heading: str, checks) -> None:
    from rich.text import Text
    console.print(Text(heading, style="bold cyan"))
    # Lines, not a table: a table folds a long detail mid-UUID at 80 columns.
    style = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red"),
             "skip": ("skip", "dim")}
    width = max(len(c.name) for c in checks)
    console.print(Text(f"{'verdict':<7}  {'check':<{width}}  detail", style="bold"))
    for c in checks:
        word, colour = style[c.status]
        console.print(Text.assemble((f"{word:<7}", colour), f"  {c.name:<{width}}  {c.detail}"))
    for c in checks:
        if not c.ok:
            console.print(Text.assemble(("✗ ", "red"), (c.name, "bold"), f": {c.cause}"))
            console.print(Text.assemble("    fix: ", (c.fix, "bold")))
