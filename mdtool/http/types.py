"""The request/response shapes shared by mdtool's HTTP daemons (proxy, agent, metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Awaitable, Callable


@dataclass
class Request:
    method: str
    target: str  # raw request target, e.g. "/openstack/latest/meta_data.json?x=1"
    headers: list[tuple[str, str]]  # in arrival order, original case
    body: bytes = b""
    peer: str = ""  # client IP address (no port); IPv6 without scope
    version: str = "1.1"
    local: str = ""  # the address the client connected to

    # A request is never changed once made; what is read of it several times (and, for
    # a connection's repeated request, once per arrival: mdtool/http/server.py) is kept.

    @cached_property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        """The first value of field ``name`` (any case), or None."""
        return self._first_values.get(name.lower())

    @cached_property
    def _first_values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for k, v in self.headers:
            values.setdefault(k.lower(), v)
        return values


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)  # no Content-Length needed
    # IP TTL / IPv6 hop limit for this reply's packets (IMDSv2 token replies); the server
    # restores the default before the next reply on the same connection.
    hop_limit: int | None = None
    # These exact bytes on the wire, prebuilt by serialize_response for a keep-alive
    # HTTP/1.1 answer to a GET (the fast path's cache of an answer); None: serialise.
    wire: bytes | None = field(default=None, compare=False, repr=False)

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=UTF-8"):
        return cls(status, text.encode(), [("Content-Type", content_type)])


Handler = Callable[[Request], Awaitable[Response]]
