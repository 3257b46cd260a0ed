"""A lean, hardened HTTP/1.1 server: asyncio Protocol + httptools, uvloop when present.

What a hostile or broken client can do is bounded: the request head must arrive within
``Limits.head_timeout`` and fit ``max_header_bytes``/``max_header_count`` (431), bodies fit
``max_body_bytes`` (413), idle keep-alive connections close after ``keepalive_timeout``,
and malformed or ambiguous framing (Content-Length with Transfer-Encoding, several
different Content-Length values) ends the connection with 400. A failing handler costs a
500, never the process.

Pipelined requests are parsed ahead and answered strictly in order, one handler at a
time per connection; reading pauses when too many are queued.

A handler with an ``answer_now`` (the fast path's cache of its answers) is asked from the
parser's callback, without a task. A connection then remembers the last read that was
exactly one such request, as bytes and as the Request it parsed to: the same bytes at a
request boundary are the same request (the parse depends on nothing else), so they skip
the parser and go straight to ``answer_now``, which applies every check it applies to any
request. Anything else (another request, part of one, two at once) is parsed.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import socket
import struct
import termios
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable

import httptools

from mdtool.http.types import Handler, Request, Response

log = logging.getLogger("mdtool.http.server")

__all__ = ["Limits", "HttpServer", "run_daemon", "install_uvloop", "serialize_response"]


@dataclass
class Limits:
    head_timeout: float = 30.0  # whole request (head and body) must arrive within this
    keepalive_timeout: float = 30.0  # idle time between requests on a kept-alive connection
    max_header_bytes: int = 16384  # request line + header fields (431 beyond)
    max_header_count: int = 100  # header fields (431 beyond)
    max_body_bytes: int = 1 << 20  # request body (413 beyond)
    handler_timeout: float | None = None  # handler still running after this: 504
    max_pipeline: int = 16  # parsed-ahead requests before reading pauses
    max_connections: int | None = None  # beyond: 503 and close (haproxy's maxconn)
    # Connections of one client address on this server (one network); beyond: 503 and
    # close, so one instance cannot take its network's connections. None: no cap.
    max_connections_per_source: int | None = None
    # Request bodies held in memory by the whole process (every server in it), received
    # or waiting for their answer; beyond: 503 and close. None: no cap.
    max_buffered_body_bytes: int | None = None


class _BodyBuffer:
    """What the process holds in request bodies right now (one count for every server)."""

    __slots__ = ("used", "peak", "refused")

    def __init__(self) -> None:
        self.used = 0
        self.peak = 0
        self.refused = 0


BODY_BUFFER = _BodyBuffer()


class _OpenConnections:
    """Client connections the process holds, every server together. ``limit`` (set by
    the daemon from RLIMIT_NOFILE, less what it needs for everything else) keeps accept()
    clear of EMFILE: beyond it a connection gets 503 and is closed at once."""

    __slots__ = ("count", "limit", "refused")

    def __init__(self) -> None:
        self.count = 0
        self.limit: int | None = None
        self.refused = 0


OPEN_CONNECTIONS = _OpenConnections()
_TRIM_AFTER = 8 << 20  # a burst of bodies this large is worth handing back


def release_body_memory() -> bool:
    """Once a burst of request bodies is mostly gone, hand the freed heap back to the
    system (glibc keeps it otherwise: the socket reads that made the bodies sit between
    longer-lived objects). Cheap to call every second; True when it trimmed."""
    buf = BODY_BUFFER
    if buf.peak < _TRIM_AFTER or buf.used > buf.peak // 4:
        return False
    buf.peak = buf.used
    global _libc
    try:
        if _libc is None:
            import ctypes
            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        return False
    return True


_libc = None


class _Reject(Exception):
    """Raised from parser callbacks: answer ``status`` and close."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


# Status lines and reason phrases are built once.
_STATUS_LINES: dict[int, bytes] = {}
for _s in HTTPStatus:
    _STATUS_LINES[_s.value] = f"HTTP/1.1 {_s.value} {_s.phrase}\r\n".encode()


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} Unknown\r\n".encode()
    return line


# Framing and connection management belong to the server, not to the handler.
_SERVER_OWNED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_SERVER_OWNED_STR = frozenset(h.decode() for h in _SERVER_OWNED)


def _encode(s: str) -> bytes:
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def serialize_response(resp: Response, *, head: bool = False, keep_alive: bool = True,
                       http10: bool = False) -> bytes:
    """The bytes of ``resp`` on the wire, with Content-Length and Connection set."""
    status = resp.status
    parts = [_status_line(status)]
    explicit_length = None
    for name, value in resp.headers:
        lname = name.lower()
        if lname in _SERVER_OWNED_STR:
            if lname == "content-length":
                explicit_length = value
            continue
        parts.append(_encode(f"{name}: {value}\r\n"))
    body = resp.body
    if status < 200 or status == 204 or status == 304:
        body = b""
    else:
        if head and not body and explicit_length is not None:
            # A HEAD answer may announce the GET length (a proxy relaying one does).
            parts.append(b"Content-Length: %s\r\n" % explicit_length.strip().encode())
        else:
            parts.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    elif http10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if body and not head:
        parts.append(body)
    return b"".join(parts)


def _closing(wire: bytes) -> bytes:
    """A keep-alive answer's bytes (serialize_response's, no Connection field) as the last
    answer of its connection: ``Connection: close`` added at the end of the head."""
    end = wire.index(b"\r\n\r\n") + 2
    return b"".join((wire[:end], b"Connection: close\r\n", wire[end:]))


def _last_answer(transport: asyncio.Transport) -> None:
    """The next write is the connection's last: hold it in the kernel (TCP_CORK) until the
    close, which sends it with the FIN in one segment, where TCP_NODELAY would send the
    answer and then the FIN on its own. On a connection per request (cloud-init 22.4),
    that is a segment, its processing and a wake-up of the client fewer per request."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    except OSError:
        pass  # sent as before: the answer, then the FIN


def _error_bytes(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    return b"".join((_status_line(status), b"Content-Type: text/plain; charset=UTF-8\r\n",
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body), body))


def _peer_host(addr: Any) -> str:
    """The client's address; an IPv4-mapped IPv6 peer (dual-stack socket) is its IPv4
    address, so one instance has one identity whichever socket it came in on."""
    if isinstance(addr, tuple) and addr:
        host = addr[0]
        if isinstance(host, str):
            if host.startswith("::ffff:") and "." in host:
                return host[7:]
            return host.split("%", 1)[0]
    return ""


def _local_host(addr: Any) -> str:
    if isinstance(addr, tuple) and addr:
        return str(addr[0]).split("%", 1)[0]
    if isinstance(addr, (str, bytes)):
        return addr.decode(errors="replace") if isinstance(addr, bytes) else addr
    return ""


def _send_queue(sock: Any) -> int:
    """Bytes in the kernel's send queue, not yet sent or not yet acknowledged (SIOCOUTQ);
    -1 when it cannot be read."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return -1
    return struct.unpack("i", buf)[0]


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.limits = server.limits
        self.handler = server.handler
        self.answer_now = server.answer_now
        self.begin = server.begin
        self.loop = server._loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.local = ""
        self.queue: deque[tuple[Request, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.closing = False  # no more requests are read or answered after the current one
        self.reading_paused = False
        self.write_paused: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # when on_deadline is due (loop time)
        self.on_deadline: Callable[[], None] | None = None
        self.in_message = False  # between message begin and message complete
        self.head_done = False
        self.head_raw = 0  # bytes fed while a head was incomplete (memory bound)
        self.head_bytes = 0  # parsed size of url + header fields
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.body_len = 0
        self.charged = 0  # body bytes of this connection counted in BODY_BUFFER
        self.counted = False  # counted in OPEN_CONNECTIONS and the server's per-source map
        self.expect_continue = False
        self.pending_error: bytes | None = None
        self.completed_in_chunk = False
        self.hops: int | None = None  # the IP TTL / hop limit a reply set (None: default)
        # The last read that was exactly one request answered by answer_now, and the
        # Request it was parsed to: the same bytes again need no parse (see _known).
        self.known_head: bytes | None = None
        self.known_req: Request | None = None
        self.began = 0  # requests begun in the current read
        self.answered: Request | None = None  # the last request answer_now answered

    # asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        server = self.server
        conns = server._connections
        limits = self.limits
        peer = _peer_host(transport.get_extra_info("peername"))
        per_source = server._per_source
        if (limits.max_connections is not None and len(conns) >= limits.max_connections) \
                or (OPEN_CONNECTIONS.limit is not None
                    and OPEN_CONNECTIONS.count >= OPEN_CONNECTIONS.limit) \
                or (limits.max_connections_per_source is not None and peer
                    and per_source.get(peer, 0) >= limits.max_connections_per_source):
            OPEN_CONNECTIONS.refused += 1
            server.refused += 1
            self.closing = True
            transport.write(_error_bytes(503, "Service Unavailable: too many connections"))
            transport.close()
            return
        self.peer = peer
        self.local = _local_host(transport.get_extra_info("sockname"))
        conns.add(self)
        per_source[peer] = per_source.get(peer, 0) + 1
        OPEN_CONNECTIONS.count += 1
        self.counted = True
        self._arm(self.limits.head_timeout, self._on_idle_timeout)

    def connection_lost(self, exc):
        self.server._connections.discard(self)
        if self.counted:
            self.counted = False
            OPEN_CONNECTIONS.count -= 1
            per_source = self.server._per_source
            left = per_source.get(self.peer, 1) - 1
            if left > 0:
                per_source[self.peer] = left
            else:
                per_source.pop(self.peer, None)
        self._disarm(cancel=True)
        self.closing = True
        self.transport = None
        BODY_BUFFER.used -= self.charged
        self.charged = 0
        # The parser holds this protocol and this protocol the parser: a cycle the
        # collector cannot see through httptools, so nothing of it (bodies included)
        # was ever freed. Cut it, and drop what was buffered.
        self.parser = None
        self.body = []
        self.queue.clear()
        self.known_head = self.known_req = self.answered = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        waiter = self.server._drained
        if waiter is not None and not self.server._connections and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self):
        if self.write_paused is None or self.write_paused.done():
            self.write_paused = self.loop.create_future()

    def resume_writing(self):
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def data_received(self, data: bytes):
        if self.closing:
            return
        boundary = not self.in_message and self.answer_now is not None
        if boundary:
            if data == self.known_head and self._known():
                return
            self.began = 0
            self.answered = None
        self.completed_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request before the upgrade is complete; we speak nothing else.
            if self.in_message or not self.queue:
                self._fail(400, "Bad Request: protocol upgrade not supported")
                return
            self._stop_reading_after_queue()
            return
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            if isinstance(ctx, _Reject):
                self._fail(ctx.status, ctx.text)
            else:
                log.exception("HTTP parser callback failed", exc_info=ctx)
                self._fail(500, "Internal Server Error")
            return
        except httptools.HttpParserError as e:
            self._fail(400, f"Bad Request: {e.args[0] if e.args else 'malformed'}")
            return
        if self.in_message and not self.head_done:
            # Bounds memory for endless lines (on_header's parsed-size check is exact).
            # A chunk where an earlier request ended may start with its body: the head
            # is then counted from the next chunk on.
            if self.head_raw < 0:
                self.head_raw = 0 if self.completed_in_chunk else len(data)
            else:
                self.head_raw += len(data)
            if self.head_raw > self.limits.max_header_bytes:
                self._fail(431, "Request Header Fields Too Large")
        elif boundary and self.began == 1 and self.answered is not None \
                and not self.expect_continue:
            # This read was one whole request, answered at once (no 100 Continue went
            # out before it): remember its bytes.
            self.known_head = data
            self.known_req = self.answered

    def _known(self) -> bool:
        """Answer the remembered request again for the same bytes, as on_message_complete
        would: the parse they make (method, target, fields, limits, keep-alive) is the one
        remembered. False (nothing done): parse them."""
        if self.task is not None or self.queue:
            return False
        return self._answer_now(self.known_req, True)

    def eof_received(self):
        # A half-closed client still gets the answers to what it sent.
        if self.in_message or self.task is None:
            return False
        self.closing = True
        return True

    # httptools callbacks --------------------------------------------------------------

    def on_message_begin(self):
        self.in_message = True
        self.began += 1
        self.head_done = False
        self.head_raw = -1
        self.head_bytes = 0
        self.url = b""
        self.headers = []
        self.body = []
        self.body_len = 0
        self.expect_continue = False
        if self.task is None:
            # Waiting for this head is no longer keep-alive idleness.
            self._arm(self.limits.head_timeout, self._on_head_timeout)

    def on_url(self, url: bytes):
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_header_bytes:
            raise _Reject(414, "URI Too Long")

    def on_header(self, name: bytes, value: bytes):
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.limits.max_header_bytes:
            raise _Reject(431, "Request Header Fields Too Large")
        if len(self.headers) >= self.limits.max_header_count:
            raise _Reject(431, "Request Header Fields Too Large: too many fields")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self):
        self.head_done = True
        if self.parser.get_http_version() not in ("1.0", "1.1"):
            # A request line without a version (HTTP/0.9): nothing answers that any more.
            raise _Reject(400, "Bad Request: HTTP/1.0 or HTTP/1.1 request line expected")
        lengths = set()
        chunked = False
        for name, value in self.headers:
            lname = name.lower()
            if lname == "content-length":
                lengths.update(v.strip() for v in value.split(","))
            elif lname == "transfer-encoding":
                chunked = True
            elif lname == "expect" and value.strip().lower() == "100-continue":
                self.expect_continue = True
        if lengths and chunked:
            raise _Reject(400, "Bad Request: both Content-Length and Transfer-Encoding")
        if len(lengths) > 1:
            raise _Reject(400, "Bad Request: conflicting Content-Length")
        if lengths:
            (cl,) = lengths
            if not cl.isdigit():
                raise _Reject(400, "Bad Request: bad Content-Length")
            if int(cl) > self.limits.max_body_bytes:
                raise _Reject(413, "Content Too Large")
        if self.expect_continue and self.transport is not None and not self.queue \
                and self.task is None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        n = len(body)
        self.body_len += n
        if self.body_len > self.limits.max_body_bytes:
            raise _Reject(413, "Content Too Large")
        cap = self.limits.max_buffered_body_bytes
        if cap is not None and BODY_BUFFER.used + n > cap:
            BODY_BUFFER.refused += 1
            self.body = []
            raise _Reject(503, "Service Unavailable: too many request bodies in progress")
        BODY_BUFFER.used += n
        self.charged += n
        if BODY_BUFFER.used > BODY_BUFFER.peak:
            BODY_BUFFER.peak = BODY_BUFFER.used
        self.body.append(body)

    def on_message_complete(self):
        self.in_message = False
        self.completed_in_chunk = True
        if self.closing and self.task is None and not self.queue:
            return  # the connection's last answer is out (answered now, then closed)
        parser = self.parser
        version = parser.get_http_version()
        keep_alive = parser.should_keep_alive() and not self.closing
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        req = Request(parser.get_method().decode("ascii", "replace"),
                      self.url.decode("latin-1"), self.headers, body, self.peer, version,
                      self.local)
        self.headers = []
        self.body = []
        if self.answer_now is not None and self.task is None and not self.queue \
                and self._answer_now(req, keep_alive):
            if keep_alive:
                self.answered = req
            return
        if self.begin is not None and self.task is None and not self.queue \
                and self._begin(req, keep_alive):
            return
        self.queue.append((req, keep_alive))
        if self.task is None:
            self._disarm()
            self.task = self.loop.create_task(self._answer())
        if len(self.queue) >= self.limits.max_pipeline and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        if not keep_alive:
            # Nothing after a closing request is read.
            self.closing = True

    # answering --------------------------------------------------------------------------

    def _answer_now(self, req: Request, keep_alive: bool) -> bool:
        """A request the handler can answer without waiting (a cached answer), answered
        from this callback: no task, no queue. Only in the plain case: HTTP/1.1, nothing
        before it pending, no body, no reply hop limit to restore, writes flowing. A
        request that ends its connection (``Connection: close``, as every request of
        cloud-init 22.4 does) gets the answer with ``Connection: close`` and the connection
        closes, nothing after it read. False: answer it the usual way."""
        if req.version != "1.1" or req.body or self.hops is not None or self.server._closing \
                or (self.write_paused is not None and not self.write_paused.done()):
            return False
        resp = self.answer_now(req)
        if resp is None:
            return False
        if resp.wire is not None:
            data = resp.wire if keep_alive else _closing(resp.wire)
        else:  # the proxy's own refusal (429, 401) of what it would have answered
            data = serialize_response(resp, head=req.method == "HEAD", keep_alive=keep_alive)
        if not keep_alive:
            _last_answer(self.transport)
        self.transport.write(data)
        if not keep_alive:
            self.closing = True
            self._disarm()
            self.transport.close()
        elif not self.in_message:
            self._arm(self.limits.keepalive_timeout, self._on_idle_timeout)
        return True

    def _wire(self, req: Request, resp: Response, keep_alive: bool) -> tuple[bytes, bool]:
        """The bytes answering ``req`` with ``resp``, and whether the connection stays
        open after them."""
        if self.server._closing and not self.queue:
            keep_alive = False
        for name, value in resp.headers:
            if name.lower() == "connection" and "close" in value.lower():
                keep_alive = False
        try:
            data = serialize_response(resp, head=req.method == "HEAD", keep_alive=keep_alive,
                                      http10=req.version == "1.0")
        except Exception:
            log.exception("bad response from handler: %s %s", req.method, req.target)
            return _error_bytes(500, "Internal Server Error"), False
        return data, keep_alive

    def _begin(self, req: Request, keep_alive: bool) -> bool:
        """Hand ``req`` to the handler's callback way (``handler.begin(req, reply)``): no
        task, the answer written from the callback it comes in. The plain case only:
        nothing before it pending, no body, no reply hop limit to restore, writes
        flowing. False: answer it the usual way."""
        if req.body or self.closing or self.hops is not None or self.server._closing \
                or (self.write_paused is not None and not self.write_paused.done()):
            return False
        pending = _Pending(self, req, keep_alive)
        self.task = pending  # stands in for the answering task: requests behind it queue
        closing = self.closing
        if not keep_alive:
            self.closing = True  # nothing after a closing request is read
        self._disarm()
        try:
            begun = self.begin(req, pending.reply)
        except BaseException:  # reported by data_received (a 500); nothing stays pending
            begun = False
            raise
        finally:
            if not begun:
                if self.task is pending:
                    self.task = None
                self.closing = closing
        return begun

    def _reply(self, req: Request, keep_alive: bool, resp: Response) -> None:
        """The answer to a request handed to ``handler.begin``: what ``_answer`` does
        with a handler's response, then the requests that queued behind it."""
        self.task = None
        transport = self.transport
        if transport is None:
            return
        if resp.hop_limit is not None:  # set only on the task's way (_set_hop_limit)
            log.error("a hop limit on a callback answer: %s %s", req.method, req.target)
            resp = Response.text(500, "Internal Server Error\n")
        data, keep_alive = self._wire(req, resp, keep_alive)
        transport.write(data)
        if not keep_alive:
            self.closing = True
            self.queue.clear()
            transport.close()
        elif self.queue:
            self.task = self.loop.create_task(self._answer())
        else:
            self._after_answers()

    async def _answer(self):
        handler = self.handler
        handler_timeout = self.limits.handler_timeout
        try:
            while self.queue:
                req, keep_alive = self.queue.popleft()
                if self.reading_paused and len(self.queue) < self.limits.max_pipeline // 2:
                    self.reading_paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                try:
                    if handler_timeout is None:
                        resp = await handler(req)
                    else:
                        # In this task: wait_for's task of its own cost a loop iteration
                        # a request, and let the deferred access line go out first.
                        async with asyncio.timeout(handler_timeout):
                            resp = await handler(req)
                except asyncio.CancelledError:
                    raise
                except asyncio.TimeoutError:
                    log.warning("handler timed out: %s %s", req.method, req.target)
                    resp = Response.text(504, "Gateway Timeout\n")
                except Exception:
                    log.exception("handler failed: %s %s", req.method, req.target)
                    resp = Response.text(500, "Internal Server Error\n")
                if req.body:  # answered: its body no longer counts
                    n = min(len(req.body), self.charged)
                    self.charged -= n
                    BODY_BUFFER.used -= n
                transport = self.transport
                if transport is None:
                    return
                data, keep_alive = self._wire(req, resp, keep_alive)
                if resp.hop_limit != self.hops:
                    if self.hops is not None and (resp.hop_limit is None
                                                  or resp.hop_limit > self.hops):
                        # A segment takes the TTL of the moment it is (re)transmitted: the
                        # limited reply must be out and acknowledged before the limit goes
                        # up. A client that does not read loses the connection instead.
                        if not await self._all_acknowledged(self.limits.keepalive_timeout):
                            self.closing = True
                            self.queue.clear()
                            if self.transport is not None:
                                self.transport.close()
                            return
                        transport = self.transport
                        if transport is None:
                            return
                    if not self._set_hop_limit(resp.hop_limit) and resp.hop_limit is not None:
                        # Never let a reply meant to stay on the link leave without its limit.
                        data = _error_bytes(500, "Internal Server Error")
                        keep_alive = False
                if not keep_alive:
                    _last_answer(transport)
                transport.write(data)
                if not keep_alive:
                    self.closing = True
                    self.queue.clear()
                    transport.close()
                    return
                if self.write_paused is not None and not self.write_paused.done():
                    await self.write_paused
        except asyncio.CancelledError:
            return
        finally:
            self.task = None
        self._after_answers()

    def _after_answers(self) -> None:
        """Every queued request answered: the error still owed, or close, or wait for
        the next request."""
        if self.transport is None:
            return
        if self.pending_error is not None:
            self.transport.write(self.pending_error)
            self.transport.close()
        elif self.closing:
            self.transport.close()
        elif self.in_message:
            self._arm(self.limits.head_timeout, self._on_head_timeout)
        else:
            self._arm(self.limits.keepalive_timeout, self._on_idle_timeout)

    async def _all_acknowledged(self, timeout: float) -> bool:
        """Wait until every byte written so far has left the transport's buffer and the
        peer has acknowledged it (the kernel's send queue is empty); False on timeout."""
        loop = self.loop
        deadline = loop.time() + timeout
        delay = 0.001
        while True:
            transport = self.transport
            if transport is None:
                return False
            sock = transport.get_extra_info("socket")
            if transport.get_write_buffer_size() == 0 and _send_queue(sock) == 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _set_hop_limit(self, hops: int | None) -> bool:
        """IP TTL (and IPv6 hop limit) of what is written next; None: the system default."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        family = getattr(sock, "family", None)
        value = -1 if hops is None else hops  # -1: back to the sysctl default (Linux)
        try:
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, value)
            elif family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, value)
                try:  # an IPv4-mapped peer on a dual-stack socket
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, value)
                except OSError:
                    pass
            else:
                return False
        except OSError as e:
            log.warning("cannot set the hop limit of a reply to %s: %s", self.peer, e)
            return False
        self.hops = hops
        return True

    def _stop_reading_after_queue(self):
        self.closing = True
        if self.task is None and self.transport is not None:
            self.transport.close()

    def _fail(self, status: int, text: str):
        """Protocol error: answer what came before in order, then this error, then close."""
        self.closing = True
        self.in_message = False
        self._disarm()
        if self.transport is None or self.transport.is_closing():
            return  # its last answer is out: nothing more is written
        self.transport.pause_reading()
        data = _error_bytes(status, text)
        if self.task is None:
            self.transport.write(data)
            self.transport.close()
        else:
            # Answered after the requests already accepted, then the connection closes.
            self.pending_error = data

    def close_if_idle(self) -> bool:
        """Server shutdown: close unless a request is being answered or its body received."""
        if self.transport is None:
            return True
        if self.task is None and not (self.in_message and self.head_done):
            self.transport.close()
            return True
        if self.task is not None:
            self.closing = True  # answer what is queued, read nothing more
        return False

    # timers -------------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]):
        """``callback`` in ``delay`` seconds, instead of whatever was armed. A timer due no
        later is kept and moved on when it fires: a request re-arms twice (its head, then
        keep-alive), and a cancel and a new timer each time were a visible part of it."""
        deadline = self.loop.time() + delay
        self.deadline = deadline
        self.on_deadline = callback
        timer = self.timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self):
        self.timer = None
        callback = self.on_deadline
        if callback is None:
            return
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        self.on_deadline = None
        callback()

    def _disarm(self, cancel: bool = False):
        """Nothing fires; ``cancel``: drop the timer too (the connection is gone)."""
        self.on_deadline = None
        if cancel and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_idle_timeout(self):
        self.timer = None
        if self.transport is not None and self.task is None:
            self.transport.close()

    def _on_head_timeout(self):
        self.timer = None
        if self.transport is None or self.task is not None:
            return
        if self.in_message:
            self.closing = True
            self.transport.write(_error_bytes(408, "Request Timeout"))
        self.transport.close()


class _Pending:
    """A request handed to ``handler.begin``, in the connection's ``task`` slot: what
    the connection asks of a task (done, cancel) it answers the same way."""

    __slots__ = ("conn", "req", "keep_alive", "finished")

    def __init__(self, conn: _Connection, req: Request, keep_alive: bool):
        self.conn = conn
        self.req = req
        self.keep_alive = keep_alive
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> None:
        self.finished = True  # the connection is gone: the answer, when it comes, is dropped

    def reply(self, resp: Response) -> None:
        if not self.finished:
            self.finished = True
            self.conn._reply(self.req, self.keep_alive, resp)


class HttpServer:
    """Serves ``handler`` on any number of listening sockets (TCP v4/v6 or AF_UNIX)."""

    def __init__(self, handler: Handler, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.handler = handler
        # A handler's synchronous answer to what it need not wait for (None: no such thing).
        self.answer_now = getattr(handler, "answer_now", None)
        # A handler's answer through a callback, without a task (None: no such way).
        self.begin = getattr(handler, "begin", None)
        self._servers: dict[int, asyncio.AbstractServer] = {}
        self._next_key = 0
        self._connections: set[_Connection] = set()
        self._per_source: dict[str, int] = {}  # open connections by client address
        self.refused = 0  # connections refused by a connection cap (503)
        self._closing = False
        self._drained: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def add_socket(self, sock: socket.socket) -> int:
        """Serve on an already bound and listening socket; returns a key for remove_socket."""
        if self._closing:
            raise RuntimeError("server is closing")
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        if sock.family == socket.AF_UNIX:
            srv = await self._loop.create_unix_server(lambda: _Connection(self), sock=sock,
                                                      start_serving=True)
        else:
            srv = await self._loop.create_server(lambda: _Connection(self), sock=sock,
                                                 start_serving=True)
        key = self._next_key
        self._next_key += 1
        self._servers[key] = srv
        return key

    async def remove_socket(self, key: int) -> None:
        """Stop accepting on that socket and close it; open connections stay."""
        srv = self._servers.pop(key, None)
        if srv is not None:
            srv.close()
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for srv in self._servers.values() for s in srv.sockets]

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop listening, let in-flight requests finish (up to drain_timeout), close the rest."""
        self._closing = True
        for key in list(self._servers):
            srv = self._servers.pop(key)
            srv.close()
        if self._loop is None:
            return
        for conn in list(self._connections):
            conn.close_if_idle()
        if self._connections:
            self._drained = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), drain_timeout)
            except asyncio.TimeoutError:
                pass
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        # Let connection_lost callbacks run.
        await asyncio.sleep(0)


def install_uvloop() -> bool:
    """Use uvloop for new event loops when it is importable."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run_daemon(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run a daemon: ``main(stop)`` sets up, awaits ``stop``, cleans up, returns its exit code.

    SIGTERM and SIGINT set ``stop``; a clean shutdown exits 0. The access lines still
    waiting to be written (mdtool/logs.py's DeferredLines) are written when ``stop`` is
    set, before the daemon's own lines about stopping, and at the end.
    """
    from mdtool.logs import flush_deferred
    install_uvloop()

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def stopping() -> None:
            flush_deferred()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        try:
            rc = await main(stop)
        finally:
            flush_deferred()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 0 if rc is None else int(rc)

    return asyncio.run(runner())

