"""systemd render: unit files for the three daemons, the alternative to mdtool's background mode."""

from __future__ import annotations

import click

from mdtool.cli.app import HelpGroup, report


@click.group("systemd", cls=HelpGroup)
def systemd():
    """systemd units for the proxy, agent and metadata daemons, and for `node run`."""


@systemd.command("render")
@click.option("--output-dir", default="/etc/systemd/system", show_default=True, metavar="DIR",
              help="Where the .service files go.")
@click.option("--mdtool", "mdtool_path", metavar="PATH",
              help="mdtool executable for ExecStart (default: the one running now).")
@click.pass_obj
def render(ctx, output_dir, mdtool_path):
    """Write the units of the proxy, agent and metadata service (hardened: read-only
    system, only the capabilities each daemon needs) and of `node run` (which starts and
    supervises dnsmasq and those three itself); says what changed.

    \b
    Then either the node:
      systemctl daemon-reload
      systemctl enable --now mdtool-node
    or the three daemons alone (not both):
      systemctl enable --now mdtool-metadata mdtool-agent mdtool-proxy
    """
    from mdtool import systemd as units
    db = click.get_current_context().find_root().params.get("db_url")  # only when given
    changes = units.write_units(ctx.config, output_dir, units.mdtool_executable(mdtool_path),
                                db_url=db)
    report(ctx, f"systemd render {output_dir}", changes)
