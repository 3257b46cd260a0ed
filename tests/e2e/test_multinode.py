"""Two network nodes serving one network from one PostgreSQL registry, on ONE machine.

Node identities ``--host``/``MDTOOL_HOST``, each with its own state dir, DHCP port (own IP
and MAC), ``qdhcp-<network_id>`` namespace, dnsmasq, proxy, agent and metadata service.
Both namespaces have the same name, so node B lives in a private mount namespace whose
``/run/netns`` is its own tmpfs (a "holder" process keeps it alive; node B's commands
enter it with nsenter). Both nodes share the host network namespace, so both DHCP ports
join the same bridge, as two network nodes join one provider segment. Nothing in mdtool
is changed for the test: the namespace names, the proxy, inspect all stay ``qdhcp-``.

Flow: instance boots (udhcpc, option 121) -> metadata through the node whose dnsmasq
answered -> that node's services stop -> the instance renews from the other node -> its
route points at the other DHCP port -> metadata again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import pg
from tests.e2e.conftest import Instance, free_port, http
from tests.e2e.helpers import (Cleanup, DhcpClients, _kill, make_state_dir, ns_routes,
                               processes_matching, route_via, wait_for)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(any(shutil.which(p) is None for p in ("dnsmasq", "udhcpc", "unshare", "nsenter")),
                       reason="needs dnsmasq, udhcpc, unshare and nsenter"),
]

METADATA = "169.254.169.254"


@dataclass
class Node:
    """One network node: mdtool with its own identity, state dir and metadata port;
    ``prefix`` runs its commands inside another mount namespace."""

    host: str
    state_dir: Path
    env: dict
    prefix: list[str] = field(default_factory=list)

    def mdtool(self, *args, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = self.prefix + [sys.executable, "-m", "mdtool", *map(str, args)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, env=self.environ(),
                             cwd=str(Path(__file__).resolve().parents[2]))
        if check and res.returncode != 0:
            raise AssertionError(f"[{self.host}] mdtool {' '.join(map(str, args))} -> "
                                 f"{res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def environ(self) -> dict:
        """The caller's environment without its MDTOOL_* settings, plus this node's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("MDTOOL_")}
        return {**base, **self.env}

    def json(self, *args):
        return json.loads(self.mdtool(*args, "-f", "json").stdout)

    def in_view(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        """A command in this node's mount namespace (its /run/netns)."""
        return subprocess.run(self.prefix + list(argv), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL, check=check)

    def log_tail(self) -> str:
        out = []
        for f in sorted((self.state_dir / "log").glob("*.log")) if (self.state_dir / "log").is_dir() else []:
            out.append(f"--- {f}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)


def _start_holder(cleanup: Cleanup) -> int:
    """A process owning a private mount namespace whose /run/netns is an empty tmpfs."""
    os.makedirs("/run/netns", exist_ok=True)
    tag = f"mdtool-e2e-holder-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs {tag} /run/netns && exec sleep 600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop():
        _kill(proc.pid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    cleanup.add("mount-namespace holder", stop)

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"holder exited: {proc.stderr.read().decode()}")
        try:
            return tag in Path(f"/proc/{proc.pid}/mountinfo").read_text() and \
                Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep")
        except OSError:
            return False
    wait_for(ready, 10, "the mount-namespace holder")
    return proc.pid


@pytest.fixture
def two_nodes(tmp_path):
    if pg.admin_url() is None:
        pytest.skip("no PostgreSQL server (scripts/postgres.sh start)")
    cleanup = Cleanup()
    admin = pg.admin_url()
    db_name, db_url = pg.create_database(admin, "mdtool_e2e")
    cleanup.add(f"database {db_name}", lambda: pg.drop_database(admin, db_name))
    holder = _start_holder(cleanup)
    suffix = uuid.uuid4().hex[:6]
    secret = uuid.uuid4().hex
    nodes = []
    for name, prefix in (("a", []), ("b", ["nsenter", f"--mount=/proc/{holder}/ns/mnt", "--"])):
        state = make_state_dir(cleanup)
        port = free_port()
        env = {"MDTOOL_STATE_DIR": str(state), "MDTOOL_DB": db_url,
               "MDTOOL_HOST": f"node{name}-{suffix}",
               "MDTOOL_METADATA_LISTEN_PORT": str(port), "MDTOOL_NOVA_METADATA_PORT": str(port),
               "MDTOOL_METADATA_PROXY_SHARED_SECRET": secret, "MDTOOL_CONFIG": "/dev/null"}
        nodes.append(Node(env["MDTOOL_HOST"], state, env, prefix))
    dhcp = DhcpClients(tmp_path / "dhcp", cleanup)
    networks: list[str] = []

    def teardown():
        for node in reversed(nodes):  # B first: its view goes with the holder
            for net in networks:
                node.mdtool("disable-isolated-metadata", net, check=False)
                # both views: a namespace or a veth end the disable left behind
                node.in_view("ip", "netns", "del", f"qdhcp-{net}")
            for pid in processes_matching("mdtool", str(node.state_dir)):
                _kill(pid)
            for pid in processes_matching("dnsmasq", str(node.state_dir)):
                _kill(pid)
        for net in networks:
            for link in json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                                  text=True).stdout or "[]"):
                if link.get("ifalias", "") in (f"mdtool:dhcp:{net}", f"mdtool:{net}"):
                    subprocess.run(["ip", "link", "del", "dev", link["ifname"]], capture_output=True)

    cleanup.add("both nodes", teardown)
    try:
        yield nodes[0], nodes[1], dhcp, cleanup, networks
    finally:
        cleanup.run()
    for node in nodes:
        assert not processes_matching(str(node.state_dir)), f"a process of {node.host} outlived teardown"


def _curl(inst: Instance, path: str) -> tuple[int, str]:
    res = subprocess.run(["ip", "netns", "exec", inst.namespace, "curl", "-sS", "-m", "5",
                          "-w", "\n%{http_code}", f"http://{METADATA}{path}"],
                         capture_output=True, text=True, timeout=20)
    return http(res)


def _host_file(node: Node, net: str) -> str:
    return (node.state_dir / "dhcp" / net / "host").read_text()


def test_two_nodes_serve_one_network_and_metadata_fails_over(two_nodes):
    a, b, dhcp, cleanup, networks = two_nodes

    # The registry is shared: resources made through node A are seen by node B.
    net = a.mdtool("net-create", "mn-net", "-f", "value", "-c", "id").stdout.strip()
    networks.append(net)
    cleanup.nft_table(net)
    a.mdtool("subnet-create", net, "10.78.0.0/24", "--no-gateway")
    inst = a.json("instance-create", "vm-mn")
    port = b.json("port-create", net, "--device-id", inst["id"])
    vm = Instance("vm-mn", inst["id"], port["id"], port["fixed_ips"][0]["ip_address"],
                  port["mac_address"], f"i-{port['id'][:8]}")
    cleanup.netns(vm.namespace)
    cleanup.link("tap" + port["id"][:11])

    a.mdtool("enable-isolated-metadata", net)
    b.mdtool("enable-isolated-metadata", net)
    a.mdtool("dnsmasq", "reload", net)  # node A learns of node B's DHCP port (DNS servers)

    ports = [a.json("port-show", p["id"]) for p in a.json("port-list", "--network", net)]
    own = {p["binding:host_id"]: p for p in ports if p["device_owner"] == "network:dhcp"}
    assert set(own) == {a.host, b.host}, ports
    ip_of = {h: p["fixed_ips"][0]["ip_address"] for h, p in own.items()}
    assert ip_of[a.host] != ip_of[b.host]
    assert own[a.host]["mac_address"] != own[b.host]["mac_address"]

    # Each node: its own namespace (one name, two views), DHCP port and daemons.
    for node, other in ((a, b), (b, a)):
        addrs = node.in_view("ip", "netns", "exec", f"qdhcp-{net}", "ip", "-4", "-o", "addr").stdout
        assert f"{ip_of[node.host]}/24" in addrs and f"{ip_of[other.host]}/" not in addrs, addrs
        assert f"{METADATA}/32" in addrs
        for role in ("metadata", "agent", "proxy"):
            assert (node.state_dir / f"{role}.pid").exists(), node.log_tail()
        hosts = _host_file(node, net)
        for p in ports:  # every compute port, no DHCP port (as Neutron), on both nodes
            line = f"{p['mac_address']},host-{p['fixed_ips'][0]['ip_address'].replace('.', '-')}."
            assert (line in hosts) == (p["device_owner"] != "network:dhcp"), hosts
        opts = (node.state_dir / "dhcp" / net / "opts").read_text()
        assert f"{METADATA}/32,{ip_of[node.host]}" in opts  # own DHCP port as the next hop
        # no DNS server on the subnet: every node names both dnsmasqs (as Neutron does)
        assert sorted(opts.splitlines()[-1].split(",option:dns-server,")[1].split(",")) == \
            sorted(ip_of.values()), opts

    # Boot: whichever dnsmasq answers first becomes the metadata next hop.
    a.mdtool("port-plug", vm.port_id, vm.namespace)
    assert dhcp.udhcpc(vm.namespace), dhcp.output("udhcpc")
    first = route_via(ns_routes(vm.namespace), METADATA)
    assert first in ip_of.values(), ns_routes(vm.namespace)
    status, body = _curl(vm, "/openstack/latest/meta_data.json")
    assert status == 200, body
    assert json.loads(body)["uuid"] == vm.id

    # The node that answered stops its services; the instance renews from the other one.
    answered = next(n for n in (a, b) if ip_of[n.host] == first)
    survivor = b if answered is a else a
    answered.mdtool("disable-isolated-metadata", net)
    assert not answered.in_view("test", "-e", f"/run/netns/qdhcp-{net}").returncode == 0
    assert survivor.in_view("test", "-e", f"/run/netns/qdhcp-{net}").returncode == 0, \
        "stopping one node took the other node's namespace"
    dhcp.flush(vm.namespace)
    start = time.monotonic()
    assert dhcp.udhcpc(vm.namespace), dhcp.output("udhcpc")
    renewed_in = time.monotonic() - start
    assert route_via(ns_routes(vm.namespace), METADATA) == ip_of[survivor.host], \
        ns_routes(vm.namespace)
    status, body = _curl(vm, "/openstack/latest/meta_data.json")
    assert status == 200, f"{body}\n{survivor.log_tail()}"
    assert json.loads(body)["uuid"] == vm.id
    print(f"\nfirst answer from {answered.host} ({first}); after it stopped, "
          f"{survivor.host} ({ip_of[survivor.host]}) leased in {renewed_in:.1f} s")
