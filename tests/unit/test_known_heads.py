"""The server's shortcut for a repeated request (mdtool/http/server.py): a read that is
byte for byte the last request ``answer_now`` answered on the connection skips the parser.

Each test feeds a connection chosen reads through a transport that keeps what is written
(a socket would merge or split them at will) and checks the answer against what the bytes
say: a wrong match shows as the echo of another request."""

from __future__ import annotations

import asyncio

import pytest

from mdtool.http.server import HttpServer, Limits, _Connection
from mdtool.http.types import Request, Response
from tests.unit.test_answer_cache import Transport

pytestmark = pytest.mark.timeout(20)


class EchoNow:
    """Answers from the callback (``answer_now``) unless ``cached`` is off or the path is
    /slow; the body says everything the request was parsed to."""

    def __init__(self):
        self.cached = True
        self.now: list[Request] = []  # what answer_now answered, in order
        self.called: list[Request] = []  # what the task path answered

    @staticmethod
    def echo(req: Request, how: str) -> Response:
        fields = "|".join(f"{k}={v}" for k, v in req.headers)
        return Response(200, f"{how} {req.method} {req.target} {req.peer} {fields}".encode())

    def answer_now(self, req: Request) -> Response | None:
        if not self.cached or req.path == "/slow" or req.method != "GET" or req.body:
            return None
        self.now.append(req)
        return self.echo(req, "now")

    async def __call__(self, req: Request) -> Response:
        self.called.append(req)
        return self.echo(req, "call")


def head(target: str = "/a", **fields: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 169.254.169.254"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answers(out: bytearray) -> list[str]:
    """The bodies of the complete answers in ``out`` (status 200 only; else 'NNN')."""
    got = []
    data = bytes(out)
    while data:
        end = data.find(b"\r\n\r\n")
        assert end >= 0, data
        lines = data[:end].split(b"\r\n")
        status = int(lines[0].split()[1])
        n = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:"))
        body = data[end + 4:end + 4 + n]
        got.append(body.decode() if status == 200 else str(status))
        data = data[end + 4 + n:]
    return got


class Conn:
    def __init__(self, limits: Limits | None = None, peer: str = "10.9.0.5"):
        self.handler = EchoNow()
        self.server = HttpServer(self.handler, limits or Limits(head_timeout=5,
                                                                 keepalive_timeout=5))
        self.t = Transport(peer)

    async def __aenter__(self):
        self.server._loop = asyncio.get_running_loop()
        self.conn = _Connection(self.server)
        self.conn.connection_made(self.t)
        return self

    async def __aexit__(self, *exc):
        self.conn.connection_lost(None)

    async def send(self, *reads: bytes) -> list[str]:
        """Feed ``reads`` one by one; the answers they got."""
        for data in reads:
            self.conn.data_received(data)
        for _ in range(3):
            await asyncio.sleep(0)
        got = answers(self.t.out)
        self.t.out.clear()
        return got


def expect(how: str, target: str = "/a", peer: str = "10.9.0.5", **fields: str) -> str:
    return EchoNow.echo(Request("GET", target, [("Host", "169.254.169.254")] + [
        (k.replace("_", "-"), v) for k, v in fields.items()], peer=peer), how).body.decode()


def run(coro):
    return asyncio.run(coro)


def test_the_same_bytes_again_are_answered_without_a_parse():
    async def go():
        async with Conn() as c:
            first = await c.send(head())
            again = await c.send(head(), head())
            return first, again, c.handler.now

    first, again, now = run(go())
    assert first == [expect("now")] and again == [expect("now")] * 2
    # The parser made one Request; the repeats were answered with that very one.
    assert len(now) == 3 and now[1] is now[0] and now[2] is now[0]


@pytest.mark.parametrize("fields", [
    {"Host": "other.example"},                      # another Host
    {"X_Forwarded_For": "10.9.0.77"},               # a field that claims an identity
    {"X_aws_ec2_metadata_token": "v1.other"},       # another IMDSv2 token
    {"User_Agent": "curl/8"},                        # an end-to-end field
])
def test_a_head_that_differs_in_one_field_is_parsed(fields):
    known = head(X_aws_ec2_metadata_token="v1.one")
    other = head(**fields) if "Host" not in fields else known.replace(
        b"Host: 169.254.169.254", b"Host: " + fields["Host"].encode())

    async def go():
        async with Conn() as c:
            await c.send(known)
            return await c.send(other), await c.send(known)

    got, back = run(go())
    want = [("Host", "169.254.169.254")] + [(k.replace("_", "-"), v) for k, v in fields.items()]
    if "Host" in fields:
        want = [("Host", fields["Host"]), ("X-aws-ec2-metadata-token", "v1.one")]
    assert got == [EchoNow.echo(Request("GET", "/a", want, peer="10.9.0.5"), "now").body.decode()]
    assert back == [expect("now", X_aws_ec2_metadata_token="v1.one")]


def test_pipelined_requests_in_one_read_are_each_parsed_and_answered_in_order():
    async def go():
        async with Conn() as c:
            await c.send(head("/a"))
            two = await c.send(head("/a") + head("/b"))
            two_again = await c.send(head("/a") + head("/b"))
            known_twice = await c.send(head("/a") * 2)
            with_slow = await c.send(head("/slow") + head("/a"))
            return two, two_again, known_twice, with_slow

    two, two_again, known_twice, with_slow = run(go())
    assert two == two_again == [expect("now", "/a"), expect("now", "/b")]
    assert known_twice == [expect("now", "/a")] * 2
    # A request behind one that waits for the handler is answered after it, in order.
    assert with_slow == [expect("call", "/slow"), expect("call", "/a")]


def test_a_head_split_across_reads_and_bytes_that_continue_a_head():
    known = head("/a")

    async def go():
        async with Conn() as c:
            await c.send(known)
            split = await c.send(known[:10], known[10:])
            # The known bytes arriving in the middle of another head are part of it: the
            # request is GET /b with a field whose value is the known request line.
            inside = await c.send(b"GET /b HTTP/1.1\r\nX-Pad: ", known)
            again = await c.send(known)
            return split, inside, again

    split, inside, again = run(go())
    assert split == [expect("now", "/a")]
    assert inside == [EchoNow.echo(Request("GET", "/b", [
        ("X-Pad", "GET /a HTTP/1.1"), ("Host", "169.254.169.254")], peer="10.9.0.5"),
        "now").body.decode()]
    assert again == [expect("now", "/a")]


def test_heads_beyond_the_limits_are_refused_even_after_a_known_one():
    limits = Limits(head_timeout=5, keepalive_timeout=5, max_header_bytes=200,
                    max_header_count=4)

    async def go():
        async with Conn(limits) as c:
            ok = await c.send(head())
            big = await c.send(head(X_Big="x" * 300))
        async with Conn(limits) as c:
            await c.send(head())
            many = await c.send(head(A="1", B="2", C="3", D="4"))
            closed = c.t.closed
        return ok, big, many, closed

    ok, big, many, closed = run(go())
    assert ok == [expect("now")]
    assert big == ["431"] and many == ["431"] and closed


def test_the_answer_path_decides_every_time():
    """The shortcut saves the parse, not the handler's judgement: a request its answer_now
    no longer answers (a cache dropped) goes to the handler as usual."""
    async def go():
        async with Conn() as c:
            await c.send(head())
            c.handler.cached = False
            dropped = await c.send(head())
            c.handler.cached = True
            back = await c.send(head())
            return dropped, back, len(c.handler.called)

    dropped, back, called = run(go())
    assert dropped == [expect("call")] and called == 1
    assert back == [expect("now")]


def test_only_plain_keep_alive_requests_are_remembered():
    close = head(Connection="close")
    http10 = b"GET /a HTTP/1.0\r\nHost: 169.254.169.254\r\nConnection: keep-alive\r\n\r\n"
    expect_continue = head(Expect="100-continue")

    async def go():
        async with Conn() as c:
            await c.send(http10)
            await c.send(http10)
            answered_by_task = len(c.handler.called)
            c.t.out.clear()
            c.conn.data_received(expect_continue)
            c.conn.data_received(expect_continue)
            await asyncio.sleep(0)
            continues = bytes(c.t.out).count(b"HTTP/1.1 100 Continue\r\n")
            c.t.out.clear()
            last = await c.send(close)
            return answered_by_task, continues, last, c.t.closed

    answered_by_task, continues, last, closed = run(go())
    assert answered_by_task == 2  # HTTP/1.0 is never answered from the callback
    assert continues == 2  # each Expect gets its 100 Continue, the repeat too
    assert len(last) == 1 and closed
