"""docs/cli.md and docs/configuration.md are generated: they must match the code.

When this fails, regenerate them:
    python -m mdtool.cli.docgen cli > docs/cli.md
    python -m mdtool.cli.docgen config > docs/configuration.md
"""

from pathlib import Path

import pytest

from mdtool.cli import docgen

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name, generate", [("cli.md", docgen.cli_reference),
                                            ("configuration.md", docgen.config_reference)])
def test_generated_docs_in_sync(name, generate):
    what = name.split(".")[0].replace("configuration", "config")
    assert (DOCS / name).read_text() == generate(), (
        f"docs/{name} is out of date: python -m mdtool.cli.docgen {what} > docs/{name}")


def test_every_command_documented():
    text = (DOCS / "cli.md").read_text()
    for cmd in ("net-create", "subnet-create", "enable-isolated-metadata", "config show",
                "systemd render", "completion"):
        assert f"## mdtool {cmd}\n" in text or f"### mdtool {cmd}\n" in text


def test_every_option_documented():
    from mdtool.config import OPTIONS
    text = (DOCS / "configuration.md").read_text()
    for o in OPTIONS:
        assert f"| `{o.name}` |" in text


def test_docgen_usage(capsys):
    assert docgen.main([]) == 2
