"""proxy run, agent run, metadata run: the three daemons of the metadata path, in the foreground."""

from __future__ import annotations

import click

from mdtool.cli.app import HelpGroup


@click.group("proxy", cls=HelpGroup)
def proxy():
    """The metadata proxy: 169.254.169.254:80 in each DHCP namespace -> the agent's Unix socket."""


@proxy.command("run")
@click.option("--network", "networks", multiple=True, metavar="NETWORK",
              help="Serve this network (repeatable). Default: every network whose DHCP "
                   "namespace this node brought up (netns up), following networks as they "
                   "come and go.")
@click.pass_obj
def proxy_run(ctx, networks):
    """Run the proxy in the foreground (one process for many networks; SIGTERM stops it)."""
    import os
    import sys

    from mdtool.proxy.__main__ import argv
    ids = [ctx.registry.get_network(n).id for n in networks]
    cfg = ctx.config
    # The proxy's memory is the cost of proxying: exec the lean entry point, so that
    # neither the registry (SQLAlchemy) nor click/rich stay in the process.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv(str(cfg.state_dir), ids, cfg.config_file, ctx.verbose))


@click.group("agent", cls=HelpGroup)
def agent():
    """The metadata agent: finds the instance behind a request, signs it, forwards it to Nova."""


@agent.command("run")
@click.pass_obj
def agent_run(ctx):
    """Run the agent in the foreground on <state_dir>/metadata_proxy (SIGTERM stops it)."""
    from mdtool.agent.daemon import run
    raise SystemExit(run(ctx.config))


@click.group("metadata", cls=HelpGroup)
def metadata():
    """The Nova-compatible metadata service (OpenStack and EC2 trees) served from the registry."""


@metadata.command("run")
@click.option("--host", metavar="H",
              help="Also listen on TCP at this address (default: metadata_listen_host, "
                   "else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), metavar="P",
              help="Also listen on TCP at this port (default: metadata_listen_port, else 8775).")
@click.pass_obj
def metadata_run(ctx, host, port):
    """Run the metadata service in the foreground on <state_dir>/metadata (SIGTERM stops it).

    TCP only with --host/--port or metadata_listen_host/_port: any local user can reach a
    TCP port, and Nova's signature replays for ever (see docs/openstack.md)."""
    from mdtool.metadata.daemon import run
    raise SystemExit(run(ctx.config, host=host, port=port))
