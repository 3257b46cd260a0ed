"""config show / config check / config sample: the effective configuration and where it comes from."""

from __future__ import annotations

import json
import shlex

import click

from mdtool.cli.app import HelpGroup, abort
from mdtool.cli.output import FORMATS, listing

COLUMNS = ["section", "name", "value", "source"]


@click.group("config", cls=HelpGroup)
def config():
    """Show and check mdtool's configuration (INI file, environment, command line)."""


def _param_source(root: click.Context, param: str, option: str, env: str, default: str) -> str:
    from click.core import ParameterSource
    src = root.get_parameter_source(param)
    if src == ParameterSource.COMMANDLINE:
        return option
    if src == ParameterSource.ENVIRONMENT:
        return f"env {env}"
    return default


def effective(ctx, root: click.Context) -> list[dict]:
    """One row per option: section, name, value (secrets masked), source."""
    from mdtool import config as cfgmod
    cfg = ctx.config
    rows = [
        {"section": "global", "name": "state_dir", "value": str(cfg.state_dir),
         "source": _param_source(root, "state_dir", "--state-dir", "MDTOOL_STATE_DIR", "default")},
        {"section": "global", "name": "db", "value": cfgmod.mask_url(cfg.db_url),
         "source": _param_source(root, "db_url", "--db", "MDTOOL_DB",
                                 "default (sqlite in the state dir)")},
        {"section": "global", "name": "config_file",
         "value": str(cfg.config_file) if cfg.config_file else "",
         "source": _param_source(root, "config_file", "--config-file", "MDTOOL_CONFIG",
                                 "default" if cfg.config_file else "none (no /etc/mdtool/mdtool.ini)")},
    ]
    try:  # a secret generated earlier counts as set; never create one just to show it
        cfg.shared_secret(create=False)
    except (FileNotFoundError, OSError):
        pass
    for opt in cfgmod.OPTIONS:
        v = cfg.values[(opt.section, opt.name)]
        value = v.value
        source = v.source
        if opt.name == "host" and source == "--host":
            source = _param_source(root, "node_host", "--host", "MDTOOL_HOST", "--host")
        if opt.secret:
            value = cfgmod.mask(value)
            if not v.value:
                source = "default (generated on first use into the state dir)"
        elif value is None and source == "default":
            value, source = _derived(cfg, opt.name)
        rows.append({"section": opt.section, "name": opt.name, "value": value, "source": source})
    return rows


def _derived(cfg, name: str) -> tuple:
    """What an unset option means in practice (shown instead of an empty value)."""
    if name == "nova_metadata_url":
        if cfg.get("nova_metadata_host") is None:
            return cfg.nova_metadata_url, "default (this node's metadata service, Unix socket)"
        return cfg.nova_metadata_url, "default (nova_metadata_protocol://host:port)"
    if name == "host":
        return cfg.host, "default (the hostname)"
    return None, "default"


def _shell_line(row: dict) -> str:
    from mdtool.config import env_name
    value = row["value"]
    if isinstance(value, list):
        value = ",".join(value)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    elif value is None:
        value = ""
    if row["section"] == "global":
        name = {"state_dir": "MDTOOL_STATE_DIR", "db": "MDTOOL_DB",
                "config_file": "MDTOOL_CONFIG"}[row["name"]]
    else:
        name = env_name(row["section"], row["name"])
    return f"{name}={shlex.quote(str(value))}"


@config.command("show")
@click.argument("options", nargs=-1, metavar="[OPTION]...")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help="Output format (shell: MDTOOL_* variables).")
@click.option("-c", "--column", "columns", multiple=True, metavar="NAME",
              help="Show only this column (repeatable): section, name, value, source.")
@click.pass_obj
def show(ctx, options, fmt, columns):
    """Every effective value and where it came from (default, file:line, env, --option);
    a secret that is set shows as ********. OPTION (name or section.name, repeatable) shows
    just those, in that order."""
    rows = effective(ctx, click.get_current_context().find_root())
    if options:
        picked = []
        for option in options:
            section, _, name = option.rpartition(".")
            match = [r for r in rows
                     if r["name"] == name and (not section or r["section"] == section)]
            if not match:
                abort(f"unknown option {option!r} (see: mdtool config show)", 2)
            picked += [r for r in match if r not in picked]
        rows = picked
    if fmt == "shell" and not columns:
        # The masked secret is left out: sourcing this must never set it to asterisks.
        from mdtool.config import OPTION_INDEX
        click.echo("\n".join(_shell_line(r) for r in rows
                             if not getattr(OPTION_INDEX.get((r["section"], r["name"])), "secret", False)))
        return
    if fmt == "json" and not columns:
        click.echo(json.dumps(rows, indent=2))
        return
    text = listing(rows, COLUMNS, fmt, columns)
    if text:
        click.echo(text)


@config.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False), metavar="[FILE]")
@click.pass_obj
def check(ctx, path):
    """Validate a config file (default: the one in use) and the MDTOOL_* environment; every
    problem is a line naming the file and line or the variable, and the exit code is 2 when
    there is one."""
    import os

    from mdtool.config import DEFAULT_CONFIG_FILE, check_environment, check_file
    errors = check_environment()
    if path is None:
        # The global --config-file (click already folded MDTOOL_CONFIG into it).
        cf = click.get_current_context().find_root().params.get("config_file")
        if cf is None and os.path.exists(DEFAULT_CONFIG_FILE):
            cf = DEFAULT_CONFIG_FILE
        if cf is None and not errors:
            abort("no config file to check: give FILE, --config-file or MDTOOL_CONFIG", 2)
        path = cf
    if path is not None:
        errors += check_file(path)
    if not errors:  # each value is good: now the combinations (what the agent would refuse)
        from mdtool.agent.upstream import problems
        from mdtool.config import Config
        errors += problems(Config(config_file=path))
    for e in errors:
        click.echo(f"mdtool: error: {e}", err=True)
    if errors:
        raise click.exceptions.Exit(2)
    ctx.say(f"{path}: ok")


@config.command("sample")
def sample():
    """Print a commented config file with every option at its default."""
    from mdtool.config import sample_ini
    click.echo(sample_ini(), nl=False)
