"""mdtool's command line: thin commands over the domain modules."""

from __future__ import annotations

import logging
import sys

import click

from mdtool import __version__
from mdtool.cli.app import Ctx, MdtoolGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MdtoolGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--state-dir", envvar="MDTOOL_STATE_DIR", metavar="DIR",
              help="State directory (env MDTOOL_STATE_DIR; default /var/lib/mdtool).")
@click.option("--db", "db_url", envvar="MDTOOL_DB", metavar="URL",
              help="Registry database URL (env MDTOOL_DB; default sqlite:///<state_dir>/mdtool.db; "
                   "postgresql://… works too).")
@click.option("--config-file", envvar="MDTOOL_CONFIG", metavar="PATH",
              help="INI config file (env MDTOOL_CONFIG; default /etc/mdtool/mdtool.ini when it exists).")
@click.option("--host", "node_host", envvar="MDTOOL_HOST", metavar="NAME",
              help="Node identity for DHCP ports and daemons (env MDTOOL_HOST; default: hostname).")
@click.option("-v", "--verbose", count=True, help="More output (-vv: debug); tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(__version__, "--version", prog_name="mdtool")
@click.pass_context
def cli(ctx: click.Context, state_dir, db_url, config_file, node_host, verbose, quiet):
    """Metadata for instances on isolated networks, the Neutron way, one step per command.

    \b
    Typical flow (or all at once: mdtool enable-isolated-metadata NET):
      mdtool net-create net1
      mdtool subnet-create net1 172.17.17.0/24 --no-gateway --name=sub1
      mdtool instance-create vm1 --user-data ud.txt --key-name k --public-key ~/.ssh/id_ed25519.pub
      mdtool port-create net1 --device-id vm1
      mdtool netns up net1 && mdtool dnsmasq start net1
      mdtool agent run & mdtool metadata run & mdtool proxy run &
      mdtool inspect net1
    """
    ctx.obj = Ctx(state_dir=state_dir, db_url=db_url, config_file=config_file, host=node_host,
                  verbose=verbose, quiet=quiet)
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from mdtool.cli import resources
    for cmd in resources.COMMANDS:
        cli.add_command(cmd)
    import importlib
    for mod, names in (
        ("mdtool.cli.netns", ["netns"]),
        ("mdtool.cli.dnsmasq", ["dnsmasq"]),
        ("mdtool.cli.plug", ["port_plug", "port_unplug"]),
        ("mdtool.cli.daemons", ["proxy", "agent", "metadata"]),
        ("mdtool.cli.enable", ["enable_isolated_metadata", "disable_isolated_metadata"]),
        ("mdtool.cli.inspect", ["inspect"]),
        ("mdtool.cli.logs", ["logs"]),
        ("mdtool.cli.node", ["node"]),
        ("mdtool.cli.cleanup", ["cleanup"]),
        ("mdtool.cli.demo", ["demo"]),
        ("mdtool.cli.config", ["config"]),
        ("mdtool.cli.systemd", ["systemd"]),
        ("mdtool.cli.bench", ["bench"]),
        ("mdtool.cli.completion", ["completion"]),
    ):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        for n in names:
            cli.add_command(getattr(m, n))


_register()


def main(argv: list[str] | None = None) -> None:
    cli.main(argv, prog_name="mdtool")
