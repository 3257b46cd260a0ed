"""Help and output that tell the truth (issue 16.6): whole summaries, no word split at a
hyphen, every option explained, no traceback for a plain not-found, NO_COLOR means no styles."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from mdtool.cli import cli


def _commands(cmd=cli, path=()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, path + (name,))


ALL = list(_commands())


def _help(path) -> str:
    r = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("path", [p for p, c in ALL if isinstance(c, click.Group)],
                         ids=lambda p: " ".join(p) or "mdtool")
def test_group_help_lists_whole_summaries(path):
    text = _help(path)
    assert "..." not in text.split("Commands:")[1]
    group = dict(ALL)[path]
    for name, sub in group.commands.items():
        summary = " ".join(sub.get_short_help_str(10_000).split())
        listed = " ".join(text.split("Commands:")[1].split())
        assert summary in listed, f"{name}: {summary!r} cut in `{' '.join(path)} --help`"
        assert not summary.endswith(("e.g.", "i.e.")), f"{name}: summary stops at {summary!r}"


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "mdtool")
def test_help_never_splits_a_word_at_a_hyphen(path):
    for line in _help(path).splitlines():
        assert not re.search(r"[A-Za-z]-$", line.rstrip()), f"split at a hyphen: {line!r}"


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "mdtool")
def test_every_option_has_help(path):
    cmd = dict(ALL)[path]
    bare = [o.opts[0] for o in cmd.params if isinstance(o, click.Option) and not o.hidden and not o.help]
    assert bare == []


def _mdtool(*args, env=None, state_dir):
    return subprocess.run([sys.executable, "-m", "mdtool", *args], capture_output=True, text=True,
                          env={**os.environ, "MDTOOL_STATE_DIR": str(state_dir), "MDTOOL_DB": "",
                               **(env or {})})


def test_verbose_not_found_is_one_line_without_traceback(state_dir):
    r = _mdtool("-v", "net-show", "nope", state_dir=state_dir)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("mdtool: error: ")


def test_no_color_means_no_escape_codes_at_all(state_dir):
    # A real terminal (script(1) gives a pty), where rich prints bold and dim; a dry run
    # prints styled plan lines and changes nothing.
    assert _mdtool("net-create", "nc1", state_dir=state_dir).returncode == 0
    assert _mdtool("subnet-create", "nc1", "10.33.0.0/24", "--no-gateway", state_dir=state_dir).returncode == 0
    cmd = f"{sys.executable} -m mdtool netns up nc1 --dry-run"
    env = {**os.environ, "MDTOOL_STATE_DIR": str(state_dir), "MDTOOL_DB": "", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    styled = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, env=env)
    plain = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                           env={**env, "NO_COLOR": "1"})
    assert styled.returncode == plain.returncode == 0, styled.stdout
    assert "\x1b[" in styled.stdout  # the pty really shows styles ...
    assert "plan" in plain.stdout and "\x1b[" not in plain.stdout  # ... and NO_COLOR none
