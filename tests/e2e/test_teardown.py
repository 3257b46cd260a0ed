"""Nothing leaks: the README's teardown order and other orders leave no namespace, bridge,
veth or process; net-delete of a served network refuses with the command to run; deleting a
plugged instance or port unplugs it first, and the bridge goes with its last port; `mdtool
cleanup` removes what the registry no longer knows (rows deleted by hand), and --dry-run
prints exactly what it then does."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess

import pytest

from tests.e2e.helpers import host_link_exists, netns_exists, processes_matching

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq")


def _cidr() -> str:
    return f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"


def _served(site, name: str):
    """An enabled network with one plugged instance."""
    net = site.network(name, _cidr())
    site.cleanup.link("brq" + net[:11])
    vm = site.instance("vm-" + name, net)
    site.mdtool("enable-isolated-metadata", net)
    site.plug(vm)
    assert netns_exists(vm.namespace) and host_link_exists("tap" + vm.port_id[:11])
    return net, vm


def _host_objects(net: str, vm) -> list[str]:
    """What of this network and instance still exists on the host."""
    left = []
    for ns in (f"qdhcp-{net}", vm.namespace):
        if netns_exists(ns):
            left.append(f"namespace {ns}")
    for link in ("brq" + net[:11], "tap" + vm.port_id[:11]):
        if host_link_exists(link):
            left.append(f"link {link}")
    for path in __import__("pathlib").Path("/sys/class/net").iterdir():
        alias = (path / "ifalias").read_text().strip() if (path / "ifalias").exists() else ""
        if net in alias or vm.port_id in alias:
            left.append(f"link {path.name} ({alias})")
    if shutil.which("nft") and subprocess.run(
            ["nft", "list", "table", "bridge", f"mdtool-{net}"], capture_output=True).returncode == 0:
        left.append(f"nft table bridge mdtool-{net} (port security)")
    return sorted(set(left))


def _assert_nothing_left(site, net, vm):
    assert _host_objects(net, vm) == []
    assert not processes_matching(str(site.state_dir)), "a process of the state dir is left"
    assert not (site.state_dir / "dhcp" / net).exists()


def test_readme_order_leaves_nothing(site):
    net, vm = _served(site, "td-readme")
    site.mdtool("disable-isolated-metadata", net)
    site.mdtool("port-unplug", vm.port_id, vm.namespace)
    site.mdtool("instance-delete", vm.id)
    site.mdtool("net-delete", net)
    _assert_nothing_left(site, net, vm)


def test_net_delete_of_a_served_network_refuses_with_the_command(site):
    net, vm = _served(site, "td-served")
    site.mdtool("port-unplug", vm.port_id, vm.namespace)
    site.mdtool("instance-delete", vm.id)
    r = site.mdtool("net-delete", net, check=False)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1
    assert f"mdtool disable-isolated-metadata {net}" in r.stderr
    assert netns_exists(f"qdhcp-{net}")  # nothing changed
    site.mdtool("disable-isolated-metadata", net)
    site.mdtool("net-delete", net)
    _assert_nothing_left(site, net, vm)


def test_instance_delete_of_a_plugged_instance_unplugs_it(site):
    net, vm = _served(site, "td-inst")
    r = site.mdtool("instance-delete", vm.id)
    assert f"unplug" in r.stdout + r.stderr
    assert not netns_exists(vm.namespace) and not host_link_exists("tap" + vm.port_id[:11])
    site.mdtool("disable-isolated-metadata", net)
    site.mdtool("net-delete", net)
    _assert_nothing_left(site, net, vm)


def test_port_delete_of_a_plugged_port_unplugs_it_and_the_last_port_takes_the_bridge(site):
    net, vm = _served(site, "td-port")
    site.mdtool("disable-isolated-metadata", net)
    assert host_link_exists("brq" + net[:11])  # still carries the instance's tap
    site.mdtool("port-delete", vm.port_id)
    assert not host_link_exists("brq" + net[:11])
    site.mdtool("instance-delete", vm.id)
    site.mdtool("net-delete", net)
    _assert_nothing_left(site, net, vm)


def test_netns_down_of_a_deleted_network_names_cleanup(site):
    net = site.network("td-gone", _cidr())
    site.cleanup.link("brq" + net[:11])
    site.mdtool("netns", "up", net)
    _delete_rows(site, "ports", "network_id", net)
    r = site.mdtool("net-delete", net, check=False)  # no port left, but served here
    assert r.returncode == 2 and f"mdtool disable-isolated-metadata {net}" in r.stderr, r
    _delete_rows(site, "networks", "id", net)  # by hand
    rows = {r["namespace"]: r["state"] for r in site.json("netns", "list")}
    assert "mdtool cleanup" in rows[f"qdhcp-{net}"], rows
    r = site.mdtool("netns", "down", net, check=False)
    assert r.returncode == 2 and "mdtool cleanup" in r.stderr, r
    site.mdtool("cleanup")
    assert not netns_exists(f"qdhcp-{net}") and not host_link_exists("brq" + net[:11])


def _delete_rows(site, table: str, column: str, value: str) -> None:
    db = sqlite3.connect(site.state_dir / "mdtool.db")
    with db:
        if table == "ports":
            db.execute("DELETE FROM ip_allocations WHERE port_id IN "
                       f"(SELECT id FROM ports WHERE {column} = ?)", (value,))
        if table == "networks":
            db.execute("DELETE FROM ip_allocations WHERE network_id = ?", (value,))
            db.execute("DELETE FROM ports WHERE network_id = ?", (value,))
            db.execute("DELETE FROM subnets WHERE network_id = ?", (value,))
        db.execute(f"DELETE FROM {table} WHERE {column} = ?", (value,))
    db.close()


def test_cleanup_removes_what_the_registry_forgot_and_dry_run_is_the_plan(site):
    net, vm = _served(site, "td-orphan")
    keep = site.network("td-keep", _cidr())  # another network of this node stays served
    site.cleanup.link("brq" + keep[:11])
    site.mdtool("enable-isolated-metadata", keep)
    _delete_rows(site, "instances", "id", vm.id)
    _delete_rows(site, "networks", "id", net)

    r = site.mdtool("inspect", check=False)
    assert "mdtool cleanup" in r.stdout + r.stderr, r

    dry = site.mdtool("cleanup", "--dry-run")
    planned = _lines(dry.stderr, "plan ")
    assert any(f"delete namespace {vm.namespace}" == l for l in planned), dry.stderr
    assert any(f"delete namespace qdhcp-{net}" == l for l in planned), dry.stderr
    assert any(l.startswith(f"delete bridge brq{net[:11]}") for l in planned), dry.stderr
    assert any(l.startswith("stop dnsmasq") for l in planned), dry.stderr
    assert netns_exists(f"qdhcp-{net}") and netns_exists(vm.namespace)  # nothing changed
    real = site.mdtool("cleanup")
    assert _lines(real.stderr, "✓ ") == planned, (dry.stderr, real.stderr)
    assert _lines(real.stderr, "orphan: ") == _lines(dry.stderr, "orphan: ")
    _assert_nothing_left_but(site, net, vm, keep)
    again = site.mdtool("cleanup")
    assert "nothing to clean up" in again.stderr

    site.mdtool("disable-isolated-metadata", keep)
    assert not processes_matching(str(site.state_dir))


def _lines(text: str, prefix: str) -> list[str]:
    return [l.strip()[len(prefix):] for l in text.splitlines() if l.strip().startswith(prefix)]


def _assert_nothing_left_but(site, net, vm, keep):
    assert _host_objects(net, vm) == []
    assert not processes_matching("dnsmasq", net)
    assert netns_exists(f"qdhcp-{keep}")  # the known network is not touched
    assert processes_matching("dnsmasq", keep)


def test_cleanup_never_touches_another_state_dir(site, tmp_path):
    """A namespace, bridge and plugged instance of another state dir (another test, another
    node) are not in this registry, and still not ours to remove."""
    net, vm = _served(site, "td-other")
    other = {"MDTOOL_STATE_DIR": str(tmp_path / "other")}
    r = site.mdtool("cleanup", "--dry-run", env=other)
    assert "nothing to clean up" in r.stderr, r.stderr
    site.mdtool("cleanup", env=other)
    assert netns_exists(f"qdhcp-{net}") and netns_exists(vm.namespace)
    assert host_link_exists("brq" + net[:11]) and host_link_exists("tap" + vm.port_id[:11])
