"""The upstream pool: reuse, stale-connection retry, framing, and error kinds."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from mdtool.http.client import UpstreamPool, UpstreamTimeout, UpstreamUnavailable

pytestmark = pytest.mark.timeout(20)


def run(coro):
    if os.environ.get("MDTOOL_TEST_UVLOOP"):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


class RawUpstream:
    """A scripted upstream: ``answer(request_head, n) -> (bytes, close_after)``."""

    def __init__(self, answer):
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server = None

    async def _client(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                data, close = self.answer(head, len(self.requests))
                if data is None:
                    await asyncio.sleep(10)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start_unix(self, path):
        self.server = await asyncio.start_unix_server(self._client, str(path))
        return self

    async def start_tcp(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()


def ok(body=b"hello", extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Up: 1\r\n%s\r\n%s"
            % (len(body), extra, body))


def test_connections_are_reused_and_headers_sent(tmp_path):
    async def main():
        up = await RawUpstream(lambda head, n: (ok(b"r%d" % n), False)).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s", size=4) as pool:
            for i in range(1, 4):
                resp = await pool.request("GET", f"/p{i}", [("X-A", "b")])
                assert resp.status == 200 and resp.body == b"r%d" % i
                assert resp.headers == [("X-Up", "1")]  # framing headers are the pool's
            resp = await pool.request("POST", "/post", [("Host", "h")], b"data")
            assert resp.body == b"r4"
        assert up.connections == 2  # the POST on a connection of its own
        assert up.requests[0] == b"GET /p1 HTTP/1.1\r\nX-A: b\r\nHost: localhost\r\n\r\n"
        assert up.requests[3] == b"POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\ndata"
        await up.stop()

    run(main())


def test_stale_pooled_connection_is_retried_once(tmp_path):
    async def main():
        # Answers keep-alive, then hangs up: the pooled connection is stale on next use.
        up = await RawUpstream(lambda head, n: (ok(b"r%d" % n), True)).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s", size=2) as pool:
            assert (await pool.request("GET", "/1")).body == b"r1"
            await asyncio.sleep(0.05)
            assert (await pool.request("GET", "/2")).body == b"r2"
            # Even when the hang-up is not noticed before reuse.
            assert (await pool.request("GET", "/3")).body == b"r3"
        assert up.connections == 3
        await up.stop()

    run(main())


def test_reused_connection_closed_without_answer_is_retried_on_a_fresh_one(tmp_path):
    async def main():
        # The 2nd request lands on the kept-alive connection, which hangs up silently.
        up = await RawUpstream(
            lambda head, n: (b"", True) if n == 2 else (ok(b"r%d" % n), False)
        ).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s") as pool:
            assert (await pool.request("GET", "/1")).body == b"r1"
            assert (await pool.request("GET", "/2")).body == b"r3"
        assert up.connections == 2
        await up.stop()

    run(main())


def test_chunked_and_until_eof_responses(tmp_path):
    async def main():
        def answer(head, n):
            if n == 1:
                return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"), False
            return b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nthe end", True

        up = await RawUpstream(answer).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s") as pool:
            resp = await pool.request("GET", "/c")
            assert (resp.status, resp.body, resp.headers) == (200, b"abcde", [])
            resp = await pool.request("GET", "/eof")
            assert (resp.status, resp.body) == (404, b"the end")
        assert up.connections == 1
        await up.stop()

    run(main())


def test_head_response_keeps_the_announced_length(tmp_path):
    async def main():
        up = await RawUpstream(
            lambda head, n: (b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", False)
        ).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s") as pool:
            resp = await pool.request("HEAD", "/h")
            assert resp.status == 200 and resp.body == b""
            assert ("Content-Length", "42") in resp.headers
        await up.stop()

    run(main())


def test_unavailable_upstreams(tmp_path):
    async def main():
        with pytest.raises(UpstreamUnavailable):
            await UpstreamPool(f"unix:{tmp_path}/missing").request("GET", "/")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(UpstreamUnavailable):
            await UpstreamPool(f"http://127.0.0.1:{port}").request("GET", "/")
        # Accepts, then hangs up without a word.
        up = await RawUpstream(lambda head, n: (b"", True)).start_unix(tmp_path / "s")
        with pytest.raises(UpstreamUnavailable):
            await UpstreamPool(f"unix:{tmp_path}/s").request("GET", "/")
        await up.stop()

    run(main())


def test_slow_upstream_times_out_and_the_pool_recovers():
    async def main():
        up = RawUpstream(lambda head, n: (None, False) if b"/slow" in head else (ok(), False))
        port = await up.start_tcp()
        async with UpstreamPool(f"http://127.0.0.1:{port}", read_timeout=0.2) as pool:
            with pytest.raises(UpstreamTimeout):
                await pool.request("GET", "/slow")
            assert (await pool.request("GET", "/fast")).status == 200
        assert up.requests[0].startswith(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1:%d" % port)
        await up.stop()

    run(main())


def test_pool_size_bounds_concurrency(tmp_path):
    async def main():
        async def slow_ok(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.1)
            writer.write(ok())
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(slow_ok, str(tmp_path / "s"))
        async with UpstreamPool(f"unix:{tmp_path}/s", size=2, read_timeout=5) as pool:
            results = await asyncio.gather(*(pool.request("GET", "/") for _ in range(5)))
        assert [r.status for r in results] == [200] * 5
        server.close()

    run(main())


def test_bad_upstream_url():
    with pytest.raises(ValueError):
        UpstreamPool("ftp://x")


def test_a_unix_listener_of_another_user_is_refused(tmp_path):
    """#13.1: the agent sends signatures only to a listener run by the users it trusts."""
    async def main():
        up = await RawUpstream(lambda head, n: (ok(), False)).start_unix(tmp_path / "s")
        me = os.geteuid()
        async with UpstreamPool(f"unix:{tmp_path}/s", peer_uids=frozenset({me})) as pool:
            assert (await pool.request("GET", "/")).status == 200
        async with UpstreamPool(f"unix:{tmp_path}/s", peer_uids=frozenset({me + 1})) as pool:
            with pytest.raises(UpstreamUnavailable, match=f"held by uid {me} .*refusing"):
                await pool.request("GET", "/")
        assert len(up.requests) == 1  # nothing was sent to the untrusted listener
        await up.stop()

    run(main())


def test_a_post_is_never_sent_twice(tmp_path):
    """A reused connection the upstream closes without an answer may have delivered the
    request: only what may be repeated is sent again (RFC 9110 9.2.2)."""
    async def main():
        # Answers the first request and keeps the connection; takes the POST, then
        # hangs up without a word (an agent that died after acting on it).
        up = await RawUpstream(
            lambda head, n: (b"", True) if head.startswith(b"POST") else (ok(b"r%d" % n), False)
        ).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s") as pool:
            assert (await pool.request("GET", "/1")).body == b"r1"
            with pytest.raises(UpstreamUnavailable):
                await pool.request("POST", "/openstack/latest/password", [], b"secret")
        assert [r.split(b" ", 1)[0] for r in up.requests] == [b"GET", b"POST"]
        await up.stop()

    run(main())


def _begin(pool, method, target, body=b""):
    """pool.begin() awaited: (response, error)."""
    fut = asyncio.get_running_loop().create_future()
    pool.begin(method, target, [("X-A", "b")], body, lambda r, e: fut.set_result((r, e)))
    return fut


def test_begin_answers_through_the_callback_on_warm_connections(tmp_path):
    async def main():
        up = await RawUpstream(
            lambda head, n: (ok(head.split(b" ")[1]), False)).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s", size=4) as pool:
            resp, error = await _begin(pool, "GET", "/cold")  # no warm one yet: connects
            assert error is None and resp.body == b"/cold"
            # Concurrent exchanges each get their own answer, never another's.
            got = await asyncio.gather(*(_begin(pool, "GET", f"/p{i}") for i in range(40)))
            assert [r.body for r, _ in got] == [b"/p%d" % i for i in range(40)]
            assert all(e is None for _, e in got)
            resp, error = await _begin(pool, "HEAD", "/h")
            assert error is None and resp.status == 200 and resp.body == b""
        assert up.connections <= 4  # the pool's size bounds them
        assert up.requests[1].startswith(b"GET /p0 HTTP/1.1\r\nX-A: b\r\nHost: localhost\r\n")
        await up.stop()

    run(main())


def test_begin_retries_a_closed_warm_connection_once_on_a_new_one(tmp_path):
    async def main():
        # Every answer closes the connection, noticed or not before the next request.
        up = await RawUpstream(lambda head, n: (ok(b"r%d" % n), True)).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s") as pool:
            for i in range(1, 4):
                resp, error = await _begin(pool, "GET", f"/{i}")
                assert error is None and resp.body == b"r%d" % i
        assert up.connections == 3
        # The upstream takes the request on the warm connection and hangs up silently:
        # sent once more, on a new connection.
        up = await RawUpstream(
            lambda head, n: (b"", True) if n == 2 else (ok(b"r%d" % n), False)
        ).start_unix(tmp_path / "t")
        async with UpstreamPool(f"unix:{tmp_path}/t") as pool:
            assert (await _begin(pool, "GET", "/1"))[0].body == b"r1"
            assert (await _begin(pool, "GET", "/2"))[0].body == b"r3"
        assert up.connections == 2
        await up.stop()

    run(main())


def test_begin_reports_failures_and_timeouts(tmp_path):
    async def main():
        async with UpstreamPool(f"unix:{tmp_path}/missing") as pool:
            resp, error = await _begin(pool, "GET", "/")
            assert resp is None and isinstance(error, UpstreamUnavailable)
        up = await RawUpstream(
            lambda head, n: (None, False) if b"/slow" in head else (ok(), False)
        ).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s", read_timeout=0.2) as pool:
            assert (await _begin(pool, "GET", "/warm"))[1] is None
            resp, error = await _begin(pool, "GET", "/slow")  # on the warm connection
            assert resp is None and isinstance(error, UpstreamTimeout)
            assert (await _begin(pool, "GET", "/fast"))[0].status == 200
        await up.stop()

    run(main())


def test_begin_gives_its_slot_back_when_the_resend_fails(tmp_path):
    """A warm connection the agent closed unanswered is resent on a new one; when that
    fails too (the agent went away), the slot must come back: with it held, a pool of one
    answered every later request "no free connection" even after the agent returned."""
    async def main():
        holder = {}

        def answer(head, n):
            if n == 2:  # take the request, stop listening, hang up without an answer
                holder["up"].server.close()
                return b"", True
            return ok(b"r%d" % n), False
        holder["up"] = await RawUpstream(answer).start_unix(tmp_path / "s")
        async with UpstreamPool(f"unix:{tmp_path}/s", size=1, read_timeout=0.5) as pool:
            assert (await _begin(pool, "GET", "/1"))[0].body == b"r1"  # now warm
            resp, error = await _begin(pool, "GET", "/2")  # stale, and nobody to resend to
            assert resp is None and isinstance(error, UpstreamUnavailable)
            back = await RawUpstream(lambda head, n: (ok(b"back"), False)).start_unix(
                tmp_path / "s")
            resp, error = await _begin(pool, "GET", "/3")
            assert error is None and resp.body == b"back"
            await back.stop()

    run(main())


def test_a_pool_outliving_its_event_loop_works_on_the_next_one(tmp_path):
    """The interop tests drive one agent (and its pool) from one asyncio.run after another;
    a pool that kept its first loop answered every later request with a RuntimeError
    ("attached to a different loop"), and the agent with 500."""
    pool = UpstreamPool(f"unix:{tmp_path}/s", size=2)

    async def one(tag):
        up = await RawUpstream(lambda head, n: (ok(tag), False)).start_unix(tmp_path / "s")
        try:
            assert (await pool.request("GET", "/")).body == tag  # warm after the first
            resp, error = await _begin(pool, "GET", "/")
            assert error is None and resp.body == tag
        finally:
            await up.stop()

    run(one(b"first"))
    run(one(b"second"))
    run(pool.close())
