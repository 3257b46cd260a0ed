"""The metadata documents: mdtool's metadata service against Nova 34's own, byte for byte.

One instance is made with mdtool's CLI. Nova's ``MetadataRequestHandler`` serves it from a
real ``InstanceMetadata`` (tests/interop/drivers/nova_metadata.py: only Nova's database and
Neutron's server are stubbed). mdtool's agent (its request handler, in process) forwards
every request a metadata client makes once to Nova over HTTP and once to mdtool's
metadata service; status, content type and body must be the same. Where mdtool
deliberately differs, docs/openstack.md names the difference and this test asserts
exactly it. The other way round, Neutron's own ``_proxy_request``
(tests/interop/drivers/neutron_metadata_proxy.py) sends the same requests to mdtool's
metadata service over HTTP and must get Nova's answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest

from mdtool.agent.handler import AgentHandler
from mdtool.agent.index import PortIndex
from mdtool.http.client import UpstreamPool
from mdtool.http.types import Request
from mdtool.metadata.service import MetadataService
from mdtool.metadata.tree import ec2_instance_id
from mdtool.netns.ip_lib import Netlink
from mdtool.pipeline import Node
from mdtool.registry import open_registry
from tests.interop.neutron import Site, neutron_network

SECRET = "interop-secret"
DHCP_DOMAIN = "example.internal"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm7 op@host"

# What cloud-init 22.4's OpenStack reader asks (newest version it knows: 2018-08-27), then
# its EC2 reader (2009-04-04, walking the whole meta-data tree), then botocore's
# InstanceMetadataFetcher / IMDSRegionProvider (after its token PUT, which mdtool's proxy
# answers itself).
OPENSTACK_PATHS = [
    "/openstack", "/openstack/2018-08-27/meta_data.json", "/openstack/2018-08-27/user_data",
    "/openstack/2018-08-27/vendor_data.json", "/openstack/2018-08-27/vendor_data2.json",
    "/openstack/2018-08-27/network_data.json", "/openstack/latest",
    "/openstack/latest/meta_data.json", "/openstack/2020-10-14/meta_data.json",
    "/openstack/2025-04-04", "/openstack/latest/network_data.json",
    "/openstack/latest/password", "/openstack/2012-08-10/password",
]
EC2_PATHS = [
    "/", "/2009-04-04/", "/2009-04-04/user-data", "/latest/user-data", "/1.0/meta-data/",
    "/2007-08-29/meta-data/",
]
BOTOCORE_PATHS = [
    "/latest/meta-data/iam/security-credentials/",
    "/latest/meta-data/placement/availability-zone",
    "/latest/dynamic/instance-identity/document",
]
EC2_META = "/2009-04-04/meta-data/"
# What cloud-init 22.4 asked on a real boot (recorded by the lead from the proxy's log).
RECORDED = Path(__file__).resolve().parents[2] / "mdtool/bench/cloudinit-22.4-requests.txt"

# mdtool's deliberate differences (docs/openstack.md, "The metadata documents"):
# the EC2 meta-data has `mac` (the instance's first MAC), which Nova does not serve.
MDTOOL_ONLY = {EC2_META + "mac", "/latest/meta-data/mac"}


@pytest.fixture
def site(tmp_path, monkeypatch):
    s = Site(tmp_path, monkeypatch, f"metadata_proxy_shared_secret = {SECRET}\n"
                                    f"dhcp_domain = {DHCP_DOMAIN}\n")
    s("net-create", "net1", "--mtu", "1450")
    s.subnet = s.id("subnet-create", "net1", "10.20.0.0/24", "--gateway", "10.20.0.1",
                    "--dns-nameserver", "10.20.0.53",
                    "--host-route", "destination=192.168.0.0/16,nexthop=10.20.0.254")
    return s


def make_instance(site: Site, tmp_path, *extra: str) -> str:
    ud = tmp_path / "ud"
    ud.write_bytes(b"#cloud-config\nhostname: vm1\n")
    key = tmp_path / "k.pub"
    key.write_text(KEY + "\n")
    iid = site.id("instance-create", "vm1", "--user-data", ud, "--key-name", "mykey",
                  "--public-key", key, "--meta", "role=db", "--flavor", "m1.tiny", *extra)
    site("port-create", "net1", "--device-id", "vm1", "--fixed-ip",
         f"subnet={site.subnet},ip_address=10.20.0.11")
    return iid


class Both:
    """The same requests through mdtool's agent, once to Nova and once to mdtool."""

    def __init__(self, site: Site, openstack, iid: str):
        cfg = site.config()
        reg = open_registry(cfg.db_url)
        node = Node(cfg, reg, Netlink())  # the DHCP port only: no socket is opened
        net = reg.get_network(node.dhcp(reg.get_network("net1"), create=True).network.id)
        inst = reg.get_instance(iid)
        self.network_id = net.id
        self.ip = "10.20.0.11"
        payload = {
            "secret": SECRET, "dhcp_domain": DHCP_DOMAIN, "vif_type": "bridge",
            "network": neutron_network(net),
            "instance": {
                "uuid": inst.id, "hostname": inst.hostname, "display_name": inst.name,
                "project_id": inst.project_id, "key_name": inst.key_name,
                "key_data": inst.public_keys.get(inst.key_name), "key_type": "ssh",
                "user_data": base64.b64encode(inst.user_data).decode(),
                "metadata": dict(inst.meta), "flavor": inst.flavor,
                "availability_zone": inst.availability_zone,
                "launch_index": inst.launch_index, "root_device_name": "/dev/vda",
                "security_groups": ["default"],
                # Nova numbers these from its database; give it mdtool's
                "ec2_instance_id": ec2_instance_id(inst.id), "ami_id": "ami-00000000",
                "reservation_id": self._mdtool_leaf(reg, inst.id, "reservation-id"),
            },
        }
        _, ready = openstack.serve("nova_metadata", payload)
        index = PortIndex(reg.list_ports(), 1)
        self.service = MetadataService(reg, SECRET, dhcp_domain=DHCP_DOMAIN)
        self.nova = UpstreamPool(f"http://127.0.0.1:{ready['port']}")
        self.to_nova = AgentHandler(lambda: index, self.nova, SECRET)
        self.to_mdtool = AgentHandler(lambda: index, _Direct(self.service), SECRET)

    @staticmethod
    def _mdtool_leaf(reg, iid: str, name: str) -> str:
        from mdtool.metadata.tree import InstanceDocs
        inst = reg.get_instance(iid)
        return InstanceDocs(inst, [], {}).ec2_meta_data()[name]

    def request(self, handler, method: str, path: str, body: bytes = b""):
        req = Request(method, path, [("X-Forwarded-For", self.ip),
                                     ("X-Neutron-Network-ID", self.network_id)], body)
        resp = asyncio.run(handler.handle(req))
        ctype = next((v for k, v in resp.headers if k.lower() == "content-type"), None)
        return resp.status, ctype, resp.body

    def both(self, method: str, path: str, body: bytes = b""):
        return (self.request(self.to_mdtool, method, path, body),
                self.request(self.to_nova, method, path, body))

    def close(self):
        asyncio.run(self.nova.close())
        self.service.close()


class _Direct:
    """The agent's upstream when it is mdtool's own service, without a socket."""

    def __init__(self, service):
        self.service = service

    async def request(self, method, target, headers, body):
        return await self.service.handle(Request(method, target, headers, body))


@pytest.fixture
def both(site, openstack, tmp_path):
    b = Both(site, openstack, make_instance(site, tmp_path))
    yield b
    b.close()


SEED = re.compile(rb'"random_seed": "[A-Za-z0-9+/=]+"')


def with_mac(listing: bytes) -> bytes:
    """Nova's EC2 meta-data listing plus mdtool's deliberate `mac` entry."""
    return b"\n".join(sorted(listing.split(b"\n") + [b"mac"]))


def same(mine, theirs, path):
    if path.endswith("meta_data.json"):  # Nova draws a new seed for every request
        mine = mine[:2] + (SEED.sub(b'"random_seed": ""', mine[2]),)
        theirs = theirs[:2] + (SEED.sub(b'"random_seed": ""', theirs[2]),)
    if re.fullmatch(r"/(latest|2\d{3}-\d\d-\d\d)/meta-data/", path):  # mdtool adds mac
        theirs = theirs[:2] + (with_mac(theirs[2]),)
    assert mine == theirs, f"{path}\nmdtool: {mine}\nnova:   {theirs}"


def ec2_walk(b: Both, path: str) -> list[str]:
    """Every path under ``path`` as cloud-init's EC2 reader walks it (on Nova's answers)."""
    status, _, body = b.request(b.to_nova, "GET", path)
    assert status == 200, path
    out = [path]
    for line in body.decode().split("\n"):
        name = line.split("=", 1)[0] + "/" if "=" in line else line  # 0=key: a directory
        if name.endswith("/"):
            out += ec2_walk(b, path + name)
        else:
            out.append(path + name)
    return out


def test_every_client_path_same_as_nova(both):
    walked = ec2_walk(both, EC2_META)
    assert EC2_META + "instance-type" in walked and EC2_META + "public-keys/0/openssh-key" in walked
    for path in OPENSTACK_PATHS + EC2_PATHS + BOTOCORE_PATHS + walked:
        same(*both.both("GET", path), path)
    body = json.loads(both.request(both.to_mdtool, "GET", "/openstack/latest/meta_data.json")[2])
    assert body["hostname"] == f"vm1.{DHCP_DOMAIN}"


def test_recorded_cloud_init_boot_same_as_nova(both):
    """Every request of the recorded cloud-init 22.4 boot; `mac` is asked only because
    mdtool lists it (Nova: 404, not listed, so never asked)."""
    lines = [l.split() for l in RECORDED.read_text().splitlines() if l and l[0] != "#"]
    assert len(lines) > 20
    for method, path in lines:
        mine, theirs = both.both(method, path)
        if path in MDTOOL_ONLY:
            assert (mine[0], theirs[0]) == (200, 404), path
        else:
            same(mine, theirs, path)


def test_mdtool_only_ec2_mac(both):
    """The one deliberate difference in the EC2 tree: mdtool adds `mac`."""
    mine, theirs = both.both("GET", EC2_META)
    assert (mine[0], mine[2]) == (theirs[0], with_mac(theirs[2]))
    for path in MDTOOL_ONLY:
        mine, theirs = both.both("GET", path)
        assert (mine[0], theirs[0]) == (200, 404)
        assert re.fullmatch(rb"fa:16:3e(:[0-9a-f]{2}){3}", mine[2])


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_same_as_nova(both, method):
    for path in ("/openstack/latest/meta_data.json", "/latest/meta-data/instance-id",
                 "/openstack/latest/password"):
        same(*both.both(method, path, b"x"), f"{method} {path}")


def test_password_post_once_same_as_nova(both):
    mine, theirs = both.both("POST", "/openstack/latest/password", b"c2VjcmV0")
    assert mine[0] == theirs[0] == 200
    assert both.request(both.to_mdtool, "GET", "/openstack/latest/password")[2] == b"c2VjcmV0"


# Neutron's metadata agent in front of mdtool's metadata service ------------------------

def test_neutron_agent_through_mdtool_metadata(both, openstack):
    """Neutron's own `_proxy_request` to mdtool's metadata service (over HTTP): every path
    and method gets the answer it gets from Nova, never "Unexpected response code"."""
    import threading

    from mdtool.http.listen import bind_tcp
    from mdtool.http.server import HttpServer

    loop = asyncio.new_event_loop()
    server = HttpServer(both.service.handle)
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    loop.run_until_complete(server.add_socket(sock))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    paths = OPENSTACK_PATHS + EC2_PATHS + BOTOCORE_PATHS + ["/latest/meta-data/instance-type"]
    requests = [{"method": "GET", "path": p, "body": ""} for p in paths]
    requests += [{"method": m, "path": p, "body": "x"}
                 for m in ("POST", "PUT", "DELETE")
                 for p in ("/openstack/latest/meta_data.json", "/latest/meta-data/instance-id",
                           "/openstack/latest/password")]
    try:
        got = openstack.run("neutron_metadata_proxy", {
            "url": f"http://127.0.0.1:{port}", "secret": SECRET,
            "instance_id": both.service.source.get_instance("vm1").id,
            "project_id": "admin", "remote_ip": both.ip, "requests": requests})
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert all("error" not in g for g in got), [(r, g) for r, g in zip(requests, got)
                                                 if "error" in g]
    for r, g in zip(requests, got):
        status, ctype, body = both.request(both.to_nova, r["method"], r["path"],
                                           r["body"].encode())
        assert g["status"] == status, (r, g, status)
        if status == 200:
            mine = body.decode()
            if r["path"].endswith("meta_data.json"):
                mine, g["body"] = (SEED.sub(b'"random_seed": ""', x.encode()).decode()
                                   for x in (mine, g["body"]))
            if re.fullmatch(r"/(latest|2\d{3}-\d\d-\d\d)/meta-data/", r["path"]):
                mine = with_mac(body).decode()
            assert (g["content_type"], g["body"]) == (ctype.split(";")[0], mine), r
