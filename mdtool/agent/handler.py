"""The agent's request logic: find the instance, sign, forward to Nova, relay the answer.

The upstream headers are built from the allow-list of :mod:`mdtool.http.headers`, as
Neutron's agent builds them from scratch: the agent alone says which instance and project
a request is for, and signs that. Lookups answer from an in-memory
:class:`~mdtool.agent.index.PortIndex`; :class:`IndexFollower` rebuilds it off the event
loop whenever the registry revision moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol

from mdtool import model
from mdtool.agent.index import Match, PortIndex
from mdtool.agent.sign import sign_instance_id
from mdtool.errors import NotFound
from mdtool.http import headers as fields
from mdtool.http.client import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mdtool.http.headers import HOP_BY_HOP
from mdtool.http.types import Request, Response
from mdtool.logs import DeferredLines, RepeatGate

log = logging.getLogger("mdtool.agent")
access_lines = DeferredLines(log)  # one line a request, written within a few ms


class AgentSource(Protocol):
    def revision(self) -> int: ...
    def list_ports(self, network: str | None = None) -> list[model.Port]: ...
    def get_instance(self, ref: str) -> model.Instance: ...


class Upstream(Protocol):
    async def request(self, method: str, target: str, headers: list[tuple[str, str]],
                      body: bytes) -> Response: ...


def _last_value(req: Request, name: str) -> str | None:
    """The last comma-separated item over every copy of a header.

    A proxy in front appends its own value (haproxy's ``option forwardfor`` adds a header,
    it does not replace one), so the trustworthy item is the last, never the first.
    """
    lname = name.lower()
    values = [v for k, v in req.headers if k.lower() == lname]
    if not values:
        return None
    items = [i.strip() for i in ",".join(values).split(",") if i.strip()]
    return items[-1] if items else ""


def _text(status: int, text: str) -> Response:
    return Response.text(status, text)


def forward_headers(req: Request, source_ip: str, match: Match, secret: str) -> list[tuple[str, str]]:
    """Nova's headers for one request: the allowed end-to-end fields, then the identity."""
    out = fields.end_to_end(req.headers)
    out += [(fields.FORWARDED_FOR, source_ip),
            (fields.INSTANCE_ID, match.instance_id),
            (fields.TENANT_ID, match.project_id),
            (fields.SIGNATURE, sign_instance_id(secret, match.instance_id))]
    return out


class AgentHandler:
    """``await handler.handle(request) -> Response``; logs one line per request, unless
    ``log_requests`` is False (the fast path: the proxy in front logs that request already)."""

    def __init__(self, index: Callable[[], PortIndex], upstream: Upstream, secret: str, *,
                 log_requests: bool = True):
        self.index = index
        self.upstream = upstream
        self.secret = secret
        self.log_requests = log_requests
        # Repeated 4xx of one (network, source) are summarised, as the proxy does: an
        # instance asking for what it may not have costs two lines per window, not one
        # per request. Windows that ended are reported with the next request.
        self.repeats = RepeatGate(access_lines, "network=%s source=%s: %s more %d in %.0f s")

    async def handle(self, req: Request) -> Response:
        start = time.monotonic()
        network_id = _last_value(req, fields.NETWORK_ID)
        source_ip = _last_value(req, fields.FORWARDED_FOR)
        instance_id = "-"
        try:
            resp, instance_id = await self._serve(req, network_id, source_ip)
        except Exception:
            log.exception("request %s %s failed", req.method, req.path)
            resp = _text(500, "The metadata agent failed to handle the request.")
        if self.log_requests:
            self._log(req, resp, network_id, source_ip, instance_id, start)
        return resp

    def _log(self, req: Request, resp: Response, network_id: str | None, source_ip: str | None,
             instance_id: str, start: float) -> None:
        now = time.monotonic()
        # inspect's probes get their own (tagged) line: never counted in a 4xx summary
        tag = fields.probe_tag(req.header("User-Agent"))
        if tag or self.repeats.allow((network_id or "-", source_ip or "-"), resp.status, now):
            access_lines.info("network=%s source=%s instance=%s %s %s status=%d ms=%.1f%s",
                              network_id or "-", source_ip or "-", instance_id, req.method,
                              req.path, resp.status, (now - start) * 1000.0, tag)

    async def _serve(self, req: Request, network_id: str | None,
                     source_ip: str | None) -> tuple[Response, str]:
        if not network_id:
            return _text(400, "X-Neutron-Network-ID header is missing from the request."), "-"
        if not source_ip:
            return _text(400, "X-Forwarded-For header is missing from the request."), "-"
        matches = self.index().lookup(network_id, source_ip)
        if not matches:
            # A port created a moment ago may not be in the index yet (the follower polls):
            # ask whether the registry moved before answering 404 (at most every MISS_RECHECK).
            recheck = getattr(self.index, "refresh_on_miss", None)
            if recheck is not None and await recheck():
                matches = self.index().lookup(network_id, source_ip)
        if len(matches) != 1:
            if len(matches) > 1:
                log.warning("%d ports match %s on network %s: refusing to guess",
                            len(matches), source_ip, network_id)
            return _text(404, f"Instance was not found on network {network_id}"), "-"
        match = matches[0]
        headers = forward_headers(req, source_ip, match, self.secret)
        try:
            up = await self.upstream.request(req.method, req.target, headers, req.body)
        except UpstreamTimeout as e:
            log.warning("metadata service timed out: %s", e)
            return _text(504, "The metadata service did not answer in time."), match.instance_id
        except UpstreamUnavailable as e:
            log.warning("metadata service unreachable: %s", e)
            return _text(503, "The metadata service is unavailable."), match.instance_id
        except UpstreamError as e:
            log.warning("metadata service gave no usable answer: %s", e)
            return _text(502, "The metadata service gave no usable answer."), match.instance_id
        if up.status == 403:
            log.warning("the metadata service refused the signature for instance %s: does "
                        "metadata_proxy_shared_secret match on both sides?", match.instance_id)
        relayed = [(k, v) for k, v in up.headers if k.lower() not in HOP_BY_HOP
                   or (req.method == "HEAD" and k.lower() == "content-length")]
        return Response(up.status, up.body, relayed), match.instance_id


class IndexFollower:
    """Holds the current index; ``run(stop)`` rebuilds it when the registry revision moves.

    Registry calls are synchronous, so they run on one worker thread and the event loop
    keeps answering from the previous index meanwhile. When the source offers
    ``changes()`` (the registry: PostgreSQL LISTEN/NOTIFY, or a revision poll on SQLite)
    the follower sleeps on that feed, so a change made on another node arrives at once
    and an idle agent reads the database once per fallback interval only. ``interval``
    overrides the feed's poll interval.
    """

    def __init__(self, source: AgentSource, interval: float | None = None):
        self.source = source
        self.interval = interval
        self.current = PortIndex([], revision=-1)
        self._last_miss_check = -MISS_RECHECK
        self.feed = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdtool-registry")

    def __call__(self) -> PortIndex:
        return self.current

    def build(self) -> PortIndex:
        """Read the registry (blocking) and return a fresh index."""
        revision = self.source.revision()
        ports = self.source.list_ports()
        projects: dict[str, str] = {}
        for port in ports:
            if port.device_id and not port.project_id and port.device_owner != model.DHCP_OWNER \
                    and port.device_id not in projects:
                try:
                    projects[port.device_id] = self.source.get_instance(port.device_id).project_id
                except NotFound:
                    projects[port.device_id] = ""
        return PortIndex(ports, revision=revision, instance_projects=projects)

    async def refresh_on_miss(self) -> bool:
        """After a lookup missed: rebuild when the registry moved; True when it did. Rate
        limited, so a source asking for what does not exist costs one revision query per
        MISS_RECHECK seconds at most, not one per request."""
        now = time.monotonic()
        if now - self._last_miss_check < MISS_RECHECK:
            return False
        self._last_miss_check = now
        return await self.refresh()

    async def refresh(self, force: bool = False) -> bool:
        loop = asyncio.get_running_loop()
        if not force:
            revision = await loop.run_in_executor(self._executor, self.source.revision)
            if revision == self.current.revision:
                return False
        start = time.monotonic()
        index = await loop.run_in_executor(self._executor, self.build)
        self.current = index
        log.info("port index rebuilt: revision %d, %d instance ports (%.1f ms)",
                 index.revision, index.port_count, (time.monotonic() - start) * 1000.0)
        return True

    def _open_feed(self):
        changes = getattr(self.source, "changes", None)
        feed = changes() if callable(changes) else _SleepFeed(DEFAULT_POLL)
        if self.interval is not None:
            feed.interval = self.interval
        return feed

    async def run(self, stop: asyncio.Event) -> None:
        if self.feed is None:
            self.feed = self._open_feed()
        failing = False
        while not stop.is_set():
            try:
                await self.refresh()
                if failing:
                    log.info("registry readable again")
                failing = False
            except Exception as e:  # keep serving the last good index
                if not failing:
                    log.error("reading the registry failed (serving the last index): %s", e)
                failing = True
            await self.feed.wait(self.feed.interval, stop)

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


DEFAULT_POLL = 0.25  # seconds; a source without change notifications is polled this often
MISS_RECHECK = 0.2  # seconds between two registry checks caused by lookups that missed


class _SleepFeed:
    """A source without ``changes()``: poll every ``interval``."""

    def __init__(self, interval: float):
        self.interval = interval

    async def wait(self, timeout: float, stop: asyncio.Event) -> bool:
        try:
            await asyncio.wait_for(stop.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return True

    def close(self) -> None:
        pass

