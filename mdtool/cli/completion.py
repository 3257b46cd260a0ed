"""completion bash|zsh|fish: the shell completion script."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_MDTOOL_COMPLETE"

_HOWTO = {
    "bash": 'eval "$(mdtool completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(mdtool completion zsh)"    # in ~/.zshrc',
    "fish": "mdtool completion fish > ~/.config/fish/completions/mdtool.fish",
}


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell):
    """Print the completion script for SHELL; names of networks, subnets, ports and
    instances complete from the registry. Bash: eval "$(mdtool completion bash)"."""
    from click.shell_completion import get_completion_class

    from mdtool.cli import cli
    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "mdtool", COMPLETE_VAR).source())


completion.epilog = "\b\n" + "\n".join(_HOWTO.values())
