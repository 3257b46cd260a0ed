"""mdtool logs: the access lines of proxy, agent and metadata for a network or an instance."""

from __future__ import annotations

import click

from mdtool.cli import complete
from mdtool.cli.app import abort


def _scope(ctx, network, instance):
    from mdtool.accesslog import Scope
    reg = ctx.registry
    if instance:
        inst = reg.get_instance(instance)
        ports = reg.list_ports(device_id=inst.id)
        return Scope(instance_ids=frozenset({inst.id}),
                     addresses=frozenset((p.network_id, f.ip_address)
                                         for p in ports for f in p.fixed_ips))
    if network:
        net = reg.get_network(network)
        insts = {p.device_id for p in reg.list_ports(net.id) if p.device_id}
        return Scope(network_ids=frozenset({net.id}), instance_ids=frozenset(insts))
    return Scope()


@click.command("logs")
@click.option("--network", metavar="NETWORK", shell_complete=complete.networks,
              help="Only requests on this network (name or id).")
@click.option("--instance", metavar="VM", shell_complete=complete.instances,
              help="Only this instance's requests (name or id).")
@click.option("-n", "--lines", type=click.IntRange(0), default=50, show_default=True,
              help="How many of the last lines to print (0: all).")
@click.option("--follow", is_flag=True, help="Keep printing new lines as they come (Ctrl-C stops).")
@click.pass_obj
def logs(ctx, network, instance, lines, follow):
    """Access lines of the proxy, agent and metadata service, merged in time order.

    One request shows up once per daemon it crossed, so a failure shows where it stopped:
    the proxy's line without an agent line means the agent never saw it.
    """
    from mdtool.accesslog import log_paths, merged
    if network and instance:
        abort("--network and --instance exclude each other", 2)
    scope = _scope(ctx, network, instance)
    paths = log_paths(ctx.config)
    found = merged(paths, scope)
    for a in found[-lines:] if lines else found:
        click.echo(a.line())
    if follow:
        _follow(paths, scope)


def _follow(paths, scope) -> None:
    import time

    from mdtool.accesslog import parse
    offsets = {p: (p.stat().st_size if p.exists() else 0) for p in paths}
    try:
        while True:
            for p in paths:
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                if size < offsets[p]:
                    offsets[p] = 0  # rotated or truncated: read the new file from its start
                if size == offsets[p]:
                    continue
                with open(p, "rb") as f:
                    f.seek(offsets[p])
                    chunk = f.read(size - offsets[p])
                complete_part = chunk[:chunk.rfind(b"\n") + 1]  # a half-written line waits
                offsets[p] += len(complete_part)
                for raw in complete_part.decode("utf-8", "replace").split("\n"):
                    a = parse(raw)
                    if a is not None and scope.keeps(a):
                        click.echo(a.line())
            time.sleep(0.2)
    except KeyboardInterrupt:
        return
