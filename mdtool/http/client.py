"""A pooled keep-alive HTTP/1.1 client for one upstream (``unix:/path``, ``http://host:port``
or ``https://host:port`` with an :class:`ssl.SSLContext`).

Connections are reused last-in first-out so a warm one serves the next request. A request
that meets a pooled connection the peer had already closed (nothing received) is sent once
more on a fresh connection. Failures come in two kinds a caller maps to a status:
``UpstreamUnavailable`` (nothing listens: 502/503) and ``UpstreamTimeout`` (504).
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
import struct
from collections import deque
from urllib.parse import urlsplit

import httptools

from mdtool.http.headers import HOP_BY_HOP as _HOP_BY_HOP
from mdtool.http.types import Response

__all__ = ["UpstreamError", "UpstreamUnavailable", "UpstreamTimeout", "UpstreamTLSError",
           "UpstreamPool"]


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
        self.waiter: asyncio.Future | None = None
        self.received = False
        self.reusable = True
        self.head_only = False
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.until_eof = False
        self.headers_done = False
        self.used = 0

    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None
        self.reusable = False
        w = self.waiter
        if w is None or w.done():
            return
        if self.headers_done and self.until_eof:
            w.set_result(self._response())
        elif isinstance(exc, _ssl.SSLError):
            # TLS 1.3 sends the server's verdict on our certificate after the handshake.
            w.set_exception(UpstreamTLSError(f"the upstream ended TLS: {exc.reason or exc}; "
                                             "does it want nova_client_cert?"))
        elif not self.received and self.used > 1:
            w.set_exception(_Stale())
        else:
            w.set_exception(UpstreamUnavailable("upstream closed the connection"))

    def data_received(self, data):
        self.received = True
        if self.waiter is None or self.waiter.done():
            # Unsolicited bytes: the connection is no longer in a known state.
            self.reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.reusable = False
            if not self.waiter.done():
                self.waiter.set_exception(UpstreamUnavailable(f"bad response from upstream: {e}"))
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
            self._finish()

    def on_body(self, body: bytes):
        self.body.append(body)

    def on_message_complete(self):
        if self.status >= 200:
            self._finish()

    def _response(self) -> Response:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        headers = [(k, v) for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
        if self.head_only:
            for k, v in self.headers:
                if k.lower() == "content-length":
                    headers.append((k, v))
        return Response(self.status, body, headers)

    def _finish(self):
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(self._response())

    # used by the pool
    def start(self, data: bytes, head_only: bool) -> asyncio.Future:
        self.used += 1
        self.received = False
        self.headers_done = False
        self.until_eof = False
        self.headers = []
        self.body = []
        self.status = 0
        self.head_only = head_only
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter

    def close(self):
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


def _expire(fut: asyncio.Future, pool: "UpstreamPool") -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout(
            f"{pool.target} did not answer within {pool.read_timeout:g}s"))


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
        self._slots: asyncio.Semaphore | None = None
        self._busy: set[_UpstreamConnection] = set()
        self._closed = False

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

    async def request(self, method: str, target: str,
                      headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"") -> Response:
        """Send one request and return the whole response (hop-by-hop headers removed)."""
        if self._closed:
            raise UpstreamUnavailable("pool is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        data = self._encode_request(method, target, headers or (), body, self.host_header)
        head_only = method == "HEAD"
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self.read_timeout)
            except asyncio.TimeoutError:
                raise UpstreamTimeout(f"no free connection to {self.target}") from None
        else:
            await slots.acquire()
        try:
            for attempt in (0, 1):
                conn = self._take_idle() if attempt == 0 else None
                if conn is None:
                    conn = await self._connect()
                self._busy.add(conn)
                try:
                    fut = conn.start(data, head_only)
                    # A timer on the future costs less than wait_for's wrapper.
                    timer = loop.call_later(self.read_timeout, _expire, fut, self)
                    try:
                        resp = await fut
                    except _Stale:
                        continue
                    except BaseException:
                        conn.close()
                        raise
                    finally:
                        timer.cancel()
                finally:
                    self._busy.discard(conn)
                if conn.reusable and conn.transport is not None and not self._closed:
                    conn.waiter = None
                    self._idle.append(conn)
                else:
                    conn.close()
                return resp
            raise UpstreamUnavailable(f"{self.target} closed the connection")
        finally:
            slots.release()

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        for conn in list(self._busy):
            conn.close()
        await asyncio.sleep(0)

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
