"""`mdtool node run` keeps a node served with no other command: registry changes reach
dnsmasq, dead processes come back, a deleted agent socket is repaired, SIGTERM leaves
the data path serving. Real namespaces, dnsmasq, udhcpc (own hook script) and curl.

Bounds in the issue ("lease in under 2 s", "served again within 3 s") are the DHCP
client's own retry budget (udhcpc -t 2 -T 1: two discovers a second apart) and
``wait_for`` deadlines; the measured figures are in docs/benchmarks.md (mdtool bench
--section node).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.conftest import http
from tests.e2e.test_multinode import two_nodes  # noqa: F401 (a fixture)
from tests.e2e.helpers import _kill, processes_matching, requires, wait_for, wait_for_log

pytestmark = [pytest.mark.e2e, requires("ip", "dnsmasq", "udhcpc", "curl")]


class NodeRun:
    """`mdtool node run` in the background, stopped by ``cleanup`` (also on failure)."""

    def __init__(self, cleanup, state_dir, env: dict, *args: str, prefix: list[str] | None = None):
        self.log = state_dir / "node-run.log"
        self.out = open(self.log, "ab")
        self.offset = self.out.tell()
        argv = (prefix or []) + [sys.executable, "-m", "mdtool", "node", "run",
                                 "--resync-interval", "2", *args]
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        cleanup.add("node run", self.kill)
        wait_for_log(self.log, "resync (start)", 30, self.offset)

    @classmethod
    def on(cls, site, *args: str) -> "NodeRun":
        return cls(site.cleanup, site.state_dir, {**os.environ, **site.env}, *args)

    def kill(self) -> None:
        if self.proc.poll() is None:
            _kill(self.proc.pid)
            self.proc.wait(timeout=10)
        self.out.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_bytes()[self.offset:].decode(errors="replace")


RESPAWN_BOUND = 20  # seconds; the real figure is in docs/benchmarks.md (node section)


def _host_file(state_dir, net: str) -> str:
    try:
        return (state_dir / "dhcp" / net / "host").read_text()
    except FileNotFoundError:
        return ""


def _quick_lease(site, inst) -> bool:
    """A lease within udhcpc's two discovers one second apart (about 2 s)."""
    site.dhcp.flush(inst.namespace)
    return site.dhcp.udhcpc(inst.namespace, tries=2)


def _served(site, inst) -> bool:
    code, body = http(site.curl(inst, "/openstack/latest/meta_data.json", "-m", "1"))
    return code == 200 and json.loads(body)["uuid"] == inst.id


@pytest.fixture
def served_net(site):
    net = site.network("e2e-node", "10.94.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    return net


def test_port_create_reaches_dnsmasq_and_port_delete_leaves_it(site, served_net):
    node = NodeRun.on(site)
    vm = site.instance("vm-node", served_net)        # port-create, nothing else
    site.plug(vm)
    assert _quick_lease(site, vm), site.dhcp.output("udhcpc") + node.text()
    assert _served(site, vm)
    assert vm.mac in _host_file(site.state_dir, served_net)
    site.mdtool("port-delete", vm.port_id)
    wait_for(lambda: vm.mac not in _host_file(site.state_dir, served_net), 2,
             "the deleted port to leave dnsmasq's host file")
    assert "SIGHUP" in node.text()
    host = site.json("net-show", served_net)["hosts"]
    assert len(host) == 1 and f"served by: {host[0]}" in site.mdtool("inspect", served_net,
                                                                     check=False).stdout


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_killed_processes_are_started_again_under_load(site, served_net):
    node = NodeRun.on(site)
    vm = site.instance("vm-kill", served_net)
    site.boot(vm)
    stop = threading.Event()

    def load():  # a few requests a second while processes die
        while not stop.is_set():
            site.curl(vm, "/openstack/latest/meta_data.json", "-m", "1")

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        dnsmasq_pid = site.state_dir / "dhcp" / served_net / "pid"
        old = int(dnsmasq_pid.read_text())
        _sigkill(old)
        # The 3 s is a measured figure (`mdtool bench --section node`, worst respawn);
        # here a bound wide enough for a loaded CI machine proves the restart happens at all
        # with no command, and the node's log proves it was node run's doing.
        wait_for(lambda: int(dnsmasq_pid.read_text() or 0) not in (0, old) and _quick_lease(site, vm),
                 RESPAWN_BOUND, "dnsmasq to answer again")
        for role in ("proxy", "agent", "metadata"):
            old = site.pid(role)
            _sigkill(old)
            wait_for(lambda: site.pid(role) not in (None, old) and _served(site, vm), RESPAWN_BOUND,
                     f"{role} to serve again")
    finally:
        stop.set()
        loader.join(10)
    text = node.text()
    for what in ("dnsmasq", "proxy", "agent", "metadata"):
        assert f"{what} " in text and "died: starting it again (restart 1" in text, text


def test_deleted_agent_socket_is_repaired(site, served_net):
    node = NodeRun.on(site)
    vm = site.instance("vm-sock", served_net)
    site.boot(vm)
    sock = site.state_dir / "metadata_proxy"
    sock.unlink()
    # In the fast path the proxy does not need the agent, so being served proves nothing:
    # wait for node run to see the socket gone and for a new one to be bound.
    wait_for(lambda: "socket" in node.text() and "is gone" in node.text(), 5,
             "node run to notice the deleted agent socket")
    wait_for(lambda: sock.exists(), 5, "a new agent socket")
    wait_for(lambda: _served(site, vm), 5, "metadata with the new agent")


def test_resync_repairs_drift(site, served_net):
    node = NodeRun.on(site)
    vm = site.instance("vm-drift", served_net)
    site.boot(vm)
    host = site.state_dir / "dhcp" / served_net / "host"
    host.write_text("edited by hand\n")
    ns = f"qdhcp-{served_net}"
    tap = _tap(ns)
    subprocess.run(["ip", "-n", ns, "addr", "del", "169.254.169.254/32", "dev", tap], check=True)
    bridge_end = "ns-" + tap[3:]
    subprocess.run(["ip", "link", "set", bridge_end, "nomaster"], check=True)
    wait_for(lambda: vm.mac in host.read_text(), 5, "the resync to rewrite the host file")
    wait_for(lambda: _served(site, vm), 5, "the resync to put 169.254.169.254 back")
    wait_for(lambda: os.path.exists(f"/sys/class/net/{bridge_end}/master"), 5,
             "the resync to put the DHCP port back on its bridge")
    assert _quick_lease(site, vm), site.dhcp.output("udhcpc")
    assert "(periodic)" in node.text()


def _tap(ns: str) -> str:
    links = json.loads(subprocess.run(["ip", "-j", "-n", ns, "link"], capture_output=True,
                                      text=True, check=True).stdout)
    return next(l["ifname"] for l in links if l["ifname"].startswith("tap"))


def test_sigterm_leaves_the_data_path_serving_and_cleanup_tears_it_down(site, served_net):
    node = NodeRun.on(site)
    vm = site.instance("vm-term", served_net)
    site.boot(vm)
    assert node.terminate() == 0
    assert "keep serving" in node.text()
    assert _quick_lease(site, vm), site.dhcp.output("udhcpc")   # renews
    assert _served(site, vm)
    node = NodeRun.on(site, "--cleanup")
    assert node.terminate() == 0
    assert not os.path.exists(f"/run/netns/qdhcp-{served_net}")
    assert all(site.pid(r) is None for r in ("proxy", "agent", "metadata"))
    assert site.json("net-show", served_net)["hosts"]  # still wanted: the next start restores
    NodeRun.on(site)
    wait_for(lambda: _quick_lease(site, vm) and _served(site, vm), 10, "served again")


def test_two_nodes_on_postgresql_both_follow_a_port(two_nodes):
    """Node B in its own /run/netns view (see test_multinode.py); a port created through
    node A reaches both nodes' dnsmasq, and its deletion leaves both."""
    a, b, dhcp, cleanup, networks = two_nodes
    net = a.mdtool("net-create", "node-mn", "-f", "value", "-c", "id").stdout.strip()
    networks.append(net)
    a.mdtool("subnet-create", net, "10.95.0.0/24", "--no-gateway")
    for n in (a, b):
        n.mdtool("enable-isolated-metadata", net)
    assert sorted(a.json("net-show", net)["hosts"]) == sorted([a.host, b.host])
    for n in (a, b):
        NodeRun(cleanup, n.state_dir, n.environ(), prefix=n.prefix)
    port = a.json("port-create", net)
    mac = port["mac_address"]
    for n in (a, b):
        wait_for(lambda: mac in _host_file(n.state_dir, net), 2, f"the port in {n.host}'s host file")
    a.mdtool("port-delete", port["id"])
    for n in (a, b):
        wait_for(lambda: mac not in _host_file(n.state_dir, net), 2,
                 f"the port to leave {n.host}'s host file")


def test_enable_and_disable_beside_node_run_never_fight(site, served_net):
    """One lock and one code path: a disable while node run runs stays disabled (node run
    tears nothing back up and starts nothing), an enable after it is picked up with one
    dnsmasq, not two."""
    node = NodeRun.on(site)
    ns = f"qdhcp-{served_net}"
    site.mdtool("disable-isolated-metadata", served_net)
    deadline = time.monotonic() + 5  # longer than 2 resync intervals of this node run
    while time.monotonic() < deadline:
        assert not os.path.exists(f"/run/netns/{ns}"), node.text()
        assert not processes_matching("dnsmasq", served_net), node.text()
        time.sleep(0.2)
    assert site.json("net-show", served_net)["hosts"] == []
    assert "died: starting it again" not in node.text()
    site.mdtool("enable-isolated-metadata", served_net)
    vm = site.instance("vm-fight", served_net)
    site.plug(vm)
    assert _quick_lease(site, vm), site.dhcp.output("udhcpc") + node.text()
    assert len(processes_matching("dnsmasq", served_net)) == 1
    for role in ("proxy", "agent", "metadata"):
        assert len(processes_matching("mdtool", str(site.state_dir), role, "run")) == 1, role
