"""The proxy for real: listening inside DHCP namespaces it never entered with its main thread.

Topology per test (unique names, always removed):

    instance ns  eth0 10.77.0.5/24, fe80::f816:3eff:fe00:b  -- veth --  tap0 in the DHCP ns:
    10.77.0.2/24, 169.254.169.254/32, fe80::a9fe:a9fe/128; route 169.254.169.254 via 10.77.0.2

A fake agent (mdtool's HTTP server on the Unix socket in a temp state dir) records what
reaches it; requests come from curl inside the instance namespace.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mdtool.http.client import UpstreamPool
from mdtool.http.server import HttpServer, Limits
from mdtool.http.types import Request, Response

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None
                       or shutil.which("curl") is None, reason="needs root, ip and curl"),
]

ROOT = Path(__file__).resolve().parents[2]
INSTANCE_V6 = "fe80::f816:3eff:fe00:b"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def make_topology(dhcp_ns: str, inst_ns: str) -> None:
    ip("netns", "add", dhcp_ns)
    ip("netns", "add", inst_ns)
    ip("-n", dhcp_ns, "link", "set", "lo", "up")
    ip("-n", inst_ns, "link", "set", "lo", "up")
    ip("-n", dhcp_ns, "link", "add", "tap0", "type", "veth", "peer", "name", "eth0",
       "netns", inst_ns)
    ip("-n", inst_ns, "link", "set", "eth0", "addrgenmode", "none")
    ip("-n", dhcp_ns, "addr", "add", "10.77.0.2/24", "dev", "tap0")
    ip("-n", dhcp_ns, "addr", "add", "169.254.169.254/32", "dev", "tap0")
    ip("-n", dhcp_ns, "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0", "nodad")
    ip("-n", inst_ns, "addr", "add", "10.77.0.5/24", "dev", "eth0")
    ip("-n", inst_ns, "addr", "add", f"{INSTANCE_V6}/64", "dev", "eth0", "nodad")
    ip("-n", dhcp_ns, "link", "set", "tap0", "up")
    ip("-n", inst_ns, "link", "set", "eth0", "up")
    ip("-n", inst_ns, "route", "add", "169.254.169.254/32", "via", "10.77.0.2")


def delete_netns(*names: str) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class AgentThread:
    """A fake agent on a Unix socket, served from its own thread and loop."""

    def __init__(self, path: Path):
        self.path = path
        self.requests: list[Request] = []
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def handle(self, req: Request) -> Response:
        self.requests.append(req)
        return Response(200, b"meta for " + req.path.encode(), [("Content-Type", "text/plain")])

    def _run(self):
        async def main():
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(self.path))
            s.listen(16)
            server = HttpServer(self.handle)
            await server.add_socket(s)
            self.ready.set()
            await self.stop_event.wait()
            await server.close(1)

        asyncio.run(main())

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(5)


class ProxyProcess:
    """``mdtool.proxy.daemon.run`` in a child process; its stderr lines are queued."""

    def __init__(self, state_dir: Path, network_ids: list[str], prefix: str = "qdhcp-", *,
                 environ: dict[str, str] | None = None, nofile: int | None = None):
        """``environ``: MDTOOL_* options; ``nofile``: the process's open-file limit (soft
        and hard, as ``ulimit -n`` sets it). The proxy runs the chain (metadata_backend =
        nova): these tests put a fake agent on its socket to see what the proxy forwards."""
        environ = {"MDTOOL_METADATA_BACKEND": "nova", **(environ or {})}
        code = ("import sys; from mdtool.config import Config; "
                "from mdtool.proxy.daemon import run; "
                f"sys.exit(run(Config(state_dir={str(state_dir)!r}, environ={environ!r}), "
                f"{network_ids!r}, poll_interval=0.2, netns_prefix={prefix!r}))")
        limit = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
        self.proc = subprocess.Popen(limit + [sys.executable, "-c", code], cwd=ROOT,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no log line with {text!r}; got:\n" + "\n".join(self.seen))

    def drain(self) -> list[str]:
        """Every line logged so far (also those no wait_for looked at)."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def curl_in(ns: str, url: str, *headers: str) -> tuple[int, str]:
    cmd = ["ip", "netns", "exec", ns, "curl", "-sS", "-g", "--max-time", "5",
           "-o", "-", "-w", "\n%{http_code}"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


# Not "qdhcp-": a proxy someone runs on this host in follow-every-namespace mode must not
# grab the test's namespace first. The prefix is the only difference from production.
PREFIX = f"mdtpx{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def topology(tmp_path):
    net_id = str(uuid.uuid4())
    dhcp_ns, inst_ns = f"{PREFIX}{net_id}", f"mdtinst-{net_id[:8]}"
    try:
        make_topology(dhcp_ns, inst_ns)
        yield net_id, dhcp_ns, inst_ns
    finally:
        delete_netns(dhcp_ns, inst_ns)


def test_proxy_process_serves_a_namespace_from_outside(topology, tmp_path):
    net_id, dhcp_ns, inst_ns = topology
    with AgentThread(tmp_path / "metadata_proxy") as agent:
        proxy = ProxyProcess(tmp_path, [net_id], PREFIX)
        try:
            proxy.wait_for(f"serving network {net_id} on 169.254.169.254:80")
            proxy.wait_for(f"serving network {net_id} on [fe80::a9fe:a9fe%tap0]:80")

            code, body = curl_in(inst_ns, "http://169.254.169.254/openstack/latest/meta_data.json",
                                 "X-Forwarded-For: 6.6.6.6", "X-Instance-ID: forged",
                                 "X-Neutron-Network-ID: other", "X-Tenant-ID: forged")
            assert (code, body) == (200, "meta for /openstack/latest/meta_data.json")
            code, body = curl_in(inst_ns, "http://[fe80::a9fe:a9fe%25eth0]/latest/meta-data/")
            assert (code, body) == (200, "meta for /latest/meta-data/")

            v4, v6 = agent.requests
            # From the allow-list only (mdtool/http/headers.py): what curl sent that may pass,
            # then the two facts the proxy states; the Host the agent sees is its pool's own.
            assert [(k, v) for k, v in v4.headers if k.lower() not in ("user-agent", "host")] == [
                ("Accept", "*/*"), ("X-Forwarded-For", "10.77.0.5"), ("X-Neutron-Network-ID", net_id)]
            assert v6.header("X-Forwarded-For") == INSTANCE_V6
            assert v6.header("X-Neutron-Network-ID") == net_id
            proxy.wait_for(f"network={net_id} src=10.77.0.5 GET "
                           "/openstack/latest/meta_data.json 200")
        finally:
            rc = proxy.stop()
        assert rc == 0
        proxy.wait_for(f"stopped serving network {net_id}")
        # The listener went with the process.
        out = subprocess.run(["ip", "netns", "exec", dhcp_ns, "ss", "-Hltn"],
                             capture_output=True, text=True).stdout
        assert ":80 " not in out


def test_agent_down_is_502_inside_the_namespace(topology, tmp_path):
    net_id, dhcp_ns, inst_ns = topology
    proxy = ProxyProcess(tmp_path, [net_id], PREFIX)
    try:
        proxy.wait_for(f"serving network {net_id} on 169.254.169.254:80")
        code, body = curl_in(inst_ns, "http://169.254.169.254/")
        assert code == 502 and "agent" in body
    finally:
        assert proxy.stop() == 0


def test_discovery_follows_namespaces_as_they_come_and_go(tmp_path):
    """No network list: every namespace with the prefix, picked up and dropped live."""
    from mdtool.proxy.daemon import ProxyDaemon

    prefix = f"mdtp{uuid.uuid4().hex[:6]}-"
    net_id = str(uuid.uuid4())
    dhcp_ns, inst_ns = prefix + net_id, f"mdtinst-{net_id[:8]}"

    async def main():
        daemon = ProxyDaemon(UpstreamPool(f"unix:{tmp_path}/none"), Limits(), None,
                             poll_interval=0.05, drain_timeout=0.5, netns_prefix=prefix)
        await daemon.reconcile()
        assert daemon.sites == {}
        make_topology(dhcp_ns, inst_ns)
        await daemon.reconcile()
        site = daemon.sites[net_id]
        assert site.v4_key is not None and site.v6_ifname == "tap0"
        code, _ = await asyncio.to_thread(curl_in, inst_ns, "http://169.254.169.254/")
        assert code == 502
        await daemon.reconcile()  # nothing left to do: no new listeners
        assert daemon.sites[net_id] is site
        delete_netns(dhcp_ns)
        await daemon.reconcile()
        assert daemon.sites == {}
        await daemon.close()

    try:
        asyncio.run(main())
    finally:
        delete_netns(dhcp_ns, inst_ns)
