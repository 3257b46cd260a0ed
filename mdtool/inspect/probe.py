"""Small blocking HTTP requests for the health checks: to the agent's Unix socket, to the
metadata service, and from inside a namespace to the proxy. Read only: GET requests."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from mdtool import __version__
from mdtool.http.headers import PROBE_AGENT

TIMEOUT = 1.0
USER_AGENT = f"{PROBE_AGENT}/{__version__}"
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Answer:
    """An HTTP status, or why there was none."""
    status: int | None
    body: bytes = b""
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else f"no answer: {self.error}"


def _exchange(sock: socket.socket, host: str, path: str, headers: dict[str, str]) -> Answer:
    conn = http.client.HTTPConnection(host, timeout=TIMEOUT)
    conn.sock = sock
    try:
        # tagged: each daemon's access line says probe=mdtool-inspect, not an instance's
        conn.request("GET", path, headers={**headers, "User-Agent": USER_AGENT,
                                           "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY)
        return Answer(resp.status, body)
    except (OSError, http.client.HTTPException) as e:
        return Answer(None, error=_reason(e))
    finally:
        conn.close()


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return f"timed out after {TIMEOUT:.0f}s"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _connected(family: int, address, make=None) -> socket.socket:
    sock = make() if make else socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def get_unix(path: str, target: str, headers: dict[str, str] | None = None) -> Answer:
    try:
        sock = _connected(socket.AF_UNIX, path)
    except OSError as e:
        return Answer(None, error=_reason(e))
    return _exchange(sock, "localhost", target, headers or {})


def get_url(url: str, target: str, headers: dict[str, str] | None = None) -> Answer:
    """GET ``target`` from the base URL ``url`` (http or ``unix:PATH``; https is reported,
    not probed)."""
    if url.startswith("unix:"):
        return get_unix(url[5:], target, headers)
    u = urlsplit(url)
    if u.scheme != "http":
        return Answer(None, error=f"{u.scheme}:// is not probed")
    host, port = u.hostname or "127.0.0.1", u.port or 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        fam, _, _, _, addr = infos[0]
        sock = _connected(fam, addr)
    except OSError as e:
        return Answer(None, error=_reason(e))
    prefix = u.path.rstrip("/")
    return _exchange(sock, u.netloc, prefix + target, headers or {})


def get_in_netns(netns: str, host: str, port: int, target: str,
                 headers: dict[str, str] | None = None) -> Answer:
    """GET from inside ``netns``: the socket is created there (it stays there)."""
    from mdtool.netns.switch import run_in_netns
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = run_in_netns(netns, lambda: socket.socket(fam, socket.SOCK_STREAM))
    except Exception as e:
        return Answer(None, error=str(e))
    try:
        sock.settimeout(TIMEOUT)
        sock.connect((host, port))
    except OSError as e:
        sock.close()
        return Answer(None, error=_reason(e))
    return _exchange(sock, host if fam == socket.AF_INET else f"[{host}]", target, headers or {})
