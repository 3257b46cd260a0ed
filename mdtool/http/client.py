"""A pooled keep-alive HTTP/1.1 client for one upstream (``unix:/path``, ``http://host:port``
or ``https://host:port`` with an :class:`ssl.SSLContext`).

Connections are reused last-in first-out so a warm one serves the next request. An
idempotent request that meets a pooled connection the peer had already closed (nothing of
an answer received) is sent once more, on a new connection; a request that must not be
sent twice (POST) gets a connection of its own. Failures come in two kinds a caller maps
to a status: ``UpstreamUnavailable`` (nothing listens: 502/503) and ``UpstreamTimeout`` (504).

Two ways in: ``await pool.request(...)``, and ``pool.begin(..., done)`` for a caller
without a task (the proxy's protocol callbacks): on a warm connection the request is
written at once and ``done(response, error)`` runs from the answer's own callback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
import struct
from collections import deque
from typing import Callable
from urllib.parse import urlsplit

import httptools

from mdtool.http.headers import HOP_BY_HOP as _HOP_BY_HOP
from mdtool.http.types import Response

__all__ = ["UpstreamError", "UpstreamUnavailable", "UpstreamTimeout", "UpstreamTLSError",
           "UpstreamPool", "IDEMPOTENT"]

log = logging.getLogger("mdtool.http.client")

# Methods a request of which may be sent again when a reused connection turns out closed
# (RFC 9110 9.2.2): nothing else ever goes on a pooled connection. (A tuple: a method,
# not a header set of mdtool.http.headers; GET, nearly every request, first.)
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")

# done(response, None) or done(None, error): how an answer is handed to begin()'s caller.
Done = Callable[["Response | None", "BaseException | None"], None]


class UpstreamError(Exception):
    """The upstream did not give a usable answer."""


class UpstreamUnavailable(UpstreamError):
    """Connecting failed (no socket, refused) or the upstream broke the connection."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""


class UpstreamTLSError(UpstreamUnavailable):
    """The TLS handshake failed: the upstream's certificate is not trusted, or it refused ours."""


class _Stale(Exception):
    """A reused connection was closed by the peer before any byte came back."""


class _UpstreamConnection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reply: Done | None = None  # the exchange in progress hands its outcome here
        self.received = False
        self.reusable = True
        self.head_only = False
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.until_eof = False
        self.headers_done = False
        self.used = 0
        # The exchange's deadline, watched by one timer kept across exchanges and moved
        # on when it fires early (a timer made and cancelled a request was a visible
        # part of the chain's cost; see also the server's _arm).
        self.pool: "UpstreamPool | None" = None
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None
        self.reusable = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.reply is None:
            return
        if self.headers_done and self.until_eof:
            self._settle(self._response(), None)
        elif isinstance(exc, _ssl.SSLError):
            # TLS 1.3 sends the server's verdict on our certificate after the handshake.
            self._settle(None, UpstreamTLSError(f"the upstream ended TLS: {exc.reason or exc}; "
                                                "does it want nova_client_cert?"))
        elif not self.received and self.used > 1:
            self._settle(None, _Stale())
        else:
            self._settle(None, UpstreamUnavailable("upstream closed the connection"))

    def data_received(self, data):
        self.received = True
        if self.reply is None:
            # Unsolicited bytes: the connection is no longer in a known state.
            self.reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.reusable = False
            self._settle(None, UpstreamUnavailable(f"bad response from upstream: {e}"))
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes):
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self):
        self.headers_done = True
        self.status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.reusable = False
        if self.status < 200:
            # Interim answers (100 Continue) are dropped; the final one follows.
            self.headers = []
            self.headers_done = False
            return
        framed = False
        for name, _ in self.headers:
            lname = name.lower()
            if lname == "content-length" or lname == "transfer-encoding":
                framed = True
        if not framed and self.status not in (204, 304):
            self.until_eof = True
            self.reusable = False
        if self.head_only:
            # The parser cannot be told the body is absent; finish here, never reuse.
            self.reusable = False
            self._settle(self._response(), None)

    def on_body(self, body: bytes):
        self.body.append(body)

    def on_message_complete(self):
        if self.status >= 200 and self.reply is not None:
            self._settle(self._response(), None)

    def _response(self) -> Response:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        headers = [(k, v) for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
        if self.head_only:
            for k, v in self.headers:
                if k.lower() == "content-length":
                    headers.append((k, v))
        return Response(self.status, body, headers)

    def _settle(self, resp: Response | None, error: BaseException | None) -> None:
        """The exchange's outcome, handed over once; bytes after it are unsolicited."""
        reply, self.reply = self.reply, None
        if reply is not None:
            reply(resp, error)

    # used by the pool
    def start(self, pool: "UpstreamPool", data: bytes, head_only: bool, reply: Done) -> None:
        """Write ``data``; ``reply`` gets the answer, or a failure (UpstreamTimeout after
        the pool's read_timeout)."""
        self.pool = pool
        self.deadline = self.loop.time() + pool.read_timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
        self.used += 1
        self.received = False
        self.headers_done = False
        self.until_eof = False
        self.headers = []
        self.body = []
        self.status = 0
        self.head_only = head_only
        self.reply = reply
        self.transport.write(data)

    def _on_timer(self) -> None:
        self.timer = None
        if self.reply is None:
            return  # no exchange in progress: the next one arms a timer
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        # The answer is overdue: fail the exchange and drop the connection.
        pool = self.pool
        self._settle(None, UpstreamTimeout(
            f"{pool.target} did not answer within {pool.read_timeout:g}s"))
        self.close()

    def close(self):
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


def _into(fut: asyncio.Future) -> Done:
    """A Done that settles ``fut`` (unless it is settled already: cancelled, timed out)."""
    def done(resp: Response | None, error: BaseException | None) -> None:
        if not fut.done():
            if error is None:
                fut.set_result(resp)
            else:
                fut.set_exception(error)
    return done


def _hand(done: Done, resp: Response | None, error: BaseException | None) -> None:
    """Call begin()'s ``done``; a failure in it is the caller's bug, logged, never the
    pool's state."""
    try:
        done(resp, error)
    except Exception:
        log.exception("the caller's answer callback failed")


class UpstreamPool:
    """Keep-alive connections to one upstream; at most ``size`` at a time."""

    def __init__(self, url_or_unix_path: str, *, size: int = 64, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, peer_uids: frozenset[int] | None = None,
                 ssl: "ssl.SSLContext | None" = None):
        """``peer_uids``: on a Unix socket, the users the listening process may run as
        (SO_PEERCRED); a connection to anyone else's listener fails as unavailable.
        ``ssl``: the context for an ``https://`` upstream (required there, refused elsewhere)."""
        self.target = url_or_unix_path
        self.peer_uids = peer_uids
        self.ssl = ssl
        if url_or_unix_path.startswith("unix:"):
            self.unix_path: str | None = url_or_unix_path[5:]
            self.host = self.port = None
            self.host_header = "localhost"
        elif url_or_unix_path.startswith("/"):
            self.unix_path = url_or_unix_path
            self.host = self.port = None
            self.host_header = "localhost"
        else:
            parts = urlsplit(url_or_unix_path)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"unsupported upstream {url_or_unix_path!r} "
                                 "(expected unix:/path, http://host:port or https://host:port)")
            if (parts.scheme == "https") != (ssl is not None):
                raise ValueError(f"{url_or_unix_path!r}: an https:// upstream needs a TLS "
                                 "context, and only an https:// one takes it")
            self.unix_path = None
            self.host = parts.hostname
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
            self.host_header = parts.netloc
        self.size = size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: deque[_UpstreamConnection] = deque()
        self._in_use = 0  # exchanges holding one of the ``size`` slots
        self._waiting: deque[asyncio.Future] = deque()  # for a slot, first come first served
        self._busy: set[_UpstreamConnection] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> _UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            if self.unix_path is not None:
                coro = loop.create_unix_connection(lambda: _UpstreamConnection(loop),
                                                   self.unix_path)
            elif self.ssl is not None:
                coro = loop.create_connection(lambda: _UpstreamConnection(loop), self.host,
                                              self.port, ssl=self.ssl, server_hostname=self.host)
            else:
                coro = loop.create_connection(lambda: _UpstreamConnection(loop),
                                              self.host, self.port)
            _, conn = await asyncio.wait_for(coro, self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"connecting to {self.target} timed out") from None
        except _ssl.SSLCertVerificationError as e:
            raise UpstreamTLSError(
                f"TLS to {self.target}: its certificate is not trusted ({e.verify_message}); "
                "check auth_ca_cert") from None
        except _ssl.SSLError as e:
            raise UpstreamTLSError(f"TLS to {self.target} failed: {e.reason or e}") from None
        except OSError as e:
            raise UpstreamUnavailable(
                f"cannot connect to {self.target}: {e.strerror or e}") from None
        if self.peer_uids is not None and self.unix_path is not None:
            self._check_peer(conn)
        return conn

    def _check_peer(self, conn: _UpstreamConnection) -> None:
        sock = conn.transport.get_extra_info("socket")
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        if uid not in self.peer_uids:
            conn.close()
            raise UpstreamUnavailable(f"{self.unix_path} is held by uid {uid} (pid {pid}), "
                                      "not by root: refusing to talk to it")

    def _take_idle(self) -> _UpstreamConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and conn.reusable \
                    and not conn.transport.is_closing():
                return conn
        return None

    @staticmethod
    def _encode_request(method: str, target: str, headers, body: bytes,
                        host_header: str) -> bytes:
        parts = [f"{method} {target} HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers:
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                continue
            if lname == "host":
                has_host = True
            parts.append(f"{name}: {value}\r\n")
        if not has_host:
            parts.append(f"Host: {host_header}\r\n")
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            parts.append(f"Content-Length: {len(body)}\r\n")
        parts.append("\r\n")
        head = "".join(parts)
        try:
            raw = head.encode("latin-1")
        except UnicodeEncodeError:
            raw = head.encode("utf-8")
        return raw + body if body else raw

    # slots ------------------------------------------------------------------------------

    async def _acquire(self) -> None:
        if self._in_use < self.size and not self._waiting:
            self._in_use += 1
            return
        fut = self._loop.create_future()
        self._waiting.append(fut)
        timer = self._loop.call_later(self.read_timeout, _into(fut), None,
                                      UpstreamTimeout(f"no free connection to {self.target}"))
        try:
            await fut  # a releasing exchange handed its slot over
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release()  # handed over, then cancelled: pass it on
            else:
                try:
                    self._waiting.remove(fut)
                except ValueError:
                    pass
            raise
        finally:
            timer.cancel()

    def _release(self) -> None:
        waiting = self._waiting
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._in_use -= 1

    def _keep(self, conn: _UpstreamConnection) -> None:
        """After an answer: back to the idle connections, or closed."""
        if conn.reusable and conn.transport is not None and not self._closed \
                and len(self._idle) < self.size:
            self._idle.append(conn)
        else:
            conn.close()

    # one exchange ----------------------------------------------------------------------

    async def _exchange(self, conn: _UpstreamConnection, data: bytes,
                        head_only: bool) -> Response:
        """``data`` on ``conn`` and its answer; _Stale when a reused connection was closed."""
        fut = self._loop.create_future()
        self._busy.add(conn)
        conn.start(self, data, head_only, _into(fut))  # its timer, not wait_for's wrapper
        try:
            resp = await fut
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        self._keep(conn)
        return resp

    async def _send(self, method: str, data: bytes) -> Response:
        """One request, holding a slot: a warm connection when the method may be sent
        twice (and then once more on a new one if that one turns out closed), else a
        connection of its own."""
        head_only = method == "HEAD"
        conn = self._take_idle() if method in IDEMPOTENT else None
        if conn is not None:
            try:
                return await self._exchange(conn, data, head_only)
            except _Stale:
                pass  # nothing of an answer came: the request was never taken
        try:
            return await self._exchange(await self._connect(), data, head_only)
        except _Stale:  # a new connection is never stale: not reached
            raise UpstreamUnavailable(f"{self.target} closed the connection") from None

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which the pool's futures and timers are made on. A pool that
        outlived its loop (a program running several, one after the other, as the interop
        tests do) starts afresh on the new one: its connections, slots and waiters belonged
        to the old loop and can never complete."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                self._idle.clear()
                self._busy.clear()
                self._waiting.clear()
                self._in_use = 0
            self._loop = loop
        return loop

    # the two ways in -------------------------------------------------------------------

    async def request(self, method: str, target: str,
                      headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"") -> Response:
        """Send one request and return the whole response (hop-by-hop headers removed)."""
        if self._closed:
            raise UpstreamUnavailable("pool is closed")
        self._bind()
        data = self._encode_request(method, target, headers or (), body, self.host_header)
        await self._acquire()
        try:
            return await self._send(method, data)
        finally:
            self._release()

    def begin(self, method: str, target: str, headers: list[tuple[str, str]],
              body: bytes, done: Done) -> None:
        """:meth:`request` for a caller without a task: ``done(response, None)`` or
        ``done(None, error)`` (an UpstreamError) is called once, later, never from here.

        With a free slot and a warm connection the request is written now and ``done``
        runs from the answer's own callback: no task, no future. Otherwise (no warm
        connection, all slots taken, a method that must not be sent twice) a task does
        what request() does."""
        loop = self._bind()
        if not self._closed and self._in_use < self.size and not self._waiting \
                and method in IDEMPOTENT:
            conn = self._take_idle()
            if conn is not None:
                self._in_use += 1
                data = self._encode_request(method, target, headers, body, self.host_header)
                self._busy.add(conn)

                def settle(resp: Response | None, error: BaseException | None) -> None:
                    self._busy.discard(conn)
                    if error is None:
                        self._keep(conn)
                    else:
                        conn.close()
                        if isinstance(error, _Stale):
                            # Nothing of an answer came: once more, on a new connection
                            # (the slot goes with it).
                            loop.create_task(self._resend(method, data, done))
                            return
                    self._release()
                    _hand(done, resp, error)

                conn.start(self, data, method == "HEAD", settle)
                return
        loop.create_task(self._relay(method, target, headers, body, done))

    async def _resend(self, method: str, data: bytes, done: Done) -> None:
        try:
            resp = await self._exchange(await self._connect(), data, method == "HEAD")
        except _Stale:
            _hand(done, None, UpstreamUnavailable(f"{self.target} closed the connection"))
        except UpstreamError as e:
            _hand(done, None, e)
        else:
            _hand(done, resp, None)
        finally:
            self._release()

    async def _relay(self, method: str, target: str, headers: list[tuple[str, str]],
                     body: bytes, done: Done) -> None:
        try:
            resp = await self.request(method, target, headers, body)
        except UpstreamError as e:
            _hand(done, None, e)
        else:
            _hand(done, resp, None)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        for conn in list(self._busy):
            conn.close()
        while self._waiting:
            _into(self._waiting.popleft())(None, UpstreamUnavailable("pool is closed"))
        await asyncio.sleep(0)

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
