"""The metadata service: header checks, both trees, password, caching (pure, no sockets)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from mdtool import model
from mdtool.agent.sign import sign_instance_id
from mdtool.errors import NotFound
from mdtool.http.types import Request
from mdtool.metadata.service import MetadataService

SECRET = "unit-secret"
IID = "0f6c8b4e-2a3d-4d5e-9f10-1a2b3c4d5e6f"
PROJECT = "proj-1"
NET = "net-aaaa"
SUBNET4 = "sub-4444"
SUBNET6 = "sub-6666"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm7 op@host"


class FakeRegistry:
    """The read API of mdtool.registry, in memory."""

    def __init__(self):
        self.rev = 1
        self.instances: dict[str, model.Instance] = {}
        self.networks: dict[str, model.Network] = {}
        self.ports: list[model.Port] = []
        self.calls = 0

    def bump(self):
        self.rev += 1

    def revision(self) -> int:
        return self.rev

    def get_instance(self, ref):
        self.calls += 1
        for inst in self.instances.values():
            if ref in (inst.id, inst.name):
                return inst
        raise NotFound(f"no instance {ref}")

    def list_ports(self, network=None, device_id=None):
        return [p for p in self.ports if (network is None or p.network_id == network)
                and (device_id is None or p.device_id == device_id)]

    def list_networks(self):
        return list(self.networks.values())

    def get_network(self, ref):
        if ref not in self.networks:
            raise NotFound(ref)
        net = self.networks[ref]
        net.ports = self.list_ports(ref)
        return net

    def set_instance_password(self, instance_id, pw):
        inst = self.instances[instance_id]
        if inst.password:
            return False
        inst.password = pw
        self.bump()
        return True


def make_registry(*, dhcp=True, user_data=b"#cloud-config\nhostname: vm1\n") -> FakeRegistry:
    reg = FakeRegistry()
    reg.instances[IID] = model.Instance(
        id=IID, name="vm1", hostname="vm1", project_id=PROJECT, key_name="mykey",
        public_keys={"mykey": KEY}, meta={"role": "db"}, user_data=user_data)
    reg.networks[NET] = model.Network(
        id=NET, name="net1", bridge="brqnet-aaaa", mtu=1450, project_id=PROJECT,
        subnets=[
            model.Subnet(id=SUBNET4, name="sub1", network_id=NET, cidr="172.17.17.0/24",
                         ip_version=4, gateway_ip=None, enable_dhcp=dhcp,
                         dns_nameservers=["172.17.17.2"],
                         host_routes=[model.HostRoute("10.0.0.0/8", "172.17.17.254")]),
            model.Subnet(id=SUBNET6, name="sub6", network_id=NET, cidr="fd00:1::/64",
                         ip_version=6, gateway_ip="fd00:1::1", enable_dhcp=True),
        ])
    reg.ports = [
        model.Port(id="dhcp-port-0001", name="", network_id=NET, mac_address="fa:16:3e:00:00:01",
                   fixed_ips=[model.FixedIP(SUBNET4, "172.17.17.2")],
                   device_id="dhcp-host", device_owner=model.DHCP_OWNER, project_id=PROJECT),
        model.Port(id="4d3c2b1a-0000-4000-8000-00000000000b", name="p1", network_id=NET,
                   mac_address="fa:16:3e:00:00:0b",
                   fixed_ips=[model.FixedIP(SUBNET6, "fd00:1::b"),
                              model.FixedIP(SUBNET4, "172.17.17.11")],
                   device_id=IID, device_owner=model.COMPUTE_OWNER, project_id=PROJECT),
    ]
    return reg


def signed_headers(iid=IID, project=PROJECT, secret=SECRET):
    return [("X-Instance-ID", iid), ("X-Tenant-ID", project),
            ("X-Instance-ID-Signature", sign_instance_id(secret, iid)),
            ("X-Forwarded-For", "172.17.17.11")]


def call(svc, path, method="GET", headers=None, body=b""):
    req = Request(method, path, signed_headers() if headers is None else headers, body)
    return asyncio.run(svc.handle(req))


@pytest.fixture
def reg():
    return make_registry()


@pytest.fixture
def svc(reg):
    s = MetadataService(reg, SECRET, dhcp_domain="novalocal")
    yield s
    s.close()


def text(resp) -> str:
    return resp.body.decode()


def ctype(resp) -> str:
    return dict((k.lower(), v) for k, v in resp.headers)["content-type"]


# Header checks, as Nova does them --------------------------------------------------

@pytest.mark.parametrize("missing", ["X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature"])
def test_missing_header_is_400(svc, missing):
    headers = [h for h in signed_headers() if h[0] != missing]
    resp = call(svc, "/openstack/latest/meta_data.json", headers=headers)
    assert resp.status == 400
    assert missing in text(resp)


def test_bad_signature_is_403(svc):
    headers = signed_headers(secret="wrong")
    resp = call(svc, "/openstack/latest/meta_data.json", headers=headers)
    assert resp.status == 403
    assert text(resp) == "403 Forbidden\n\nInvalid proxy request signature.\n\n   "  # webob's


def test_signature_of_another_instance_is_403(svc):
    headers = signed_headers()
    headers[0] = ("X-Instance-ID", "another")
    assert call(svc, "/latest/meta-data/", headers=headers).status == 403


def test_unknown_instance_is_404(svc):
    resp = call(svc, "/openstack/latest/meta_data.json", headers=signed_headers(iid="nope"))
    assert resp.status == 404


def test_project_mismatch_is_404(svc):
    resp = call(svc, "/openstack/latest/meta_data.json", headers=signed_headers(project="other"))
    assert resp.status == 404


def test_duplicate_instance_header_is_403_as_in_nova(svc):
    """A WSGI server hands Nova the values joined by a comma: the signature fails."""
    headers = signed_headers() + [("X-Instance-ID", IID)]
    resp = call(svc, "/openstack/latest/meta_data.json", headers=headers)
    assert (resp.status, text(resp)) == (
        403, "403 Forbidden\n\nInvalid proxy request signature.\n\n   ")


@pytest.mark.parametrize("headers", [[], [("X-Forwarded-For", "10.0.0.9")]])
def test_root_is_the_ec2_versions_to_anyone_as_in_nova(svc, headers):
    resp = call(svc, "/", headers=headers)
    assert (resp.status, ctype(resp)) == (200, "text/plain; charset=UTF-8")
    assert text(resp) == "\n".join(EC2_VERSIONS)


def test_registry_failure_is_500(svc, reg):
    def boom(ref):
        raise RuntimeError("database is down")
    reg.get_instance = boom
    assert call(svc, "/openstack/latest/meta_data.json").status == 500


# Methods --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/openstack/latest/meta_data.json", "/latest/meta-data/",
                                  "/latest/user-data"])
def test_other_methods_answered_as_get_as_in_nova(svc, method, path):
    """Nova's handler never looks at the method outside the password path (a 405 made
    Neutron's agent fail with "Unexpected response code: 405")."""
    resp = call(svc, path, method=method, body=b"ignored")
    get = call(svc, path)
    assert resp.status == 200
    assert (resp.body, resp.headers) == (get.body, get.headers)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
def test_password_path_takes_get_and_post_only_as_in_nova(svc, reg, method):
    resp = call(svc, "/openstack/latest/password", method=method, body=b"x")
    assert (resp.status, text(resp)) == (
        400, "400 Bad Request\n\nGET and POST only are supported.\n\n   ")
    assert reg.instances[IID].password is None


def test_head_is_served(svc):
    resp = call(svc, "/openstack/latest/meta_data.json", method="HEAD")
    assert resp.status == 200


def test_token_put_is_not_ours(svc):
    assert call(svc, "/latest/api/token", method="PUT").status == 404


# OpenStack tree -------------------------------------------------------------------

OS_VERSIONS = ["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
               "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04", "latest"]


@pytest.mark.parametrize("path", ["/openstack", "/openstack/"])
def test_openstack_versions(svc, path):
    resp = call(svc, path)
    assert resp.status == 200
    assert text(resp) == "\n".join(OS_VERSIONS)


@pytest.mark.parametrize("path", ["/openstack/latest", "/openstack/latest/"])
def test_openstack_files(svc, path):
    assert text(call(svc, path)).split("\n") == [
        "meta_data.json", "user_data", "password", "vendor_data.json",
        "network_data.json", "vendor_data2.json"]


def test_openstack_files_of_old_version_and_without_user_data():
    reg = make_registry(user_data=None)
    svc = MetadataService(reg, SECRET)
    assert text(call(svc, "/openstack/2012-08-10")) == "meta_data.json"
    assert call(svc, "/openstack/latest/user_data").status == 404
    assert call(svc, "/openstack/2012-08-10/password").status == 404
    assert call(svc, "/openstack/1999-01-01/meta_data.json").status == 404
    svc.close()


def test_meta_data_json(svc):
    """Nova's keys in Nova's order, byte for byte (the random seed aside)."""
    resp = call(svc, "/openstack/latest/meta_data.json")
    assert resp.status == 200
    assert ctype(resp) == "application/json"
    md = json.loads(resp.body)
    assert len(base64.b64decode(md["random_seed"])) == 512
    assert resp.body.decode() == (
        '{"uuid": "%s", "meta": {"role": "db"}, "public_keys": {"mykey": "%s"}, '
        '"keys": [{"name": "mykey", "type": "ssh", "data": "%s"}], '
        '"hostname": "vm1.novalocal", "name": "vm1", "launch_index": 0, '
        '"availability_zone": "nova", "random_seed": "%s", "project_id": "%s", '
        '"devices": [], "dedicated_cpus": []}' % (IID, KEY, KEY, md["random_seed"], PROJECT))


def test_meta_data_json_without_meta_and_dhcp_domain(reg):
    reg.instances[IID].meta = {}
    svc = MetadataService(reg, SECRET, dhcp_domain="")
    md = json.loads(call(svc, "/openstack/2018-08-27/meta_data.json").body)
    assert "meta" not in md and "files" not in md and "dedicated_cpus" not in md
    assert md["hostname"] == "vm1"
    assert "dedicated_cpus" in json.loads(call(svc, "/openstack/2020-10-14/meta_data.json").body)
    svc.close()


@pytest.mark.parametrize("version", ["2020-10-14", "2025-04-04"])
def test_newest_versions_are_served(svc, version):
    assert text(call(svc, f"/openstack/{version}")).split("\n")[-1] == "vendor_data2.json"
    assert call(svc, f"/openstack/{version}/meta_data.json").status == 200


def test_meta_data_json_of_folsom_lacks_later_fields(svc):
    md = json.loads(call(svc, "/openstack/2012-08-10/meta_data.json").body)
    assert "random_seed" not in md and "project_id" not in md and "devices" not in md
    assert md["uuid"] == IID


def test_user_data_vendor_data(svc, reg):
    resp = call(svc, "/openstack/latest/user_data")
    assert resp.status == 200 and resp.body == b"#cloud-config\nhostname: vm1\n"
    assert json.loads(call(svc, "/openstack/latest/vendor_data.json").body) == {}
    assert call(svc, "/openstack/latest/vendor_data2.json").body == b'{"static": {}}'
    reg.instances[IID].vendor_data = {"cloud-init": "#cloud-config\n"}
    reg.bump()
    assert json.loads(call(svc, "/openstack/latest/vendor_data.json").body) == {
        "cloud-init": "#cloud-config\n"}
    assert json.loads(call(svc, "/openstack/latest/vendor_data2.json").body) == {
        "static": {"cloud-init": "#cloud-config\n"}}


def test_network_data_json_dhcp(svc):
    """As Nova writes it: v4 then v6 of the port, DHCP entries without an address, the
    link typed by its VIF type, its MTU null (DHCP gives it); served as text/plain."""
    resp = call(svc, "/openstack/latest/network_data.json")
    assert ctype(resp) == "text/plain; charset=UTF-8"
    port_id = "4d3c2b1a-0000-4000-8000-00000000000b"
    assert resp.body.decode() == (
        '{"links": [{"id": "tap4d3c2b1a-00", "vif_id": "%s", "type": "bridge", "mtu": null, '
        '"ethernet_mac_address": "fa:16:3e:00:00:0b"}], '
        '"networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "tap4d3c2b1a-00", '
        '"network_id": "%s"}, {"id": "network1", "type": "ipv6_dhcp", '
        '"link": "tap4d3c2b1a-00", "network_id": "%s"}], '
        '"services": [{"type": "dns", "address": "172.17.17.2"}]}' % (port_id, NET, NET))


def test_network_data_json_static():
    reg = make_registry(dhcp=False)
    reg.networks[NET].subnets[1].enable_dhcp = False
    svc = MetadataService(reg, SECRET)
    nd = json.loads(call(svc, "/openstack/latest/network_data.json").body)
    assert nd["links"][0]["mtu"] == 1450
    v4, v6 = nd["networks"]
    assert list(v4) == ["id", "type", "link", "ip_address", "netmask", "routes",
                        "network_id", "services"]
    assert v4 == {"id": "network0", "link": "tap4d3c2b1a-00", "network_id": NET, "type": "ipv4",
                  "ip_address": "172.17.17.11", "netmask": "255.255.255.0",
                  "routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0",
                              "gateway": "172.17.17.254"}],
                  "services": [{"type": "dns", "address": "172.17.17.2"}]}
    assert v6 == {"id": "network1", "link": "tap4d3c2b1a-00", "network_id": NET, "type": "ipv6",
                  "ip_address": "fd00:1::b", "netmask": "ffff:ffff:ffff:ffff::",
                  "routes": [{"network": "::", "netmask": "::", "gateway": "fd00:1::1"}],
                  "services": []}
    svc.close()


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"])
def test_network_data_json_ipv6_modes(reg, mode):
    sub6 = reg.networks[NET].subnets[1]
    sub6.ipv6_address_mode = sub6.ipv6_ra_mode = mode
    svc = MetadataService(reg, SECRET)
    v6 = json.loads(call(svc, "/openstack/latest/network_data.json").body)["networks"][1]
    assert (v6["type"], v6["ip_address"], v6["netmask"]) == (
        f"ipv6_{mode}", "fd00:1::b", "ffff:ffff:ffff:ffff::")
    svc.close()


def test_network_data_json_one_network_per_version_of_a_port(reg):
    reg.ports[1].fixed_ips.append(model.FixedIP(SUBNET4, "172.17.17.12"))
    svc = MetadataService(reg, SECRET)
    nets = json.loads(call(svc, "/openstack/latest/network_data.json").body)["networks"]
    assert [n["type"] for n in nets] == ["ipv4_dhcp", "ipv6_dhcp"]
    svc.close()


def test_unknown_openstack_path_is_404(svc):
    for path in ("/openstack/latest/nope", "/openstack/latest/meta_data.json/x",
                 "/nope", "/latest/meta-data/nope", "/latest/nope"):
        assert call(svc, path).status == 404, path


# Password ---------------------------------------------------------------------------

def test_password_get_post_once_then_409(svc, reg):
    resp = call(svc, "/openstack/latest/password")
    assert resp.status == 200 and resp.body == b""
    assert call(svc, "/openstack/latest/password", "POST", body=b"c2VjcmV0").status == 200
    assert reg.instances[IID].password == "c2VjcmV0"
    assert call(svc, "/openstack/latest/password").body == b"c2VjcmV0"
    assert call(svc, "/openstack/2013-04-04/password", "POST", body=b"other").status == 409
    assert reg.instances[IID].password == "c2VjcmV0"


def test_password_too_large_is_400(svc, reg):
    assert call(svc, "/openstack/latest/password", "POST", body=b"x" * 257).status == 400
    assert reg.instances[IID].password is None
    assert call(svc, "/openstack/latest/password", "POST", body=b"x" * 256).status == 200


def test_password_race_lost_in_registry_is_409(svc, reg):
    call(svc, "/openstack/latest/password")  # cache the docs without a password
    reg.instances[IID].password = "set-elsewhere"  # no revision bump: the cache is stale
    svc.follow_source = False
    assert call(svc, "/openstack/latest/password", "POST", body=b"mine").status == 409


# EC2 tree ---------------------------------------------------------------------------

EC2_VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
                "2008-02-01", "2008-09-01", "2009-04-04", "latest"]


def test_ec2_root(svc):
    assert text(call(svc, "/")) == "\n".join(EC2_VERSIONS)


@pytest.mark.parametrize("path", ["/latest", "/latest/", "/2009-04-04/"])
def test_ec2_version_listing(svc, path):
    assert text(call(svc, path)) == "meta-data/\nuser-data"


def test_ec2_version_listing_without_user_data():
    svc = MetadataService(make_registry(user_data=None), SECRET)
    assert text(call(svc, "/latest/")) == "meta-data/"
    assert call(svc, "/latest/user-data").status == 404
    svc.close()


@pytest.mark.parametrize("path", ["/latest/meta-data/", "/latest/meta-data"])
def test_ec2_meta_data_listing(svc, path):
    assert text(call(svc, path)) == "\n".join([
        "ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/", "hostname",
        "instance-action", "instance-id", "instance-type", "local-hostname", "local-ipv4",
        "mac", "placement/", "public-hostname", "public-ipv4", "public-keys/",
        "reservation-id", "security-groups"])


def test_ec2_meta_data_listing_of_1_0(svc):
    assert text(call(svc, "/1.0/meta-data/")) == "\n".join([
        "ami-id", "ami-launch-index", "ami-manifest-path", "hostname", "instance-id",
        "local-ipv4", "public-keys/", "reservation-id", "security-groups"])


@pytest.mark.parametrize("path,expected", [
    ("/latest/meta-data/instance-id", "i-0f6c8b4e"),
    ("/latest/meta-data/hostname", "vm1.novalocal"),
    ("/latest/meta-data/local-hostname", "vm1.novalocal"),
    ("/latest/meta-data/local-ipv4", "172.17.17.11"),
    ("/latest/meta-data/mac", "fa:16:3e:00:00:0b"),
    ("/latest/meta-data/ami-launch-index", "0"),
    ("/latest/meta-data/public-ipv4", ""),
    ("/latest/meta-data/placement/", "availability-zone"),
    ("/latest/meta-data/placement/availability-zone", "nova"),
    ("/latest/meta-data/public-keys/", "0=mykey"),
    ("/latest/meta-data/public-keys", "0=mykey"),
    ("/latest/meta-data/public-keys/0/", "openssh-key"),
    ("/latest/meta-data/public-keys/0", "openssh-key"),
    ("/latest/meta-data/public-keys/0/openssh-key", KEY),
    ("/latest/meta-data/block-device-mapping/", "ami\nroot"),
    ("/latest/meta-data/instance-id/", "i-0f6c8b4e"),
])
def test_ec2_leaves_and_dirs(svc, path, expected):
    resp = call(svc, path)
    assert resp.status == 200
    assert text(resp) == expected  # exact: leaves carry no trailing newline


@pytest.mark.parametrize("path", ["/latest/user-data", "/openstack/latest/user_data"])
def test_user_data_text_plain_as_in_nova(svc, path):
    resp = call(svc, path)
    assert resp.status == 200 and resp.body == b"#cloud-config\nhostname: vm1\n"
    assert ctype(resp) == "text/plain; charset=UTF-8"


def test_ec2_instance_type_is_the_flavor(svc, reg):
    assert text(call(svc, "/latest/meta-data/instance-type")) == "m1.small"
    reg.instances[IID].flavor = "m1.tiny"
    reg.bump()
    assert text(call(svc, "/latest/meta-data/instance-type")) == "m1.tiny"


def test_ec2_unknown_version_is_404(svc):
    assert call(svc, "/2010-01-01/meta-data/").status == 404


def test_no_public_keys_no_listing_entry(reg, svc):
    reg.instances[IID].public_keys = {}
    reg.bump()
    assert "public-keys/" not in text(call(svc, "/latest/meta-data/"))
    assert call(svc, "/latest/meta-data/public-keys/").status == 404
    assert "public_keys" not in json.loads(call(svc, "/openstack/latest/meta_data.json").body)


def test_local_ipv4_empty_without_ports(reg, svc):
    reg.ports = []
    reg.bump()
    assert call(svc, "/latest/meta-data/local-ipv4").body == b""
    nd = json.loads(call(svc, "/openstack/latest/network_data.json").body)
    assert nd == {"links": [], "networks": [], "services": []}


# Caching ---------------------------------------------------------------------------

def test_documents_cached_until_revision_changes(reg):
    svc = MetadataService(reg, SECRET, follow_source=False)
    asyncio.run(svc.refresh())
    for _ in range(20):
        assert call(svc, "/openstack/latest/meta_data.json").status == 200
    assert reg.calls == 1
    reg.instances[IID].name = "renamed"
    reg.bump()
    # Without a refresh the cache answers (daemon mode polls on a timer).
    assert json.loads(call(svc, "/openstack/latest/meta_data.json").body)["name"] == "vm1"
    assert asyncio.run(svc.refresh()) is True
    assert json.loads(call(svc, "/openstack/latest/meta_data.json").body)["name"] == "renamed"
    assert reg.calls == 2
    svc.close()


def test_concurrent_misses_read_registry_once(reg):
    svc = MetadataService(reg, SECRET, follow_source=False)

    async def burst():
        await svc.refresh()
        reqs = [Request("GET", "/openstack/latest/meta_data.json", signed_headers())
                for _ in range(50)]
        return await asyncio.gather(*(svc.handle(r) for r in reqs))

    assert all(r.status == 200 for r in asyncio.run(burst()))
    assert reg.calls == 1
    svc.close()


def test_random_probing_does_not_grow_cache_unbounded(svc):
    for i in range(400):
        call(svc, f"/latest/meta-data/x{i}")
    docs = svc._docs[IID]
    assert len(docs._cache) <= 256


def test_an_empty_password_post_is_400_and_stores_nothing(svc, reg):
    """Stored, '' looked unset yet made every later POST a 409: locked for good."""
    assert call(svc, "/openstack/latest/password", "POST", body=b"").status == 400
    assert reg.instances[IID].password is None
    assert call(svc, "/openstack/latest/password", "POST", body=b"c2VjcmV0").status == 200
