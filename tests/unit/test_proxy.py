"""The proxy's request path against a fake agent on a Unix socket."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import subprocess

import pytest

from mdtool import logs
from mdtool.config import Config
from mdtool.http.client import UpstreamPool
from mdtool.http.server import HttpServer, Limits
from mdtool.http.types import Request, Response
from mdtool.proxy.daemon import ProxyDaemon, limits_from_config, pool_from_config
from mdtool.proxy.handler import ProxyHandler
from mdtool.proxy.rules import is_forged, upstream_headers

pytestmark = pytest.mark.timeout(20)

NET = "5f0c4f9e-0000-4000-8000-000000000001"


class FakeAgent:
    def __init__(self, delay: float = 0.0):
        self.requests: list[Request] = []
        self.delay = delay

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(200, b"agent says hi", [("Content-Type", "text/plain"),
                                                ("X-From-Agent", "1")])


async def start_agent(path, agent) -> HttpServer:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(16)
    server = HttpServer(agent)
    await server.add_socket(s)
    return server


async def start_proxy(sock_path, read_timeout=2.0):
    pool = UpstreamPool(f"unix:{sock_path}", size=8, connect_timeout=1, read_timeout=read_timeout)
    server = HttpServer(ProxyHandler(pool, NET), Limits(head_timeout=2, keepalive_timeout=2))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    await server.add_socket(s)
    return server, pool, s.getsockname()[1]


async def exchange(port, raw: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(raw)
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await r.readexactly(length)
    w.close()
    return head + body


FORGED = (b"X-Forwarded-For: 10.9.9.9\r\n"
          b"x-forwarded-for: 10.9.9.8\r\n"
          b"X-Neutron-Network-ID: someone-else\r\n"
          b"X-Neutron-Router-ID: r\r\n"
          b"X-Quantum-Network-ID: q\r\n"
          b"X-Instance-ID: i-forged\r\n"
          b"X-Instance-ID-Signature: deadbeef\r\n"
          b"X-Instance-ID-Anything: z\r\n"
          b"X-Tenant-ID: t-forged\r\n")


def test_headers_reaching_the_agent(tmp_path):
    async def main():
        agent = FakeAgent()
        agent_srv = await start_agent(tmp_path / "agent", agent)
        proxy, pool, port = await start_proxy(tmp_path / "agent")
        raw = await exchange(port, b"GET /openstack/latest/meta_data.json?x=1 HTTP/1.1\r\n"
                                   b"Host: 169.254.169.254\r\nUser-Agent: curl/8\r\n"
                                   b"Accept: */*\r\n" + FORGED + b"Connection: keep-alive\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"X-From-Agent: 1\r\n" in raw and raw.endswith(b"\r\n\r\nagent says hi")
        (req,) = agent.requests
        assert req.method == "GET"
        assert req.target == "/openstack/latest/meta_data.json?x=1"
        # Only the allow-list passes (mdtool.http.headers); the pool names its own Host.
        assert req.headers == [("User-Agent", "curl/8"), ("Accept", "*/*"),
                               ("X-Forwarded-For", "127.0.0.1"),
                               ("X-Neutron-Network-ID", NET), ("Host", "localhost")]
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    asyncio.run(main())


def test_post_body_is_forwarded_and_connections_to_the_agent_are_reused(tmp_path):
    async def main():
        agent = FakeAgent()
        agent_srv = await start_agent(tmp_path / "agent", agent)
        proxy, pool, port = await start_proxy(tmp_path / "agent")
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for i in range(3):
            w.write(b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            await r.readexactly(len(b"agent says hi"))
        assert len(agent_srv._connections) == 1  # one pooled connection served all three
        w.write(b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 6\r\n\r\nsecret")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await r.readexactly(len(b"agent says hi"))
        w.close()
        assert agent.requests[-1].body == b"secret"
        # A POST is never sent twice: it goes on a connection of its own, never on a
        # pooled one the agent may have closed meanwhile.
        assert len(agent_srv._connections) == 2
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    asyncio.run(main())


def test_agent_down_is_502(tmp_path):
    async def main():
        proxy, pool, port = await start_proxy(tmp_path / "no-agent")
        raw = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
        assert raw.endswith(b"\r\n\r\nBad Gateway: the metadata agent is not available\n")
        await proxy.close(1)
        await pool.close()

    asyncio.run(main())


def test_slow_agent_is_504(tmp_path):
    async def main():
        agent_srv = await start_agent(tmp_path / "agent", FakeAgent(delay=3))
        proxy, pool, port = await start_proxy(tmp_path / "agent", read_timeout=0.2)
        raw = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(0.1)

    asyncio.run(main())


def test_access_log_line(tmp_path, caplog):
    async def main():
        agent_srv = await start_agent(tmp_path / "agent", FakeAgent())
        proxy, pool, port = await start_proxy(tmp_path / "agent")
        await exchange(port, b"GET /latest/meta-data/?q HTTP/1.1\r\nHost: x\r\n\r\n")
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    with caplog.at_level(logging.INFO, logger="mdtool.proxy.access"):
        asyncio.run(main())
        logs.flush_deferred()  # the access lines wait a few ms (logs.DeferredLines)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mdtool.proxy.access"]
    assert line.startswith(f"network={NET} src=127.0.0.1 GET /latest/meta-data/ 200 ")
    assert line.endswith("ms")


def test_rules_are_case_insensitive_and_keep_the_rest():
    assert is_forged("x-INSTANCE-id-signature") and is_forged("X-Tenant-ID")
    assert not is_forged("X-Tenant") and not is_forged("Host")
    out = upstream_headers([("X-NEUTRON-ROUTER-ID", "r"), ("Connection", "keep-alive"),
                            ("Transfer-Encoding", "chunked"), ("Content-Length", "3"),
                            ("Accept", "x"), ("Proxy-Connection", "x")], "fe80::1", "n")
    assert out == [("Accept", "x"), ("X-Forwarded-For", "fe80::1"),
                   ("X-Neutron-Network-ID", "n")]


def test_limits_and_pool_come_from_config(tmp_path):
    ini = tmp_path / "m.ini"
    ini.write_text("[metadata_haproxy]\ntimeout_http_request = 3\ntimeout_server = 7\n"
                   "timeout_http_keep_alive = 4\nmax_header_bytes = 2048\n"
                   "max_header_count = 20\nmax_body_bytes = 100\n")
    cfg = Config(state_dir=str(tmp_path), config_file=str(ini), environ={})
    lim = limits_from_config(cfg)
    assert (lim.head_timeout, lim.keepalive_timeout, lim.max_header_bytes,
            lim.max_header_count, lim.max_body_bytes) == (3, 4, 2048, 20, 100)
    # the chain: the agent's socket, with the proxy's timeout
    chain = Config(state_dir=str(tmp_path), config_file=str(ini),
                   environ={"MDTOOL_METADATA_BACKEND": "nova"})
    pool = pool_from_config(chain)
    assert pool.unix_path == str(tmp_path / "metadata_proxy") and pool.read_timeout == 7
    # the default where mdtool serves its own metadata: the fast path, in-process
    from mdtool.fastpath import LocalBackend
    assert isinstance(pool_from_config(cfg), LocalBackend)


def test_daemon_waits_for_a_missing_namespace(caplog):
    async def main():
        pool = UpstreamPool("unix:/nonexistent")
        d = ProxyDaemon(pool, Limits(), ["does-not-exist-" + "0" * 8], poll_interval=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(d.serve(stop))
        await asyncio.sleep(0.2)
        assert d.sites == {}
        stop.set()
        await task

    with caplog.at_level(logging.INFO, logger="mdtool.proxy"):
        asyncio.run(main())
    waits = [r for r in caplog.records if "waiting for namespace" in r.getMessage()]
    assert len(waits) == 1  # said once, not every round


def test_proxy_imports_stay_lean():
    code = ("import sys, mdtool.proxy.daemon; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'rich', 'pyroute2', 'click', 'jinja2')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_metrics_count_answers_per_network_and_survive_a_dropped_network(tmp_path):
    from mdtool.proxy.daemon import _Site
    from mdtool.proxy.metrics import handler_for

    async def main():
        pool = UpstreamPool(f"unix:{tmp_path}/none")
        d = ProxyDaemon(pool, Limits(), ["n1"])
        site = _Site("n1", "qdhcp-n1", 1, HttpServer(ProxyHandler(pool, "n1"), Limits()))
        site.v4_key = 0
        d.sites["n1"] = site
        await site.handler(Request("GET", "/", [], peer="10.0.0.5"))
        await site.handler(Request("GET", "/", [], peer="10.0.0.5"))
        metrics = handler_for(d)
        first = (await metrics(Request("GET", "/metrics", []))).body.decode()
        d.network_ids = []
        await d.reconcile()  # n1 no longer asked for: dropped, counters kept
        second = (await metrics(Request("GET", "/metrics", []))).body.decode()
        assert (await metrics(Request("GET", "/", []))).status == 404
        await d.close()
        return first, second

    first, second = asyncio.run(main())
    assert 'mdtool_proxy_requests_total{network="n1",code="502"} 2' in first
    assert "mdtool_proxy_networks 1\n" in first and "mdtool_proxy_listeners 1\n" in first
    assert 'mdtool_proxy_requests_total{network="n1",code="502"} 2' in second
    assert "mdtool_proxy_networks 0\n" in second
    # derived series: 502 counts as an upstream error; both requests sit in the histogram
    assert 'mdtool_proxy_upstream_errors_total{kind="unavailable"} 2' in second
    assert 'mdtool_proxy_request_duration_seconds_bucket{le="+Inf"} 2' in second
    assert "mdtool_proxy_request_duration_seconds_count 2\n" in second
    from prometheus_client.parser import text_string_to_metric_families
    names = {f.name for f in text_string_to_metric_families(second)}
    assert {"mdtool_proxy_requests", "mdtool_proxy_request_duration_seconds",
            "mdtool_proxy_rate_limited", "mdtool_proxy_upstream_errors"} <= names


class PathAgent:
    """Answers each request with its own path, after ``delays[path]`` seconds."""

    def __init__(self, delays=None, close=False):
        self.delays = delays or {}
        self.close = close
        self.requests: list[Request] = []

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if req.path in self.delays:
            await asyncio.sleep(self.delays[req.path])
        headers = [("Content-Type", "text/plain")]
        if self.close:
            headers.append(("Connection", "close"))
        return Response(200, req.path.encode(), headers)


async def keep_alive_get(r, w, path: str) -> tuple[bytes, bytes]:
    w.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    head = await r.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return head, await r.readexactly(length)


def test_the_chain_survives_what_a_pooled_agent_connection_meets(tmp_path):
    """Idle connections the agent closed, an agent restart, an agent answering
    ``Connection: close``: every request is still answered, by the agent."""
    async def main():
        sock = tmp_path / "agent"
        agent = PathAgent()
        limits = Limits(keepalive_timeout=0.1)  # the agent closes idle connections at once

        async def start(handler):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.unlink(missing_ok=True)
            s.bind(str(sock))
            s.listen(16)
            srv = HttpServer(handler, limits)
            await srv.add_socket(s)
            return srv

        agent_srv = await start(agent)
        proxy, pool, port = await start_proxy(sock)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        head, body = await keep_alive_get(r, w, "/1")
        assert head.startswith(b"HTTP/1.1 200") and body == b"/1"
        await asyncio.sleep(0.3)  # the agent closed the pooled connection meanwhile
        assert (await keep_alive_get(r, w, "/2"))[1] == b"/2"
        await agent_srv.close(0.1)  # the agent restarts
        agent_srv = await start(agent)
        assert (await keep_alive_get(r, w, "/3"))[1] == b"/3"
        await agent_srv.close(0.1)
        closing = PathAgent(close=True)  # answers, then closes every connection
        agent_srv = await start(closing)
        for i in range(4, 7):
            head, body = await keep_alive_get(r, w, f"/{i}")
            assert body == b"/%d" % i
            assert b"Connection" not in head  # hop-by-hop: the client's stays open
        assert [q.path for q in closing.requests] == ["/4", "/5", "/6"]
        w.close()
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(0.1)

    asyncio.run(main())


def test_concurrent_requests_each_get_their_own_answer(tmp_path):
    async def main():
        import random
        rnd = random.Random(15)
        paths = [f"/p{i}" for i in range(60)]
        agent = PathAgent({p: rnd.random() * 0.05 for p in paths})
        agent_srv = await start_agent(tmp_path / "agent", agent)
        proxy, pool, port = await start_proxy(tmp_path / "agent")  # a pool of 8

        async def client(mine):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            got = [(await keep_alive_get(r, w, p))[1] for p in mine]
            w.close()
            return got

        groups = [paths[i::12] for i in range(12)]
        results = await asyncio.gather(*(client(g) for g in groups))
        assert results == [[p.encode() for p in g] for g in groups]
        assert len(agent_srv._connections) <= 8
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    asyncio.run(main())


def test_a_client_gone_mid_request_leaves_the_agent_connection_pooled(tmp_path):
    async def main():
        agent = PathAgent({"/slow": 0.2})
        agent_srv = await start_agent(tmp_path / "agent", agent)
        proxy, pool, port = await start_proxy(tmp_path / "agent")
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert (await keep_alive_get(r, w, "/warm"))[1] == b"/warm"
        pooled = set(agent_srv._connections)
        w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        # Gone before the agent answers (a reset, not a half-close): the answer is dropped.
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
        w.transport.abort()
        await asyncio.sleep(0.3)
        assert (await exchange(port, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"/next")
        assert set(agent_srv._connections) == pooled  # the same pooled connection throughout
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    asyncio.run(main())


def test_closing_and_http10_requests_through_the_chain(tmp_path):
    """cloud-init 22.4 sends Connection: close on every request; HTTP/1.0 clients still
    exist: both get the agent's answer, framed for them, and the connection ends."""
    async def main():
        agent = PathAgent()
        agent_srv = await start_agent(tmp_path / "agent", agent)
        proxy, pool, port = await start_proxy(tmp_path / "agent")
        for raw in (b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /ten HTTP/1.0\r\n\r\n", b"HEAD /head HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n"):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(raw)
            reply = await asyncio.wait_for(r.read(), 2)  # read to EOF: the proxy closes
            w.close()
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in head
            path = raw.split(b" ")[1]
            assert body == (b"" if raw.startswith(b"HEAD") else path)
            assert b"Content-Length: %d" % len(path) in head
        assert [q.path for q in agent.requests] == ["/close", "/ten", "/head"]
        await proxy.close(1)
        await pool.close()
        await agent_srv.close(1)

    asyncio.run(main())


def test_a_failing_begin_is_a_500_not_a_hung_connection(tmp_path):
    async def main():
        class Broken(ProxyHandler):
            __slots__ = ()

            def begin(self, req, reply):
                raise RuntimeError("a bug")

        pool = UpstreamPool(f"unix:{tmp_path}/none", size=2, connect_timeout=1, read_timeout=1)
        server = HttpServer(Broken(pool, NET), Limits(head_timeout=2, keepalive_timeout=2))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        await server.add_socket(s)
        r, w = await asyncio.open_connection("127.0.0.1", s.getsockname()[1])
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await asyncio.wait_for(r.read(), 3)
        assert reply.startswith(b"HTTP/1.1 500 ")
        w.close()
        await server.close(1)
        await pool.close()

    asyncio.run(main())
