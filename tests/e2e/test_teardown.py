"""Nothing leaks: the README's teardown order and other orders leave no namespace, bridge,
veth or process; net-delete of a served network refuses with the command to run; deleting a
plugged instance or port unplugs it first, and the bridge goes with its last port."""

from __future__ import annotations

import random
import shutil

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
