"""Bad input a red-team run found (issue 13, item 9): refused with exit 2, nothing changed;
and the operator's way out of a stored password."""

import json

import pytest

from tests.cli.test_resources import _setup

pytestmark = pytest.mark.usefixtures("cli_db")

BAD = [
    (["subnet-create", "n", "::ffff:0:0/96"], "IPv4-mapped"),
    (["subnet-create", "n", "::/0"], "overlaps"),
    (["subnet-create", "n", "::/64"], "overlaps ::/128"),  # holds ::ffff:a.b.c.d too
    (["subnet-create", "n", "0.0.0.0/0"], "overlaps"),
    (["subnet-create", "n", "0.0.0.0/8"], "'this network'"),
    (["subnet-create", "n", "127.0.0.0/8"], "loopback"),
    (["subnet-create", "n", "127.0.0.0/24"], "loopback"),
    (["subnet-create", "n", "::1/128"], "loopback"),
    (["subnet-create", "n", "224.0.0.0/24"], "multicast"),
    (["subnet-create", "n", "ff02::/64"], "multicast"),
    (["subnet-create", "n", "169.254.0.0/16"], "link-local"),
    (["subnet-create", "n", "169.254.169.0/24"], "link-local"),
    (["subnet-create", "n", "fe80::/64"], "link-local"),
    (["port-create", "n", "--fixed-ip", "ip_address=::ffff:10.0.0.5"], "IPv4-mapped"),
    (["instance-create", "vm", "--meta", "k\n=v"], "KEY=VALUE"),
    (["instance-create", "vm", "--meta", "k\r=v"], "KEY=VALUE"),
    (["net-create", "name\n"], "invalid network name"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(run, tmp_path, db_snapshot, args, message):
    _setup(run, tmp_path)
    before = db_snapshot()
    r = run(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert r.stderr.startswith("mdtool: error: ") and r.stderr.count("\n") == 1
    assert db_snapshot() == before


def test_a_private_ipv6_subnet_and_ipv4_subnets_still_pass(run):
    run("net-create", "n")
    for cidr in ("fd00:1::/64", "10.0.0.0/24", "192.168.7.0/24", "100.64.0.0/24"):
        r = run("subnet-create", "n", cidr)
        assert r.exit_code == 0, r.stderr


def test_clear_password_lets_the_instance_post_again(run):
    """Nova's clear-password: the operator forgets the stored password (and saying so
    twice is no error)."""
    iid = json.loads(run("instance-create", "vm", "-f", "json").stdout)["id"]
    from mdtool.config import Config
    from mdtool.registry import open_registry
    reg = open_registry(Config().db_url)
    assert reg.set_instance_password(iid, "c2VjcmV0")
    assert not reg.set_instance_password(iid, "other")
    r = run("instance-clear-password", "vm")
    assert r.exit_code == 0 and r.stdout == f"Cleared the password of instance vm ({iid})\n"
    assert reg.get_instance(iid).password is None
    assert reg.set_instance_password(iid, "bmV3")
    run("instance-clear-password", iid)
    r = run("instance-clear-password", "vm")
    assert r.exit_code == 0 and "nothing to clear" in r.stdout
    r = run("instance-clear-password", "ghost")
    assert r.exit_code == 2 and "no instance named" in r.stderr
