"""The fast path: where mdtool serves its own metadata (``metadata_backend = local``, the
default), the proxy answers in its own process.

The agent's logic (:class:`~mdtool.agent.handler.AgentHandler`: the port index, the HMAC
signature Nova checks) and the metadata service's (:class:`~mdtool.metadata.service.
MetadataService`: the documents, cached per instance, and password POSTs written through to
the registry) run in the proxy process, chained by :class:`InProcess` instead of a Unix socket
and an HTTP hop each. It is the same code as the wire-compatible chain, so the answers,
status codes and signatures are the same; two parses, two serialisations, two socket round
trips and two access lines per request are gone (the proxy's line, one per request, stays). Both halves follow the registry's change
feed, so an instance or port change is served within a second, as in the chain.

``metadata_backend = nova``, or a remote Nova (``nova_metadata_host``), keeps the chain:
proxy -> agent (Unix socket) -> Nova or ``mdtool metadata``.
"""

from __future__ import annotations

import asyncio
import logging

from mdtool.errors import MdtoolError
from mdtool.http.types import Handler, Request, Response

log = logging.getLogger("mdtool.proxy")


class InProcess:
    """An upstream (``request(method, target, headers, body)``) that calls a handler of this
    process: what the agent would send over a socket, handed over as a Request."""

    __slots__ = ("handle",)

    def __init__(self, handle: Handler):
        self.handle = handle

    async def request(self, method: str, target: str, headers: list[tuple[str, str]],
                      body: bytes) -> Response:
        return await self.handle(Request(method, target, headers, body, peer="127.0.0.1"))

    async def close(self) -> None:
        pass


class LocalBackend:
    """The proxy's upstream in fast-path mode: agent and metadata service in this process.

    ``await open(stop)`` reads the registry once and starts following it; ``request()`` is
    what the proxy's handler calls for every request; ``close()`` stops the followers."""

    # Descriptors held beside the clients' (the proxy's connection budget counts them, as
    # it counts an upstream pool's sockets): the registry's database, its -wal and -shm.
    size = 3

    def __init__(self, config):
        from mdtool.agent.handler import AgentHandler, IndexFollower
        from mdtool.metadata.daemon import make_service
        from mdtool.registry import open_registry

        registry = open_registry(config.db_url)
        secret = config.shared_secret()
        self.follower = IndexFollower(registry)
        self.service = make_service(config, registry)
        # One access line a request, the proxy's: the chain's two more would cost more than
        # the rest of the request (measured: 5x fewer requests/s with them).
        self.agent = AgentHandler(self.follower, InProcess(self.service.handle), secret,
                                  log_requests=False)
        self._tasks: list[asyncio.Task] = []
        self._feed = None
        self._registry = registry

    async def open(self, stop: asyncio.Event) -> None:
        from mdtool.metadata.daemon import follow_revisions
        try:
            await self.follower.refresh(force=True)
            await self.service.refresh()
        except MdtoolError as e:  # the followers retry; 404 until the registry reads
            log.error("reading the registry failed (the followers retry): %s", e)
        changes = getattr(self._registry, "changes", None)
        self._feed = changes() if callable(changes) else None
        self._tasks = [asyncio.create_task(self.follower.run(stop)),
                       asyncio.create_task(follow_revisions(self.service, stop, self._feed))]

    async def request(self, method: str, target: str, headers: list[tuple[str, str]],
                      body: bytes) -> Response:
        return await self.agent.handle(Request(method, target, headers, body, peer="127.0.0.1"))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self.follower.close()
        self.service.close()
        if self._feed is not None:
            self._feed.close()
