"""The proxy's lean entry point: what `mdtool proxy run` execs, and what it keeps out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mdtool.proxy.__main__ import argv, parse


def test_parse_round_trips_argv():
    a = argv("/var/lib/x", ["n1", "n2"], "/etc/m.ini", verbose=2)
    assert a[:3] == [sys.executable, "-m", "mdtool.proxy"]
    opts, nets = parse(a[3:])
    assert opts == {"state_dir": "/var/lib/x", "config_file": "/etc/m.ini", "verbose": 2}
    assert nets == ["n1", "n2"]


def test_argv_is_judged_as_the_proxy_of_its_state_dir():
    joined = "\0".join(argv("/var/lib/x"))
    assert all(s in joined for s in ("mdtool", "/var/lib/x", "proxy", "run"))


@pytest.mark.parametrize("bad", [[], ["--network", "n", "run"], ["run", "extra"],
                                 ["--state-dir"], ["run", "--network"]])
def test_parse_refuses_bad_usage(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_bad_usage_exits_2():
    res = subprocess.run([sys.executable, "-m", "mdtool.proxy", "serve"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2
    assert "usage:" in res.stderr


def test_the_daemon_imports_neither_registry_nor_cli():
    code = ("import sys, mdtool.proxy.__main__, mdtool.proxy.daemon, mdtool.logs;"
            "bad = [m for m in ('sqlalchemy', 'click', 'rich', 'jinja2', 'pyroute2') "
            "if m in sys.modules]; print(bad)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "[]", res.stderr
