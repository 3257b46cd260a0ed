"""The HTTP/1.1 server: framing, keep-alive, pipelining, limits and failure answers."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from mdtool.http.server import HttpServer, Limits, serialize_response
from mdtool.http.types import Request, Response

pytestmark = pytest.mark.timeout(20)


def run(coro):
    # MDTOOL_TEST_UVLOOP=1 runs the same tests under uvloop (what the daemons use).
    if os.environ.get("MDTOOL_TEST_UVLOOP"):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def listener(family=socket.AF_INET, path=None) -> socket.socket:
    if family == socket.AF_UNIX:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
    else:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: (status, lower-cased headers, body). Body by Content-Length only."""
    line = await reader.readline()
    if not line:
        raise EOFError
    status = int(line.split()[1])
    headers = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return status, headers, body


class Echo:
    """A handler that records requests and answers with a summary of each."""

    def __init__(self, delays=None):
        self.requests: list[Request] = []
        self.delays = delays or {}

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        delay = self.delays.get(req.path)
        if delay:
            await asyncio.sleep(delay)
        return Response(200, f"{req.method} {req.target} {len(req.body)}".encode(),
                        [("Content-Type", "text/plain"), ("X-Peer", req.peer)])


async def serve(handler, limits=None):
    server = HttpServer(handler, limits)
    sock = listener()
    await server.add_socket(sock)
    return server, sock.getsockname()[1]


async def connect(port):
    return await asyncio.open_connection("127.0.0.1", port)


def test_keepalive_reuses_the_connection_and_sets_content_length():
    async def main():
        h = Echo()
        server, port = await serve(h)
        r, w = await connect(port)
        for i in range(3):
            w.write(f"GET /x{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            status, headers, body = await read_response(r)
            assert status == 200
            assert body == f"GET /x{i} 0".encode()
            assert headers["content-length"] == str(len(body))
            assert "connection" not in headers
            assert headers["x-peer"] == "127.0.0.1"
        w.close()
        await server.close(1)
        assert [q.local for q in h.requests] == ["127.0.0.1"] * 3

    run(main())


def test_pipelined_requests_are_answered_in_order():
    async def main():
        server, port = await serve(Echo(delays={"/slow": 0.2}))
        r, w = await connect(port)
        w.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        bodies = [(await read_response(r))[2] for _ in range(3)]
        assert bodies == [b"GET /slow 0", b"POST /p 3", b"GET /fast 0"]
        w.close()
        await server.close(1)

    run(main())


def test_connection_close_and_http10():
    async def main():
        server, port = await serve(Echo())
        r, w = await connect(port)
        w.write(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert headers["connection"] == "close"
        assert await r.read() == b""
        r, w = await connect(port)
        w.write(b"GET /a HTTP/1.0\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert status == 200 and headers["connection"] == "close"
        assert await r.read() == b""
        r, w = await connect(port)
        w.write(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert headers["connection"] == "keep-alive"
        w.write(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert (await read_response(r))[2] == b"GET /b 0"
        w.close()
        await server.close(1)

    run(main())


def test_head_has_no_body_but_the_length():
    async def main_exact():
        server, port = await serve(Echo())
        r, w = await connect(port)
        w.write(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 9\r\n" in head
        status, _, body = await read_response(r)
        assert (status, body) == (200, b"GET /g 0")
        w.close()
        await server.close(1)

    run(main_exact())


def test_chunked_request_body_is_assembled():
    async def main():
        h = Echo()
        server, port = await serve(h)
        r, w = await connect(port)
        w.write(b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        status, _, body = await read_response(r)
        assert (status, body) == (200, b"POST /c 7")
        assert h.requests[0].body == b"abcdefg"
        w.close()
        await server.close(1)

    run(main())


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20))
     + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 100000, 431),  # never-ending line
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"1000\r\n" + b"x" * 4096 + b"\r\n0\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"GARBAGE\x00\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
])
def test_limits_and_malformed_requests_close_with_an_error(raw, status):
    async def main():
        limits = Limits(max_header_bytes=2048, max_header_count=10, max_body_bytes=1024)
        h = Echo()
        server, port = await serve(h, limits)
        r, w = await connect(port)
        w.write(raw)
        got, headers, body = await read_response(r)
        assert got == status
        assert headers["connection"] == "close"
        assert body and len(body) < 200 and b"\n" in body
        assert await r.read() == b""
        assert h.requests == []
        # The server still serves others.
        r, w = await connect(port)
        w.write(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        w.close()
        await server.close(1)

    run(main())


def test_slow_head_gets_408_and_silent_client_is_dropped():
    async def main():
        server, port = await serve(Echo(), Limits(head_timeout=0.3, keepalive_timeout=0.3))
        r, w = await connect(port)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # trickles, never finishes
        status, headers, _ = await read_response(r)
        assert status == 408 and headers["connection"] == "close"
        assert await r.read() == b""
        r2, w2 = await connect(port)
        assert await asyncio.wait_for(r2.read(), 2) == b""  # nothing sent: closed, no answer
        await server.close(1)

    run(main())


def test_idle_keepalive_connection_is_closed():
    async def main():
        server, port = await serve(Echo(), Limits(keepalive_timeout=0.2))
        r, w = await connect(port)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        assert await asyncio.wait_for(r.read(), 2) == b""
        await server.close(1)

    run(main())


def test_keepalive_and_head_timeouts_hold_after_a_kept_timer_moves_on():
    """The timer armed for a head is kept and moved on when keep-alive is due later, and
    replaced when keep-alive is due sooner: either way each limit holds as configured."""
    async def main():
        loop = asyncio.get_running_loop()
        # keep-alive later than the head's deadline: open past the head's, closed after
        server, port = await serve(Echo(), Limits(head_timeout=0.3, keepalive_timeout=0.9))
        r, w = await connect(port)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        start = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.read(), 0.5)  # the head's 0.3 s passed: still open
        w.write(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[2] == b"GET /again 0"
        start = loop.time()
        assert await asyncio.wait_for(r.read(), 3) == b""
        assert 0.8 <= loop.time() - start < 2.5
        # a head that trickles after keep-alive rearmed: 408 at the head's deadline
        r, w = await connect(port)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        w.write(b"GET / HTTP/1.1\r\n")
        start = loop.time()
        assert (await read_response(r))[0] == 408
        assert 0.2 <= loop.time() - start < 0.8
        await server.close(1)
        # keep-alive sooner than the head's deadline: the timer is replaced
        server, port = await serve(Echo(), Limits(head_timeout=5, keepalive_timeout=0.2))
        r, w = await connect(port)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        start = loop.time()
        assert await asyncio.wait_for(r.read(), 3) == b""
        assert loop.time() - start < 1.0
        await server.close(1)

    run(main())


def test_handler_exception_is_a_500_and_the_connection_survives():
    async def main():
        server, port = await serve(Echo())
        r, w = await connect(port)
        w.write(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = await read_response(r)
        assert status == 500 and body == b"Internal Server Error\n"
        w.write(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[2] == b"GET /after 0"
        w.close()
        await server.close(1)

    run(main())


def test_handler_timeout_is_a_504():
    async def main():
        server, port = await serve(Echo(delays={"/slow": 5}), Limits(handler_timeout=0.2))
        r, w = await connect(port)
        w.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 504
        w.close()
        await server.close(1)

    run(main())


def test_unix_socket_peer_is_empty(tmp_path):
    async def main():
        h = Echo()
        server = HttpServer(h)
        await server.add_socket(listener(socket.AF_UNIX, tmp_path / "s"))
        r, w = await asyncio.open_unix_connection(str(tmp_path / "s"))
        w.write(b"GET /u HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        assert h.requests[0].peer == ""
        w.close()
        await server.close(1)

    run(main())


def test_close_drains_in_flight_requests_and_remove_socket_stops_accepting():
    async def main():
        server, port = await serve(Echo(delays={"/slow": 0.3}))
        r, w = await connect(port)
        w.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.05)
        idle_r, idle_w = await connect(port)
        closing = asyncio.create_task(server.close(2))
        status, headers, body = await read_response(r)
        assert (status, body) == (200, b"GET /slow 0")
        assert headers["connection"] == "close"
        await closing
        assert await idle_r.read() == b""
        with pytest.raises(OSError):
            await connect(port)

        server = HttpServer(Echo())
        key = await server.add_socket(listener())
        port2 = server.sockets[0].getsockname()[1]
        await server.remove_socket(key)
        with pytest.raises(OSError):
            await connect(port2)
        await server.close(1)

    run(main())


def test_connections_beyond_the_limit_get_503():
    async def main():
        server, port = await serve(Echo(), Limits(max_connections=2))
        held = [await connect(port) for _ in range(2)]
        await asyncio.sleep(0.05)
        r, w = await connect(port)
        status, headers, _ = await read_response(r)
        assert status == 503 and headers["connection"] == "close"
        for r, w in held:
            w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await read_response(r))[0] == 200
            w.close()
        await server.close(1)

    run(main())


def test_serialize_response_owns_framing_headers():
    raw = serialize_response(Response(200, b"hi", [("Content-Length", "99"),
                                                   ("Connection", "x"), ("X-A", "b")]),
                             keep_alive=False)
    assert raw == (b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n"
                   b"Connection: close\r\n\r\nhi")
    assert serialize_response(Response(204, b"x")) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_an_ipv4_mapped_peer_is_its_ipv4_address():
    """On a dual-stack socket an IPv4 client arrives as ::ffff:a.b.c.d: one instance, one
    identity, whichever socket it came in on."""
    async def main():
        h = Echo()
        server = HttpServer(h)
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        s.listen(8)
        await server.add_socket(s)
        r, w = await asyncio.open_connection("127.0.0.1", s.getsockname()[1])
        w.write(b"GET /m HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r))[0] == 200
        assert h.requests[0].peer == "127.0.0.1"
        w.close()
        await server.close(1)

    run(main())


def test_request_bodies_held_by_the_process_are_capped_and_freed_with_the_connection():
    """Unfinished uploads: beyond max_buffered_body_bytes (all servers of the process
    together) a connection gets 503 and is closed; a closed connection is freed at once,
    bodies included (the parser <-> protocol cycle kept them for ever)."""
    import gc
    import weakref

    from mdtool.http import server as srv_mod

    async def main():
        limits = Limits(max_body_bytes=1 << 20, max_buffered_body_bytes=300_000)
        server_a, port_a = await serve(Echo(), limits)
        server_b, port_b = await serve(Echo(), limits)
        head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n"
        r1, w1 = await connect(port_a)
        w1.write(head + b"x" * 150_000)
        await w1.drain()
        for _ in range(200):
            if srv_mod.BODY_BUFFER.used == 150_000:
                break
            await asyncio.sleep(0.01)
        assert srv_mod.BODY_BUFFER.used == 150_000
        r2, w2 = await connect(port_b)
        w2.write(head + b"y" * 160_000)  # 310,000 > 300,000: refused
        status, _, _ = await read_response(r2)
        assert status == 503
        assert await r2.read() == b""
        for _ in range(50):
            if not server_b._connections:
                break
            await asyncio.sleep(0.01)
        assert srv_mod.BODY_BUFFER.used == 150_000
        (conn,) = server_a._connections
        ref = weakref.ref(conn)
        del conn
        w1.close()
        for _ in range(50):
            if not server_a._connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        gc.disable()  # freed by reference counting alone, not by a collector pass
        try:
            assert ref() is None
        finally:
            gc.enable()
        assert srv_mod.BODY_BUFFER.used == 0
        # answered bodies stop counting too
        r3, w3 = await connect(port_a)
        w3.write(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        assert (await read_response(r3))[2] == b"POST /u 5"
        assert srv_mod.BODY_BUFFER.used == 0
        w3.close()
        await server_a.close(1)
        await server_b.close(1)

    run(main())


def test_one_source_gets_503_beyond_its_cap_and_others_still_connect():
    async def main():
        server, port = await serve(Echo(), Limits(max_connections_per_source=2,
                                                  max_connections=10))
        held = [await connect(port) for _ in range(2)]
        await asyncio.sleep(0.05)
        r, w = await connect(port)  # a third from 127.0.0.1
        assert (await read_response(r))[0] == 503
        assert await r.read() == b""
        assert server.refused == 1
        # another source address (127.0.0.2 is loopback too) is not affected
        r2, w2 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        w2.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r2))[0] == 200
        # a closed connection frees its place
        held[0][1].close()
        await asyncio.sleep(0.05)
        r3, w3 = await connect(port)
        w3.write(b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await read_response(r3))[0] == 200
        for _, wr in held[1:] + [(r2, w2), (r3, w3), (r, w)]:
            wr.close()
        await server.close(1)
        assert server._per_source == {}

    run(main())


class AnswersNow(Echo):
    """Echo, with every GET also answered at once (as the fast path's cache does)."""

    def answer_now(self, req: Request) -> Response | None:
        self.requests.append(req)
        return Response(200, b"now", [("Content-Type", "text/plain")])


def _segments_in(sock: socket.socket) -> int:
    """TCP segments this socket received (struct tcp_info's tcpi_segs_in, Linux >= 4.2)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int.from_bytes(info[140:144], "little")


@pytest.mark.parametrize("handler", [Echo, AnswersNow])
def test_the_last_answer_of_a_connection_leaves_with_its_fin(handler):
    """A request that closes its connection (cloud-init 22.4 sends each on its own) gets
    its answer and the FIN in one segment: the client receives the SYN-ACK, the kernel's
    ACK of its request (quick-ack at a connection's start) and that; the FIN on its own
    was a fourth."""
    async def main():
        server, port = await serve(handler())
        loop = asyncio.get_running_loop()
        got = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := await loop.sock_recv(s, 65536):
                data += chunk
            got.append((data, _segments_in(s)))
            s.close()
        await server.close(1)
        return got

    for data, segments in run(main()):
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
        assert body in (b"GET /a 0", b"now")
        assert segments <= 3
