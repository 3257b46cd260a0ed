"""systemd render: unit files for the three daemons, the alternative to mdtool's background mode."""

from __future__ import annotations

import click

from mdtool.cli.app import HelpGroup, abort, report


@click.group("systemd", cls=HelpGroup)
def systemd():
    """systemd units for the proxy, agent and metadata daemons, and for `node run`."""


@systemd.command("render")
@click.option("--output-dir", metavar="DIR",
              help="Write the .service files and their EnvironmentFile here (e.g. "
                   "/etc/systemd/system); without it they are printed, secrets masked.")
@click.option("--env-file", metavar="PATH",
              help="The EnvironmentFile the units read (default: DIR/mdtool.env), mode 0600.")
@click.option("--dry-run", is_flag=True, help="Say what would be written, write nothing.")
@click.option("--mdtool", "mdtool_path", metavar="PATH",
              help="mdtool executable for ExecStart (default: the one running now).")
@click.pass_obj
def render(ctx, output_dir, env_file, dry_run, mdtool_path):
    """Units for the three daemons and for `node run`.

    The proxy, agent and metadata service units are hardened (read-only system, only the
    capabilities each daemon needs); mdtool-node runs `node run`, which starts and
    supervises dnsmasq and those three itself. The effective configuration (state dir,
    --db, --config-file, MDTOOL_* variables) goes in an EnvironmentFile of mode 0600: no
    password or secret on a command line or in a unit. Printed, or written to --output-dir
    (says what changed).

    \b
    Then either the node:
      systemctl daemon-reload
      systemctl enable --now mdtool-node
    or the three daemons alone (not both):
      systemctl enable --now mdtool-metadata mdtool-agent mdtool-proxy
    """
    from mdtool import systemd as units
    mdtool = units.mdtool_executable(mdtool_path)
    if env_file and not env_file.startswith("/"):
        abort(f"--env-file must be an absolute path, got {env_file!r}", 2)
    for warning in units.hidden_paths(ctx.config, mdtool):
        ctx.say(f"[yellow]warning:[/yellow] {warning}")
    if output_dir is None:
        if dry_run:
            abort("--dry-run needs --output-dir (without it nothing is written anyway)", 2)
        shown = units.render_all(ctx.config, mdtool, units.DEFAULT_OUTPUT_DIR, env_file,
                                 masked=True)
        click.echo("\n".join(f"# ---- {path} (mode {mode:04o}) ----\n{text}"
                              for path, text, mode in shown), nl=False)
        return
    changes = units.write_units(ctx.config, output_dir, mdtool, env_file, dry_run=dry_run)
    report(ctx, f"systemd render {output_dir}", changes, dry_run=dry_run)
