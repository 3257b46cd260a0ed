"""Deleting several resources at once, as `openstack … delete` does (issue 16.1), and -q."""

from __future__ import annotations

import json

from tests.cli.test_scripting import _net


def test_delete_several_reports_each_failure_and_exits_1(run, db_snapshot):
    _net(run)
    run("port-create", "net1", "--name", "a")
    run("port-create", "net1", "--name", "b")
    r = run("port-delete", "a", "nope", "b")
    assert r.exit_code == 1
    assert "port 'nope'" in r.stderr and "1 of 3 ports failed to delete" in r.stderr
    assert json.loads(run("port-list", "-f", "json").stdout) == []  # a and b went all the same
    one = run("port-delete", "nope")
    assert one.exit_code == 2 and one.stderr.count("\n") == 1  # one ref: its own error


def test_quiet_delete_prints_nothing(run):
    _net(run, "netq", "10.32.0.0/24")
    run("subnet-delete", *run("subnet-list", "-f", "value", "-c", "id").stdout.split())
    r = run("-q", "net-delete", "netq")
    assert r.exit_code == 0 and r.output == ""
