"""Debian's real cloud-init readers against agent + metadata service over real HTTP.

The chain is the production one minus the namespace: a stand-in for the proxy adds
X-Neutron-Network-ID and X-Forwarded-For, the agent (its real handler, over mdtool's HTTP
server) resolves and signs, and forwards through the pooled client to the metadata service
(its real handler, over another HTTP server). cloud-init runs under /usr/bin/python3.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading

import pytest

from mdtool.agent.handler import AgentHandler
from mdtool.agent.index import PortIndex
from mdtool.http.client import UpstreamPool
from mdtool.http.server import HttpServer
from mdtool.http.types import Request
from mdtool.metadata.service import MetadataService

from tests.unit.test_metadata_service import IID, KEY, NET, SECRET, make_registry

SYSTEM_PYTHON = "/usr/bin/python3"
INSTANCE_IP = "172.17.17.11"
INSTANCE_MAC = "fa:16:3e:00:00:0b"


def _cloudinit_available() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import cloudinit.sources.helpers.openstack"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _cloudinit_available(),
                                reason="/usr/bin/python3 cannot import cloudinit")


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class Chain:
    """Metadata service and agent on ephemeral loopback ports, in a background loop."""

    def __init__(self, source_ip: str = INSTANCE_IP):
        self.registry = make_registry()
        self.source_ip = source_ip
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.md_sock = _listener()
        self.agent_sock = _listener()
        self.base = "http://127.0.0.1:%d" % self.agent_sock.getsockname()[1]

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        self.stop = asyncio.Event()
        service = MetadataService(self.registry, SECRET, dhcp_domain="novalocal",
                                  follow_source=False)
        await service.refresh()
        md_server = HttpServer(service.handle)
        await md_server.add_socket(self.md_sock)
        upstream = UpstreamPool("http://127.0.0.1:%d" % self.md_sock.getsockname()[1])
        index = PortIndex(self.registry.ports, revision=self.registry.rev)
        agent = AgentHandler(lambda: index, upstream, SECRET)

        async def proxy(req: Request):
            req.headers = [(k, v) for k, v in req.headers
                           if k.lower() not in ("x-forwarded-for", "x-neutron-network-id")]
            req.headers += [("X-Forwarded-For", self.source_ip),
                            ("X-Neutron-Network-ID", NET)]
            return await agent.handle(req)

        agent_server = HttpServer(proxy)
        await agent_server.add_socket(self.agent_sock)
        self.ready.set()
        await self.stop.wait()
        await agent_server.close(1.0)
        await md_server.close(1.0)
        await upstream.close()
        service.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


READER = r"""
import json, sys
from cloudinit.sources.helpers import ec2, openstack

base, mac = sys.argv[1], sys.argv[2]
# MetadataReader reads the EC2 tree from the fixed 169.254.169.254: point it at the test server.
_ec2 = ec2.get_instance_metadata
openstack.ec2.get_instance_metadata = lambda **kw: _ec2(**{"metadata_address": base, **kw})

res = openstack.MetadataReader(base, timeout=5, retries=0).read_v2()
md = res["metadata"]
out = {
    "metadata": {k: v for k, v in md.items() if k != "random_seed"},
    "random_seed_len": len(md.get("random_seed", b"")),
    "userdata": res["userdata"].decode() if isinstance(res["userdata"], bytes) else res["userdata"],
    "vendordata": res.get("vendordata"),
    "networkdata": res.get("networkdata"),
    "net_config": openstack.convert_net_json(res["networkdata"], known_macs={mac: "eth0"}),
    "ec2_via_reader": res["ec2-metadata"],
    "ec2": ec2.get_instance_metadata(metadata_address=base, timeout=5, retries=0),
    "ec2_userdata": ec2.get_instance_userdata(metadata_address=base, timeout=5,
                                              retries=0).decode(),
}
print(json.dumps(out))
"""


def run_reader(base: str) -> dict:
    proc = subprocess.run([SYSTEM_PYTHON, "-c", READER, base, INSTANCE_MAC],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def result():
    with Chain() as chain:
        yield run_reader(chain.base)


def test_openstack_reader_metadata(result):
    md = result["metadata"]
    assert md["uuid"] == IID and md["instance-id"] == IID
    assert md["hostname"] == "vm1.novalocal"
    assert md["local-hostname"] == "vm1.novalocal"
    assert md["public_keys"] == {"mykey": KEY}
    assert md["project_id"] == "proj-1"
    assert result["random_seed_len"] == 512


def test_openstack_reader_user_and_vendor_data(result):
    assert result["userdata"] == "#cloud-config\nhostname: vm1\n"
    assert result["vendordata"] == {}


def test_openstack_network_config(result):
    cfg = result["net_config"]
    assert cfg["version"] == 1
    phys, dns = cfg["config"]
    assert phys["type"] == "physical" and phys["name"] == "eth0"
    # MTU null in network_data.json, as Nova writes it with DHCP: DHCP option 26 gives it
    assert phys["mac_address"] == INSTANCE_MAC and phys.get("mtu") is None
    types = [s["type"] for s in phys["subnets"]]
    assert types == ["dhcp4", "dhcp6"]  # v4 first; IPv6 with DHCP and no mode: ipv6_dhcp
    assert dns == {"type": "nameserver", "address": "172.17.17.2"}


def test_ec2_reader(result):
    for ec2 in (result["ec2"], result["ec2_via_reader"]):
        assert ec2["instance-id"] == "i-0f6c8b4e"
        assert ec2["local-ipv4"] == INSTANCE_IP
        assert ec2["mac"] == INSTANCE_MAC
        assert ec2["hostname"] == "vm1.novalocal"
        assert ec2["placement"] == {"availability-zone": "nova"}
        assert ec2["public-keys"] == {"mykey": KEY}
        assert ec2["security-groups"] == "default" and ec2["ami-launch-index"] == "0"
    assert result["ec2_userdata"] == "#cloud-config\nhostname: vm1\n"


def test_unknown_source_gets_nothing():
    with Chain(source_ip="172.17.17.99") as chain:
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c",
             "import sys\nfrom cloudinit.sources.helpers import openstack\n"
             "try:\n openstack.MetadataReader(sys.argv[1], timeout=5, retries=0).read_v2()\n"
             "except openstack.NonReadable as e:\n print('nonreadable', e)\n",
             chain.base], capture_output=True, text=True, timeout=120)
    assert "nonreadable" in proc.stdout, proc.stderr[-2000:]
