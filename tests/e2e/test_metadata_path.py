"""The metadata path for real: DHCP option 121, proxy, agent, metadata, read by cloud-init."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import http

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8dJmvU3mRpfm0b2xWq1Qk9Qm0Z0qVq3Y6xH2y8d1xN e2e@mdtool"

READER = r"""
import json, sys
from cloudinit.sources.helpers import openstack, ec2
base = "http://169.254.169.254"
res = openstack.MetadataReader(base).read_v2()
md = res["metadata"]
ud = res.get("userdata")
net = openstack.convert_net_json(res["networkdata"], known_macs={sys.argv[1]: "eth0"})
e = ec2.get_instance_metadata(metadata_address=base)
print(json.dumps({"uuid": md["uuid"], "hostname": md["hostname"], "public_keys": md["public_keys"],
                  "userdata": ud.decode() if isinstance(ud, bytes) else ud, "net": net,
                  "ec2_instance_id": e["instance-id"], "ec2_local_ipv4": e["local-ipv4"]}))
"""


def cloud_init_available() -> bool:
    return subprocess.run(["/usr/bin/python3", "-c", "import cloudinit"], capture_output=True).returncode == 0


@pytest.mark.skipif(not cloud_init_available(), reason="Debian's cloud-init is not installed")
def test_cloud_init_reads_its_metadata_after_dhcp(site, tmp_path):
    ud = tmp_path / "ud"
    ud.write_text("#cloud-config\nhostname: e2e\n")
    key = tmp_path / "k.pub"
    key.write_text(KEY + "\n")
    net = site.network("e2e-net", "10.77.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-e2e", net, "--user-data", ud, "--key-name", "k", "--public-key", key)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm, "dhclient")
    routes = subprocess.run(["ip", "netns", "exec", vm.namespace, "ip", "-4", "route"],
                            capture_output=True, text=True).stdout
    assert "169.254.169.254 via 10.77.0.1" in routes and "default" not in routes
    res = subprocess.run(["ip", "netns", "exec", vm.namespace, "/usr/bin/python3", "-c", READER, vm.mac],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["uuid"] == vm.id
    assert got["hostname"].split(".")[0] == "vm-e2e"
    assert got["public_keys"] == {"k": KEY}
    assert got["userdata"] == "#cloud-config\nhostname: e2e\n"
    addrs = [s for c in got["net"]["config"] if c.get("type") == "physical"
             for s in c.get("subnets", [])]
    assert c["mac_address"] == vm.mac if (c := next(c for c in got["net"]["config"]
                                                     if c.get("type") == "physical")) else False
    assert any(s.get("type") in ("dhcp4", "dhcp") or s.get("address", "").startswith(vm.ip)
               for s in addrs), got["net"]
    assert got["ec2_instance_id"].startswith("i-") and got["ec2_local_ipv4"] == vm.ip


def test_same_ip_on_two_networks_each_gets_its_own(site):
    a = site.network("e2e-a", "10.78.0.0/24")
    b = site.network("e2e-b", "10.78.0.0/24")
    site.mdtool("enable-isolated-metadata", a)
    site.mdtool("enable-isolated-metadata", b)
    va = site.instance("vm-a", a, ip="10.78.0.50")
    vb = site.instance("vm-b", b, ip="10.78.0.50")
    site.mdtool("dnsmasq", "reload", a)
    site.mdtool("dnsmasq", "reload", b)
    for vm in (va, vb):
        site.boot(vm)
    for vm in (va, vb):
        code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
        assert code == 200 and json.loads(body)["uuid"] == vm.id
    # one proxy process serves both namespaces
    assert len({site.pid("proxy")}) == 1 and site.pid("proxy")


def test_forged_headers_get_only_own_metadata(site):
    net = site.network("e2e-forge", "10.79.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    victim = site.instance("victim", net)
    attacker = site.instance("attacker", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(attacker)
    other = site.json("net-create", "other")["id"]
    site.cleanup.nft_table(other)
    site.networks.append(other)
    secret = (site.state_dir / "metadata_proxy_shared_secret").read_text().strip()
    sig = hmac.new(secret.encode(), victim.id.encode(), hashlib.sha256).hexdigest()
    forged = ["-H", f"X-Forwarded-For: {victim.ip}", "-H", f"X-Neutron-Network-ID: {other}",
              "-H", f"X-Instance-ID: {victim.id}", "-H", f"X-Instance-ID-Signature: {sig}",
              "-H", "X-Tenant-ID: admin", "-H", f"X-Quantum-Network-ID: {other}"]
    code, body = http(site.curl(attacker, "/openstack/latest/meta_data.json", *forged))
    assert code == 200 and json.loads(body)["uuid"] == attacker.id
    code, body = http(site.curl(attacker, "/latest/meta-data/instance-id", *forged))
    assert code == 200 and body != "" and victim.id[:8] not in body


@pytest.mark.chain
def test_wrong_secret_unknown_source_and_agent_down(site):
    net = site.network("e2e-neg", "10.80.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-neg", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    # a request signed with the wrong secret, straight to the metadata service: 403
    bad = hmac.new(b"not-the-secret", vm.id.encode(), hashlib.sha256).hexdigest()
    req = (f"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\nX-Instance-ID: {vm.id}\r\n"
           f"X-Tenant-ID: admin\r\nX-Instance-ID-Signature: {bad}\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", site.metadata_port), timeout=5) as s:
        s.sendall(req.encode())
        reply = s.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 403") and "Invalid proxy request signature." in reply
    # a source address that is no port of the network: the bridge drops it (port
    # security); without port security it reaches the agent, which answers 404
    subprocess.run(["ip", "netns", "exec", vm.namespace, "ip", "addr", "add", "10.80.0.200/24",
                    "dev", "eth0"], check=True)
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json", "--interface", "10.80.0.200",
                                "-m", "2"))
    assert code == 0
    site.mdtool("port-update", vm.port_id, "--no-port-security")
    # The dropped ARP (sender 10.80.0.200) left the DHCP port's neighbour entry FAILED in the
    # instance, and the kernel answers EHOSTUNREACH from it for a while: forget it.
    subprocess.run(["ip", "netns", "exec", vm.namespace, "ip", "neigh", "flush", "dev", "eth0"],
                   check=True)
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json", "--interface", "10.80.0.200"))
    assert code == 404 and f"Instance was not found on network {net}" in body
    # the agent down: 502 at once, not a hang
    os.kill(site.pid("agent"), 9)
    res = site.curl(vm, "/openstack/latest/meta_data.json")
    code, body = http(res)
    assert code == 502, res.stdout + res.stderr
    # the agent back (the proxy's pooled connections to the old one are dead): 200 again,
    # from the first request on
    site.mdtool("enable-isolated-metadata", net)
    for _ in range(3):
        res = site.curl(vm, "/openstack/latest/meta_data.json")
        assert http(res)[0] == 200, res.stdout + res.stderr
    # an agent restart between two requests (a warm pooled connection to the old one, no
    # request failing in between): never seen by the instance
    os.kill(site.pid("agent"), 9)
    site.mdtool("enable-isolated-metadata", net)
    res = site.curl(vm, "/openstack/latest/meta_data.json")
    assert http(res)[0] == 200, res.stdout + res.stderr


class WsgiNova:
    """Nova's metadata API as its WSGI server sees a request: ``X_Instance_ID`` and
    ``X-Instance-ID`` land on one key (repeated keys joined by a comma), and
    ``X-Metadata-Provider`` sends Nova down its load-balancer path. Answers 403 as Nova does
    then, else 200 with the instance id. Records every header name it received."""

    def __init__(self, secret: str):
        import http.server
        import threading

        self.secret = secret
        self.names: list[list[str]] = []
        nova = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                environ: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = "HTTP_" + name.upper().replace("-", "_")
                    environ[key] = f"{environ[key]},{value}" if key in environ else value
                nova.names.append([n for n in self.headers.keys()])
                iid = environ.get("HTTP_X_INSTANCE_ID", "")
                good = hmac.new(nova.secret.encode(), iid.encode(), hashlib.sha256).hexdigest()
                if "HTTP_X_METADATA_PROVIDER" in environ or \
                        environ.get("HTTP_X_INSTANCE_ID_SIGNATURE") != good:
                    status, body = 403, b"Invalid proxy request signature."
                else:
                    status, body = 200, iid.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_instance_headers_never_reach_nova(site):
    """#13.10: only the allow-list and the agent's identity reach Nova (proxy -> agent -> Nova)."""
    secret = "wsgi-nova-secret"
    nova = WsgiNova(secret)
    site.cleanup.add("nova", nova.close)
    site.env.update(MDTOOL_NOVA_METADATA_URL=f"http://127.0.0.1:{nova.port}",
                    MDTOOL_METADATA_PROXY_SHARED_SECRET=secret)
    net = site.network("e2e-hdr", "10.81.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    victim = site.instance("victim", net)
    vm = site.instance("vm-hdr", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    code, body = http(site.curl(vm, "/latest/meta-data/instance-id"))
    assert (code, body) == (200, vm.id)  # the chain works for a plain request
    smuggled = ["-H", f"X_Forwarded_For: {victim.ip}", "-H", f"X_Instance_ID: {victim.id}",
                "-H", "X-Metadata-Provider: lb-1", "-H", "X_Tenant_ID: admin",
                "-H", "X-Metadata-Provider-Signature: 00", "-H", "Cookie: a=b"]
    code, body = http(site.curl(vm, "/latest/meta-data/instance-id", *smuggled))
    assert (code, body) == (200, vm.id)
    # Only the allow-list of mdtool/http/headers.py (User-Agent is on it: inspect's probes are
    # tagged by it in every access line) and the identity the agent states.
    assert sorted(n.lower() for n in nova.names[-1]) == [
        "accept", "host", "user-agent", "x-forwarded-for", "x-instance-id",
        "x-instance-id-signature", "x-tenant-id"]


def test_https_nova_behind_the_real_chain(site, tmp_path_factory):
    """#16.3: enable-isolated-metadata with an https Nova (its own CA): the instance is
    served; with a CA that did not sign Nova's certificate it gets a 503, and the agent's
    log says why."""
    from tests.unit.test_agent_tls import TlsNova, make_pki

    pki = make_pki(tmp_path_factory.mktemp("pki"))
    nova = TlsNova(pki)
    site.cleanup.add("nova", nova.close)
    site.env.update(MDTOOL_NOVA_METADATA_HOST="localhost",
                    MDTOOL_NOVA_METADATA_PORT=str(nova.port),
                    MDTOOL_NOVA_METADATA_PROTOCOL="https",
                    MDTOOL_AUTH_CA_CERT=str(pki / "nova-ca.pem"))
    net = site.network("e2e-tls", "10.85.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-tls", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 200 and json.loads(body)["uuid"] == vm.id
    assert site.pid("metadata") is None  # Nova is remote: no local metadata service

    os.kill(site.pid("agent"), 9)
    site.env["MDTOOL_AUTH_CA_CERT"] = str(pki / "other-ca.pem")
    site.mdtool("enable-isolated-metadata", net)
    code, _ = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 503
    log = "".join(p.read_text() for p in site.state_dir.glob("log/*agent*"))
    assert "its certificate is not trusted" in log and "check auth_ca_cert" in log


BOTOCORE = r"""
import json
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
creds = InstanceMetadataFetcher(timeout=5, num_attempts=2).retrieve_iam_role_credentials()
region = InstanceMetadataRegionFetcher(timeout=5, num_attempts=2).retrieve_region()
print(json.dumps({"creds": creds, "region": region}))
"""


def test_botocore_imds_fetchers_in_the_instance(site):
    """botocore's own IMDS client (token PUT, then GETs with the token) against the real
    proxy, agent and metadata service: no IAM role (so no credentials, without an error)
    and the region it derives from the availability zone."""
    import botocore  # noqa: F401 (in the test extra: missing, the test fails, never skips)
    net = site.network("e2e-boto", "10.81.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-boto", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"
    res = subprocess.run(["ip", "netns", "exec", vm.namespace, sys.executable, "-c", BOTOCORE],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"creds": {}, "region": "nov"}  # zone "nova" minus a letter
