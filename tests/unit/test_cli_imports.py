"""The commands a shell script or a TAB runs start fast: they import no heavy library
(issue 15.5; `mdtool bench --section cli` measures the time)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "rich", "jinja2", "pyroute2", "requests", "asyncio", "psycopg2")

# Run mdtool's main in this interpreter, then write which heavy modules it loaded to the
# file named by argv[1] (apart from the command's own output).
PROBE = f"""
import runpy, sys
out = sys.argv.pop(1)
try:
    runpy.run_module("mdtool", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
with open(out, "w") as f:
    f.write(" ".join(m for m in {HEAVY!r} if m in sys.modules))
sys.exit(code)
"""


def _loaded(sd, args: list[str], extra: dict[str, str] | None = None) -> list[str]:
    out = sd / "loaded.txt"
    env = {**os.environ, "MDTOOL_STATE_DIR": str(sd), "MDTOOL_DB": "", "MDTOOL_CONFIG": "",
           **(extra or {})}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out.read_text().split()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mdtool.registry import Registry
    sd = tmp_path_factory.mktemp("cli-imports")
    reg = Registry(f"sqlite:///{sd}/mdtool.db")
    reg.create_network("n1")
    reg.create_subnet("n1", "10.0.0.0/24")
    reg.create_instance("vm1")
    port = reg.create_port("n1", device_id="vm1")
    reg.engine.dispose()
    return sd, port.id


@pytest.mark.parametrize("args", [["net-list"], ["port-show", "{port}"], ["port-create", "n1"],
                                  ["instance-list"], ["net-show", "n1"]], ids=lambda a: a[0])
def test_script_commands_import_nothing_heavy(world, args):
    sd, port = world
    assert _loaded(sd, [a.format(port=port) for a in args]) == []


def test_completion_imports_nothing_heavy(world):
    sd, _ = world
    assert _loaded(sd, [], {"_MDTOOL_COMPLETE": "bash_complete", "COMP_WORDS": "mdtool net-show ",
                            "COMP_CWORD": "2"}) == []
