"""IMDSv2 session tokens: sealing, the proxy's token policy, and the hop limit on the wire."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given, settings, strategies as st

from mdtool.http.server import HttpServer, Limits
from mdtool.http.types import Request, Response
from mdtool.proxy.handler import ProxyHandler
from mdtool.proxy.tokens import (MAX_TTL, TOKEN_HEADER, TTL_HEADER, TokenSealer, derive_key,
                                 parse_ttl)

pytestmark = pytest.mark.timeout(30)

NET = "11111111-2222-4333-8444-555555555555"
OTHER_NET = "99999999-2222-4333-8444-555555555555"
PEER = "10.0.0.5"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sealer(secret: str = "s3cret", clock=None) -> TokenSealer:
    return TokenSealer(derive_key(secret), clock or Clock())


# sealing --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,ttl", [
    ("1", 1), ("21600", 21600), (" 60 ", 60), ("0060", 60),
    (None, None), ("", None), ("0", None), ("21601", None), ("-1", None), ("+5", None),
    ("1.5", None), ("abc", None), ("1e3", None), ("٣", None), ("9" * 40, None), ("6 0", None),
])
def test_ttl_header_is_a_plain_integer_in_range(raw, ttl):
    assert parse_ttl(raw) == ttl


def test_token_verifies_only_for_its_peer_network_and_lifetime():
    clock = Clock()
    s = sealer(clock=clock)
    tok = s.issue(NET, PEER, 60)
    assert tok.isascii() and len(tok) < 100
    assert s.verify(tok, NET, PEER)
    assert not s.verify(tok, NET, "10.0.0.6")          # another instance
    assert not s.verify(tok, OTHER_NET, PEER)           # same IP on another network
    assert not s.verify(tok, NET, "fe80::f816:3eff:fe00:b")
    clock.now += 59.5
    assert s.verify(tok, NET, PEER)
    clock.now += 0.5
    assert not s.verify(tok, NET, PEER)                 # expired


def test_token_survives_a_restart_but_not_another_secret():
    tok = sealer("a").issue(NET, PEER, 600)
    assert sealer("a").verify(tok, NET, PEER)  # a new process, same secret
    assert not sealer("b").verify(tok, NET, PEER)


def test_tokens_are_unique_and_tampering_fails():
    s = sealer()
    toks = {s.issue(NET, PEER, 60) for _ in range(100)}
    assert len(toks) == 100
    tok = toks.pop()
    for i in range(3, len(tok)):
        c = "A" if tok[i] != "A" else "B"
        forged = tok[:i] + c + tok[i + 1:]
        assert not s.verify(forged, NET, PEER), i
    assert not s.verify(tok + "AAAA", NET, PEER)
    assert not s.verify(tok[:-4], NET, PEER)
    assert not s.verify("v2." + tok[3:], NET, PEER)


def test_a_sealed_expiry_beyond_the_longest_ttl_is_refused():
    clock = Clock()
    s = sealer(clock=clock)
    tok = s.issue(NET, PEER, MAX_TTL)
    clock.now -= 10  # as if issued 10 s in the future: more than MAX_TTL ahead of now
    assert not s.verify(tok, NET, PEER)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_verify_never_raises_on_junk(junk):
    assert sealer().verify(junk, NET, PEER) is False
    assert sealer().verify("v1." + junk, NET, PEER) is False


# the proxy's policy ---------------------------------------------------------------------

class FakePool:
    def __init__(self):
        self.requests = []

    async def request(self, method, target, headers, body):
        self.requests.append((method, target, headers))
        return Response(200, b"meta", [("Content-Type", "text/plain")])


def req(method="GET", path="/latest/meta-data/", headers=(), peer=PEER) -> Request:
    return Request(method, path, list(headers), b"", peer)


def handler(required=False, hop_limit=1):
    pool = FakePool()
    return ProxyHandler(pool, NET, None, sealer(), tokens_required=required,
                        hop_limit=hop_limit), pool


def call(h, r) -> Response:
    return asyncio.run(h(r))


def put_token(h, ttl="60", peer=PEER, extra=()) -> Response:
    return call(h, req("PUT", "/latest/api/token", [(TTL_HEADER, ttl), *extra], peer))


def test_put_returns_a_token_with_the_hop_limit_and_is_not_forwarded():
    h, pool = handler(hop_limit=2)
    r = put_token(h, "21600")
    assert r.status == 200 and r.hop_limit == 2
    assert dict(r.headers)[TTL_HEADER] == "21600"
    assert pool.requests == []
    assert h.sealer.verify(r.body.decode(), NET, PEER)


@pytest.mark.parametrize("ttl", [None, "", "0", "21601", "x", "-3", "1.0"])
def test_put_with_bad_or_missing_ttl_is_400(ttl):
    h, pool = handler()
    headers = [] if ttl is None else [(TTL_HEADER, ttl)]
    r = call(h, req("PUT", "/latest/api/token", headers))
    assert r.status == 400 and r.hop_limit is None and pool.requests == []


@pytest.mark.parametrize("xff", ["10.0.0.5", "", "1.2.3.4, 5.6.7.8"])
def test_put_carrying_x_forwarded_for_is_400(xff):
    h, _ = handler()
    for name in ("X-Forwarded-For", "x-forwarded-for"):
        r = put_token(h, extra=[(name, xff)])
        assert r.status == 400 and b"X-Forwarded-For" in r.body


def test_get_on_the_token_path_is_405():
    h, pool = handler()
    assert call(h, req("GET", "/latest/api/token")).status == 405
    assert pool.requests == []


def test_optional_mode_honours_tokens_but_does_not_require_them():
    h, pool = handler(required=False)
    tok = put_token(h).body.decode()
    assert call(h, req()).status == 200
    assert call(h, req(headers=[(TOKEN_HEADER, tok)])).status == 200
    assert call(h, req(headers=[(TOKEN_HEADER, "v1.garbage")])).status == 401
    assert call(h, req(headers=[(TOKEN_HEADER, "")])).status == 401
    # another instance's token is worthless here
    assert call(h, req(headers=[(TOKEN_HEADER, tok)], peer="10.0.0.9")).status == 401
    assert len(pool.requests) == 2
    # the token never reaches the agent
    for _, _, headers in pool.requests:
        assert not any(k.lower().startswith("x-aws-ec2-metadata-token") for k, _ in headers)


def test_required_mode_refuses_gets_without_a_valid_token():
    h, pool = handler(required=True)
    assert call(h, req()).status == 401
    assert call(h, req(path="/openstack/latest/meta_data.json")).status == 401
    tok = put_token(h).body.decode()
    r = call(h, req(headers=[("x-AWS-ec2-metadata-TOKEN", tok), (TTL_HEADER, "5")]))
    assert r.status == 200
    assert len(pool.requests) == 1
    (_, _, headers), = pool.requests
    assert [k for k, _ in headers if k.lower().startswith("x-aws")] == []
    other_net = ProxyHandler(FakePool(), OTHER_NET, None, h.sealer, tokens_required=True)
    assert call(other_net, req(headers=[(TOKEN_HEADER, tok)])).status == 401


def test_without_a_sealer_nothing_changes():
    pool = FakePool()
    h = ProxyHandler(pool, NET)
    assert call(h, req(headers=[(TOKEN_HEADER, "junk")])).status == 200
    assert call(h, req("PUT", "/latest/api/token")).status == 200
    assert len(pool.requests) == 2


# the hop limit on a real socket ---------------------------------------------------------

def _default_ttl(family) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if family == socket.AF_INET:
            return s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        return s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("family,host", [
    (socket.AF_INET, "127.0.0.1"),
    pytest.param(socket.AF_INET6, "::1", marks=pytest.mark.skipif(
        not _has_ipv6_loopback(), reason="no IPv6 loopback")),
])
def test_token_reply_leaves_with_the_hop_limit_then_the_default_returns(family, host):
    """getsockopt on the server's side of a real connection, per reply."""
    level, opt = ((socket.IPPROTO_IP, socket.IP_TTL) if family == socket.AF_INET
                  else (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS))
    seen = []
    server_box = {}

    async def app(r: Request) -> Response:
        return Response(200, b"x", hop_limit=3 if r.path == "/token" else None)

    async def observe(r: Request) -> Response:
        resp = await app(r)
        return resp

    async def main():
        srv = HttpServer(observe, Limits(head_timeout=5, keepalive_timeout=5))
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.bind((host, 0))
        ls.listen(4)
        await srv.add_socket(ls)
        server_box["srv"] = srv
        reader, writer = await asyncio.open_connection(host, ls.getsockname()[1])
        for path in ("/token", "/other", "/token", "/token", "/other"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            await reader.readexactly(1)
            (conn,) = srv._connections
            sock = conn.transport.get_extra_info("socket")
            seen.append(sock.getsockopt(level, opt))
        writer.close()
        await srv.close(1)

    asyncio.run(main())
    d = _default_ttl(family)
    assert seen == [3, d, 3, 3, d]
