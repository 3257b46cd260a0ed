"""No instance is trusted: sessions tokens end to end, what one instance can see of
another, the hop limit against a forwarding container, and the modes of what holds secrets.

Complements tests/e2e/test_metadata_path.py (forged headers, same IP on two networks, a
source that is no port, wrong secret), which this file does not repeat.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import http
from tests.e2e.helpers import wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None
                       or shutil.which("curl") is None, reason="needs dnsmasq, udhcpc, curl"),
    pytest.mark.timeout(240),
]

TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"
MD_JSON = "/openstack/latest/meta_data.json"


def put_token(site, vm, *extra: str, ttl: str | None = "300") -> tuple[int, str]:
    args = ["-X", "PUT", *extra]
    if ttl is not None:
        args += ["-H", f"{TTL}: {ttl}"]
    return http(site.curl(vm, "/latest/api/token", *args))


def two_instances(site, cidr: str, env: dict | None = None):
    site.env.update(env or {})
    net = site.network("iso-net", cidr)
    site.mdtool("enable-isolated-metadata", net)
    a = site.instance("vm-a", net)
    b = site.instance("vm-b", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(a)
    site.boot(b)
    return net, a, b


def test_required_tokens_end_to_end(site):
    """http_tokens=required: no token 401; a token works only for the instance it was
    issued to, and still works after the proxy was killed and brought back."""
    net, a, b = two_instances(site, "10.81.0.0/24", {"MDTOOL_HTTP_TOKENS": "required"})

    assert http(site.curl(a, MD_JSON))[0] == 401
    assert put_token(site, a, ttl=None)[0] == 400
    assert put_token(site, a, ttl="0")[0] == 400
    assert put_token(site, a, ttl="21601")[0] == 400
    assert put_token(site, a, "-H", "X-Forwarded-For: 10.81.0.99")[0] == 400

    code, tok_a = put_token(site, a)
    assert code == 200 and tok_a
    code, body = http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: {tok_a}"))
    assert code == 200 and json.loads(body)["uuid"] == a.id
    code, body = http(site.curl(a, "/latest/meta-data/local-ipv4", "-H", f"{TOKEN}: {tok_a}"))
    assert (code, body) == (200, a.ip)

    # a's token is worthless to b; b's own works for b only
    assert http(site.curl(b, MD_JSON, "-H", f"{TOKEN}: {tok_a}"))[0] == 401
    code, tok_b = put_token(site, b)
    code, body = http(site.curl(b, MD_JSON, "-H", f"{TOKEN}: {tok_b}"))
    assert code == 200 and json.loads(body)["uuid"] == b.id
    assert http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: {tok_b}"))[0] == 401
    assert http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: {tok_a}x"))[0] == 401

    # no table to lose: a token outlives the proxy process that issued it
    old = site.pid("proxy")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: site.pid("proxy") is None, 5, "the proxy to die")
    site.mdtool("enable-isolated-metadata", net)
    assert site.pid("proxy") not in (None, old)
    code, body = http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: {tok_a}"))
    assert code == 200 and json.loads(body)["uuid"] == a.id


def test_an_instance_sees_only_its_own_data_and_loses_it_with_its_port(site):
    net, a, b = two_instances(site, "10.82.0.0/24")
    code, body = http(site.curl(a, MD_JSON))
    assert code == 200 and json.loads(body)["uuid"] == a.id and b.id not in body
    for path in ("/latest/meta-data/local-ipv4", "/latest/meta-data/mac"):
        code, body = http(site.curl(a, path))
        assert code == 200 and body in (a.ip, a.mac)
    # optional mode: a token is honoured, a bad one is refused even though none is needed
    code, tok = put_token(site, a)
    assert code == 200
    assert http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: {tok}"))[0] == 200
    assert http(site.curl(a, MD_JSON, "-H", f"{TOKEN}: forged"))[0] == 401
    assert http(site.curl(b, MD_JSON, "-H", f"{TOKEN}: {tok}"))[0] == 401
    check_token_reply_dies_at_a_forwarding_hop(site, net, a)
    # unbinding b's port from its instance: b gets nothing within a few seconds
    site.mdtool("port-update", b.port_id, "--device-id", "")
    wait_for(lambda: http(site.curl(b, MD_JSON))[0] == 404, 10, "b's metadata to go")
    # and deleting a's port: a's address is no port any more (404), and since 0569942
    # port-delete unplugs a plugged port first, a has no link left at all (no answer: 0)
    site.mdtool("port-delete", a.port_id)
    wait_for(lambda: http(site.curl(a, MD_JSON))[0] in (0, 404), 10, "a's metadata to go")


def check_token_reply_dies_at_a_forwarding_hop(site, net, a):
    """A container behind an instance that routes for it: its GETs come through (404: its
    address is no port), but the token reply leaves with TTL 1 and dies at the relay.
    A router sends from addresses that are not its own: its port has no port security."""
    site.mdtool("port-update", a.port_id, "--no-port-security")
    ns_c = site.cleanup.netns(f"ctr-{a.port_id[:8]}")
    subprocess.run(["ip", "netns", "add", ns_c], check=True)
    sh = lambda *cmd, ns=None: subprocess.run(  # noqa: E731
        (["ip", "netns", "exec", ns] if ns else []) + list(cmd), check=True,
        capture_output=True, text=True)
    sh("ip", "link", "add", "veth-ctr", "type", "veth", "peer", "name", "eth0", "netns", ns_c,
       ns=a.namespace)
    sh("ip", "addr", "add", "10.99.0.1/24", "dev", "veth-ctr", ns=a.namespace)
    sh("ip", "link", "set", "veth-ctr", "up", ns=a.namespace)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=a.namespace)
    sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth0", ns=ns_c)
    sh("ip", "link", "set", "eth0", "up", ns=ns_c)
    sh("ip", "link", "set", "lo", "up", ns=ns_c)
    sh("ip", "route", "add", "default", "via", "10.99.0.1", ns=ns_c)
    sh("ip", "route", "add", "10.99.0.0/24", "via", a.ip, ns=f"qdhcp-{net}")

    def curl_c(*args: str) -> tuple[int, str]:
        res = subprocess.run(["ip", "netns", "exec", ns_c, "curl", "-sS", "-m", "3", "-w",
                              "\n%{http_code}", *args], capture_output=True, text=True,
                             timeout=20)
        return http(res)

    assert curl_c(f"http://169.254.169.254{MD_JSON}")[0] == 404  # routed both ways
    assert curl_c("-X", "PUT", "-H", f"{TTL}: 60",
                  "http://169.254.169.254/latest/api/token")[0] == 0  # no answer came back
    # the instance itself still gets its token on the same path
    assert put_token(site, a)[0] == 200
    # one more hop allowed: the relay may pass the reply on (so it was the TTL, nothing else)
    site.env["MDTOOL_HTTP_PUT_RESPONSE_HOP_LIMIT"] = "2"
    os.kill(site.pid("proxy"), signal.SIGKILL)
    wait_for(lambda: site.pid("proxy") is None, 5, "the proxy to die")
    site.mdtool("enable-isolated-metadata", net)
    code, tok = curl_c("-X", "PUT", "-H", f"{TTL}: 60", "http://169.254.169.254/latest/api/token")
    assert code == 200 and tok.startswith("v1.")


def test_secrets_and_sockets_are_private_and_metadata_is_on_loopback(site):
    net = site.network("iso-modes", "10.84.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    st = site.state_dir
    sock = os.stat(st / "metadata_proxy")
    assert stat.S_ISSOCK(sock.st_mode) and sock.st_mode & 0o777 & ~0o660 == 0
    assert os.stat(st / "metadata_proxy_shared_secret").st_mode & 0o777 == 0o600
    for suffix in ("", "-wal", "-shm"):
        p = st / f"mdtool.db{suffix}"
        if p.exists():
            assert p.stat().st_mode & 0o777 == 0o600, p
    # the metadata service listens on 127.0.0.1 only
    pid = site.pid("metadata")
    listen = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    mine = [ln for ln in listen.splitlines() if f"pid={pid}," in ln]
    assert mine and all(f"127.0.0.1:{site.metadata_port} " in ln for ln in mine), mine
    # and the proxy listens in the namespace only, not on the host
    proxy = site.pid("proxy")
    assert not [ln for ln in listen.splitlines() if f"pid={proxy}," in ln and ":80 " in ln]


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def test_a_full_log_disk_stops_neither_the_data_path_nor_the_cli(site, tmp_path):
    """log_dir on its own (tiny, then full) file system: the instance still gets every
    answer, the CLI still works, the daemons drop lines instead of writing a traceback per
    line into the state dir, and they log again once there is room."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(logdir)],
                   check=True)
    site.cleanup.add("log tmpfs", lambda: subprocess.run(["umount", "-l", str(logdir)]))
    net, a, b = two_instances(site, "10.85.0.0/24", {"MDTOOL_LOG_DIR": str(logdir)})
    assert http(site.curl(a, MD_JSON))[0] == 200
    assert sorted(p.name for p in logdir.iterdir()) == [
        "mdtool-agent.log", "mdtool-metadata.log", "mdtool-proxy.log"]
    # fill it
    subprocess.run(["dd", "if=/dev/zero", f"of={logdir}/filler", "bs=4k"], capture_output=True)
    assert os.statvfs(logdir).f_bavail == 0
    state_logs = dir_bytes(site.state_dir)
    pids = {r: site.pid(r) for r in ("proxy", "agent", "metadata")}
    codes = [http(site.curl(vm, MD_JSON))[0] for _ in range(20) for vm in (a, b)]
    codes += [http(site.curl(a, "/nope"))[0] for _ in range(20)]
    assert codes == [200] * 40 + [404] * 20
    assert {r: site.pid(r) for r in pids} == pids, "a daemon died"
    # the CLI: reads, writes, and the whole pipeline again
    assert site.mdtool("net-list", "-f", "value", "-c", "id").stdout.strip() == net
    site.mdtool("instance-create", "vm-c")
    site.mdtool("enable-isolated-metadata", net)
    grown = dir_bytes(site.state_dir) - state_logs
    assert grown < 64 * 1024, f"the state dir grew by {grown} bytes while the log disk was full"
    # room again: lines come back
    before = (logdir / "mdtool-proxy.log").stat().st_size
    os.unlink(logdir / "filler")
    assert http(site.curl(a, MD_JSON))[0] == 200
    wait_for(lambda: (logdir / "mdtool-proxy.log").stat().st_size > before, 5,
             "the proxy to log again")
    print(f"\nlog-disk-full: 60 requests all answered, CLI ok, state dir grew {grown} bytes")
