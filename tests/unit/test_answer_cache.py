"""The fast path's cache of its own answers (mdtool/fastpath.py AnswerCache), through the
proxy's HTTP server and handler over a real registry: a hit never outlives a change, never
crosses to another source, and is gated, logged and counted like any request.

Instances are told apart by their source address, and a unit test cannot own addresses
besides loopback (which no subnet may use), so each client is a connection of the server
fed through a transport that reports the instance's address as its peer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import pytest

from mdtool import logs
from mdtool.config import Config
from mdtool.http.server import HttpServer, Limits, _Connection
from mdtool.proxy.handler import ProxyHandler
from mdtool.proxy.ratelimit import RateLimiter, RateLimits
from mdtool.proxy.tokens import TokenSealer
from mdtool.registry import open_registry

pytestmark = pytest.mark.timeout(30)

MD = "/openstack/latest/meta_data.json"


@pytest.fixture
def node(tmp_path, monkeypatch):
    for var in ("MDTOOL_DB", "MDTOOL_CONFIG", "MDTOOL_NOVA_METADATA_URL",
                "MDTOOL_NOVA_METADATA_HOST", "MDTOOL_METADATA_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    config = Config(state_dir=str(tmp_path / "state"), config_file="/dev/null")
    reg = open_registry(config.db_url)
    net = reg.create_network("ac-net")
    # Sources: 10.62.0.2 and .3 are two instances, .9 is nobody's.
    reg.create_subnet(net.id, "10.62.0.0/24", gateway=None)
    vm1 = reg.create_instance("ac-vm1")
    vm2 = reg.create_instance("ac-vm2")
    p1 = reg.create_port(net.id, device_id=vm1.id, fixed_ips=[{"ip_address": "10.62.0.2"}])
    p2 = reg.create_port(net.id, device_id=vm2.id, fixed_ips=[{"ip_address": "10.62.0.3"}])
    return config, reg, net, vm1, vm2, p1, p2


@contextlib.asynccontextmanager
async def proxy(config, net_id, **handler_args):
    from mdtool.fastpath import LocalBackend
    stop = asyncio.Event()
    backend = LocalBackend(config)
    await backend.open(stop)
    handler = ProxyHandler(backend, net_id, **handler_args)
    server = HttpServer(handler, Limits(head_timeout=5, keepalive_timeout=5))
    server._loop = asyncio.get_running_loop()  # what add_socket() sets
    try:
        yield handler, backend, server
    finally:
        stop.set()
        await server.close(1)
        await backend.close()


class Transport(asyncio.Transport):
    """What the server writes to a client at ``peer``, kept."""

    def __init__(self, peer: str):
        super().__init__()
        self.peer = peer
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": (self.peer, 40000), "sockname": ("169.254.169.254", 80)}.get(
            name, default)

    def write(self, data):
        self.out += data

    def close(self):
        self.closed = True

    abort = close

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0


class Client:
    """One keep-alive connection from ``source``."""

    def __init__(self, server: HttpServer, source: str):
        self.t = Transport(source)
        self.conn = _Connection(server)
        self.conn.connection_made(self.t)

    async def get(self, target: str = MD, method: str = "GET", body: bytes = b"",
                  headers: dict | None = None) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        self.conn.data_received(f"{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                                f"{extra}{length}\r\n".encode() + body)
        out = self.t.out
        for _ in range(500):
            end = out.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(out[:end])
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                if len(out) >= end + 4 + n:
                    body = bytes(out[end + 4:end + 4 + n])
                    del out[:end + 4 + n]
                    assert not self.t.closed
                    return int(head.split()[1]), body
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to {method} {target}")

    def close(self):
        self.conn.connection_lost(None)


def _uuid(body: bytes) -> str:
    return json.loads(body)["uuid"]


def test_a_hit_is_the_answer_of_its_own_source_only(node):
    config, reg, net, vm1, vm2, *_ = node

    async def go():
        async with proxy(config, net.id) as (handler, backend, server):
            a, b, nobody = (Client(server, ip) for ip in ("10.62.0.2", "10.62.0.3", "10.62.0.9"))
            first = await a.get()
            again = await a.get()
            assert backend.cache.hits == 1  # the second answer was the cached one
            other = await b.get()
            other_again = await b.get()
            missing = [await nobody.get() for _ in range(2)]
            back = await a.get()
            for c in (a, b, nobody):
                c.close()
            return first, again, other, other_again, missing, back, backend.cache.hits

    first, again, other, other_again, missing, back, hits = asyncio.run(go())
    assert first[0] == again[0] == 200 and _uuid(first[1]) == _uuid(again[1]) == vm1.id
    assert other[0] == other_again[0] == 200
    assert _uuid(other[1]) == _uuid(other_again[1]) == vm2.id
    assert [s for s, _ in missing] == [404, 404]  # never someone else's cached answer
    assert _uuid(back[1]) == vm1.id
    assert hits == 3


def test_a_change_is_served_at_once_never_a_stale_hit(node):
    config, reg, net, vm1, vm2, p1, p2 = node

    async def within_a_second(client, check):
        deadline = time.monotonic() + 1.0
        while True:
            status, body = await client.get()
            if check(status, body) or time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.02)

    async def go():
        async with proxy(config, net.id) as (handler, backend, server):
            a, b = Client(server, "10.62.0.2"), Client(server, "10.62.0.3")
            await a.get(), await a.get(), await b.get(), await b.get()
            assert backend.cache.hits == 2
            # A registry change: the next answers follow it within the second.
            reg.update_instance(vm1.id, name="ac-renamed")
            renamed = await within_a_second(
                a, lambda s, body: s == 200 and json.loads(body)["name"] == "ac-renamed")
            reg.delete_port(p2.id)
            gone = await within_a_second(b, lambda s, body: s == 404)
            # A password POST is read back by the very next GET (no revision wait).
            pw = "/openstack/latest/password"
            before = [await a.get(pw) for _ in range(2)]
            posted = await a.get(pw, "POST", b"s3cret")
            after = await a.get(pw)
            a.close(), b.close()
            return renamed, gone, before, posted, after

    renamed, gone, before, posted, after = asyncio.run(go())
    assert json.loads(renamed[1])["name"] == "ac-renamed"
    assert gone[0] == 404
    assert before == [(200, b""), (200, b"")]
    assert posted[0] == 200 and after == (200, b"s3cret")


def test_hits_are_logged_counted_and_rate_limited(node, caplog):
    config, reg, net, *_ = node
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    limiter = RateLimiter(RateLimits(base_window=60, base_limit=4, burst_window=60,
                                     burst_limit=4))

    async def go():
        async with proxy(config, net.id, limiter=limiter) as (handler, backend, server):
            a = Client(server, "10.62.0.2")
            statuses = [(await a.get(headers={"User-Agent": "ac/1"}))[0] for _ in range(6)]
            a.close()
            return statuses, handler, backend.cache.hits

    statuses, handler, hits = asyncio.run(go())
    logs.flush_deferred()  # the access lines wait a few ms (logs.DeferredLines)
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert hits == 5  # the 429s were hits too: the limit applies before the cache
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.proxy.access"]
    ok = [line for line in lines if f"network={net.id} src=10.62.0.2 GET {MD} 200" in line]
    assert len(ok) == 4  # one access line per answered request, hits included
    assert any(" 429 " in line for line in lines)
    assert handler.status_counts == {200: 4, 429: 2}
    assert sum(handler.latency_counts) == 6


def test_hits_check_imdsv2_tokens(node):
    config, reg, net, *_ = node
    sealer = TokenSealer(b"k" * 32)

    async def go():
        async with proxy(config, net.id, sealer=sealer, tokens_required=True) as \
                (handler, backend, server):
            a = Client(server, "10.62.0.2")
            # What PUT /latest/api/token hands out (its reply needs a real socket: hop limit).
            good = {"X-aws-ec2-metadata-token": sealer.issue(net.id, "10.62.0.2", 60)}
            ok = [(await a.get(headers=good))[0] for _ in range(2)]
            hits = backend.cache.hits
            refused = [(await a.get())[0],
                       (await a.get(headers={"X-aws-ec2-metadata-token": "v1.bogus"}))[0]]
            a.close()
            return ok, hits, refused

    ok, hits, refused = asyncio.run(go())
    assert ok == [200, 200] and hits == 1
    assert refused == [401, 401]


def test_fields_that_reach_the_answer_path_are_part_of_the_key(node):
    config, reg, net, *_ = node

    async def go():
        async with proxy(config, net.id) as (handler, backend, server):
            a = Client(server, "10.62.0.2")
            for agent in ("one/1", "two/2", "one/1"):
                await a.get(headers={"User-Agent": agent, "X-Ignored": agent})
            await a.get(MD + "?x=1")
            a.close()
            return len(backend.cache), backend.cache.hits

    entries, hits = asyncio.run(go())
    assert (entries, hits) == (3, 1)


def _closed_exchange(server, source: str, raw: bytes) -> tuple[bytes, bool]:
    """One connection from ``source`` that sends ``raw`` at once; what it got back, and
    whether the server closed it."""
    c = Client(server, source)
    c.conn.data_received(raw)
    out, closed = bytes(c.t.out), c.t.closed
    c.close()  # what the transport does once closed
    return out, closed


async def _until_closed(server, source: str, raw: bytes) -> tuple[bytes, bool]:
    c = Client(server, source)
    c.conn.data_received(raw)
    for _ in range(500):
        if c.t.closed:
            break
        await asyncio.sleep(0.01)
    out, closed = bytes(c.t.out), c.t.closed
    c.close()
    return out, closed


def test_a_request_that_closes_its_connection_is_answered_from_the_cache(node, caplog):
    """cloud-init 22.4 sends every request on a connection of its own (Connection: close):
    a hit is answered from the cache all the same, at once, with Connection: close, and
    the connection closes; nothing sent after that request on it is answered."""
    config, reg, net, vm1, *_ = node
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")

    def raw(target: str, close: bool) -> bytes:
        return (f"GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode()

    async def go():
        async with proxy(config, net.id) as (handler, backend, server):
            keep = Client(server, "10.62.0.2")
            await keep.get()
            kept = await keep.get()  # cached now
            keep.close()
            assert backend.cache.hits == 1
            # a miss that closes: answered the usual way (a task), then closed
            miss = await _until_closed(server, "10.62.0.2", raw(MD + "?x=1", True))
            assert backend.cache.hits == 1
            # a hit that closes: answered from the callback itself, no task
            hit = _closed_exchange(server, "10.62.0.2", raw(MD, True) + raw(MD, False))
            hits = backend.cache.hits
            await asyncio.sleep(0.05)
            return kept, miss, hit, hits, dict(handler.status_counts), server

    kept, miss, hit, hits, counts, server = asyncio.run(go())
    logs.flush_deferred()  # the access lines wait a few ms (logs.DeferredLines)
    assert hits == 2 and hit[1] and miss[1]  # both closed by the server
    head, _, body = hit[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\nConnection: close")
    assert body == kept[1] and _uuid(body) == vm1.id
    assert hit[0].count(b"HTTP/1.1") == 1  # the request after the closing one: not answered
    miss_head = miss[0].partition(b"\r\n\r\n")[0]
    assert miss_head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in miss_head
    assert counts == {200: 4}
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.proxy.access"]
    assert len([line for line in lines if f"GET {MD} 200" in line]) == 4
    assert not server._connections and not server._per_source  # every count given back


def test_a_refusal_that_closes_its_connection_says_so(node):
    config, reg, net, *_ = node
    limiter = RateLimiter(RateLimits(base_window=60, base_limit=1, burst_window=60,
                                     burst_limit=1))
    close = (f"GET {MD} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n").encode()

    async def go():
        async with proxy(config, net.id, limiter=limiter) as (handler, backend, server):
            first = await _until_closed(server, "10.62.0.2", close)
            refused = _closed_exchange(server, "10.62.0.2", close)  # a hit, over the limit
            return first, refused, backend.cache.hits

    first, refused, hits = asyncio.run(go())
    assert first[0].startswith(b"HTTP/1.1 200 ") and hits == 1
    assert refused[1] and refused[0].startswith(b"HTTP/1.1 429 ")
    assert b"\r\nConnection: close" in refused[0].partition(b"\r\n\r\n")[0]


def test_a_repeated_head_is_judged_again_every_time(node):
    """The same bytes on a connection skip the parse (mdtool/http/server.py), never the
    gate: a token that expired between two identical requests gets 401."""
    config, reg, net, *_ = node
    now = [1_000_000.0]
    sealer = TokenSealer(b"k" * 32, clock=lambda: now[0])

    async def go():
        async with proxy(config, net.id, sealer=sealer, tokens_required=True) as \
                (handler, backend, server):
            a = Client(server, "10.62.0.2")
            token = {"X-aws-ec2-metadata-token": sealer.issue(net.id, "10.62.0.2", 5)}
            ok = [(await a.get(headers=token))[0] for _ in range(3)]
            known = a.conn.known_head is not None
            now[0] += 6
            late = (await a.get(headers=token))[0]
            a.close()
            return ok, known, late, backend.cache.hits, dict(handler.status_counts)

    ok, known, late, hits, counts = asyncio.run(go())
    assert ok == [200, 200, 200] and known
    assert late == 401 and hits == 3
    assert counts == {200: 3, 401: 1}
