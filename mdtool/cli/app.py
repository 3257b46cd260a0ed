"""The CLI's shared context and its one way to fail."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from functools import cached_property
from typing import NoReturn

import click

from mdtool.errors import MdtoolError


class Ctx:
    """What every command may need, built on first use so --help stays fast."""

    def __init__(self, state_dir=None, db_url=None, config_file=None, host=None,
                 verbose=0, quiet=False):
        self._state_dir, self._db_url, self._config_file = state_dir, db_url, config_file
        self._host = host
        self.verbose, self.quiet = verbose, quiet

    @cached_property
    def config(self):
        from mdtool.config import Config
        cfg = Config(self._state_dir, self._db_url, self._config_file)
        if self._host:
            cfg.set("host", self._host, "--host")
        return cfg

    @cached_property
    def registry(self):
        from mdtool.registry import open_registry
        return open_registry(self.config.db_url)

    @cached_property
    def console(self):
        """Messages and progress go to stderr; stdout stays for machine-readable output."""
        return make_console(stderr=True, quiet=self.quiet)

    def say(self, msg: str) -> None:
        self.console.print(msg)


def make_console(**options):
    """Every rich console of the CLI. NO_COLOR (https://no-color.org: set and not empty) turns
    off every style, bold and dim included, not only colours as rich's own handling does."""
    from rich.console import Console
    options.setdefault("highlight", False)
    options.setdefault("soft_wrap", True)
    options.setdefault("emoji", False)  # a MAC fa:16:3e:cd:… printed :cd: as 💿
    if os.environ.get("NO_COLOR"):
        options["color_system"] = None
    return Console(**options)


def abort(msg: str, code: int = 1) -> NoReturn:
    """The one way a command fails: a one-line message on stderr and an exit code."""
    raise click.exceptions.Exit(_emit(msg, code))


_MAX_ERROR = 400  # characters: a huge input quoted back must not flood the terminal


def _emit(msg: str, code: int) -> int:
    first = " ".join(str(msg).split("\n")[0].split())
    if len(first) > _MAX_ERROR:
        # Keep the start (what is wrong) and the end (what to do); cut the quoted middle.
        first = f"{first[:_MAX_ERROR // 2]}…{first[-_MAX_ERROR // 3:]}"
    click.echo(f"mdtool: error: {first}", err=True)
    return code


class HelpGroup(click.Group):
    """A group whose --help lists each command with its whole first sentence, wrapped to the
    terminal, instead of click's summary cut at 45 characters with '...'."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class MdtoolGroup(HelpGroup):
    """A group whose standalone run turns every failure into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        run_main(self, args, prog_name or "mdtool", complete_var, **extra)


def run_main(cli: click.Group, argv: list[str] | None = None, prog_name: str = "mdtool",
             complete_var=None, **extra) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") or a.startswith("-vv") for a in args)
    try:
        rv = click.Group.main(cli, args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.exceptions.Abort:
        code = _emit("aborted", 1)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "mdtool"
        code = _emit(f"{e.format_message()} (see: {cmd} --help)", 2)
    except click.ClickException as e:
        code = _emit(e.format_message(), e.exit_code)
    except MdtoolError as e:
        if verbose and e.exit_code != 2:  # bad input is the user's, not a fault to trace
            traceback.print_exc()
        code = _emit(str(e), e.exit_code)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    except Exception as e:  # a bug: say so in one line unless -v
        if verbose:
            traceback.print_exc()
        code = _emit(f"internal error: {type(e).__name__}: {e} (run with -v for the traceback)", 1)
    sys.exit(code)


def report(ctx: Ctx, what: str, changes: list[str], dry_run: bool = False) -> None:
    """Say what a step changed (or would change), or that it was already as asked."""
    if not changes:
        ctx.say(f"{what}: nothing to do, already as asked")
        return
    verb = "would" if dry_run else "done"
    for c in changes:
        ctx.say(f"  {'[dim]plan[/dim]' if dry_run else '[green]✓[/green]'} {c}")
    ctx.say(f"{what}: {len(changes)} change(s) {verb}")


def netlink():
    """This command's one netlink session (``mdtool.netns.ip_lib.Netlink``): use it in a
    ``with`` block, which closes its sockets."""
    from mdtool.netns.ip_lib import Netlink
    return Netlink()


@contextlib.contextmanager
def node(ctx: Ctx):
    """This node's DHCP-side steps through one netlink session, closed when the block ends."""
    from mdtool.pipeline import Node
    with netlink() as nl:
        yield Node(ctx.config, ctx.registry, nl)
