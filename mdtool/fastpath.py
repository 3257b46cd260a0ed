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

On top, :class:`AnswerCache` keeps the bytes of the answers that path gave (200s to a
bodiless GET), keyed by everything of a request that reaches the answer path: network,
source address, target and the end-to-end header fields. A hit is written by the server
straight from its protocol callback, with the proxy's own checks (rate limit, IMDSv2
token), access line and metrics as for any request. Every cached answer is dropped the
moment the port index is rebuilt or the metadata service drops a document (a revision
moved, a password was written): what the answer path would say changes only then.

``metadata_backend = nova``, or a remote Nova (``nova_metadata_host``), keeps the chain:
proxy -> agent (Unix socket) -> Nova or ``mdtool metadata``.
"""

from __future__ import annotations

import asyncio
import logging

from mdtool.errors import MdtoolError
from mdtool.http.server import serialize_response
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


MAX_CACHED_BYTES = 8 << 20  # answers kept at most (bodies and heads), all networks
ENTRY_OVERHEAD = 256        # bytes an entry costs beside its wire bytes (key, objects)


class AnswerCache:
    """Prebuilt answers of the in-process path, valid while what they were made from is.

    ``key`` is built by the caller from every part of a request the answer path reads;
    ``state()`` is taken before asking that path and handed to :meth:`put`, so an answer
    computed while the index or the documents changed is never kept."""

    __slots__ = ("_index", "_generation", "_state", "_entries", "_bytes", "max_bytes", "hits")

    def __init__(self, index, documents, max_bytes: int = MAX_CACHED_BYTES):
        self._index = index  # the IndexFollower: .current is replaced on every rebuild
        self._generation = documents  # the MetadataService: .generation moves on a drop
        self._state: tuple = (None, None)
        self._entries: dict[tuple, Response] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self.hits = 0

    def state(self) -> tuple:
        """What every answer depends on: the index (by identity) and the documents' generation."""
        return self._index.current, self._generation.generation

    def _same(self, state: tuple) -> bool:
        index, generation = self.state()
        return state[0] is index and state[1] == generation

    def _current(self) -> bool:
        """False (and the cache emptied) when what the entries were made from has changed."""
        if not self._entries or self._same(self._state):
            return True
        self._entries.clear()
        self._bytes = 0
        return False

    def get(self, key: tuple) -> Response | None:
        if not self._current():
            return None
        resp = self._entries.get(key)
        if resp is not None:
            self.hits += 1
        return resp

    def _drop(self, key: tuple) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.wire) + ENTRY_OVERHEAD

    def put(self, key: tuple, state: tuple, resp: Response) -> None:
        """Keep ``resp`` (a 200 to a bodiless GET) when nothing changed since ``state``."""
        if not self._same(state):
            return
        self._current()
        if not self._entries:
            self._state = state
        wire = serialize_response(resp)
        size = len(wire) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        while self._bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))  # the oldest first
        self._drop(key)
        self._entries[key] = Response(resp.status, resp.body, resp.headers, wire=wire)
        self._bytes += size

    def __len__(self) -> int:
        return len(self._entries)


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
        self.cache = AnswerCache(self.follower, self.service)
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
