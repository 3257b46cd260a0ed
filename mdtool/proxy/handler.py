"""One network's request path: rewrite headers, forward to the agent, map failures."""

from __future__ import annotations

import logging
import time

from mdtool.http.client import UpstreamPool, UpstreamTimeout, UpstreamUnavailable
from mdtool.http.types import Request, Response
from mdtool.proxy.ratelimit import RateLimiter
from mdtool.proxy.rules import upstream_headers

log = logging.getLogger("mdtool.proxy")
access_log = logging.getLogger("mdtool.proxy.access")

_CT = [("Content-Type", "text/plain; charset=UTF-8")]
_BAD_GATEWAY = b"Bad Gateway: the metadata agent is not available\n"
_GATEWAY_TIMEOUT = b"Gateway Timeout: the metadata agent did not answer in time\n"
_TOO_MANY = b"Too Many Requests: metadata rate limit exceeded\n"
_WARN_EVERY = 10.0  # seconds between repeated upstream warnings of one network


class ProxyHandler:
    """Forwards requests that arrive on ``network_id`` to the agent behind ``pool``.

    Keeps per-status counts and the summed duration for the metrics endpoint.
    """

    __slots__ = ("pool", "network_id", "limiter", "status_counts", "duration_sum",
                 "_last_warn", "_suppressed")

    def __init__(self, pool: UpstreamPool, network_id: str,
                 limiter: RateLimiter | None = None):
        self.pool = pool
        self.network_id = network_id
        self.limiter = limiter
        self.status_counts: dict[int, int] = {}
        self.duration_sum = 0.0
        self._last_warn = -_WARN_EVERY
        self._suppressed = 0

    def _warn(self, error: Exception) -> None:
        # An agent that is down fails every request: say so, not a line per request.
        now = time.monotonic()
        if now - self._last_warn < _WARN_EVERY:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since last report)" if self._suppressed else ""
        self._last_warn = now
        self._suppressed = 0
        log.warning("network %s: %s%s", self.network_id, error, more)

    async def __call__(self, req: Request) -> Response:
        start = time.monotonic()
        if self.limiter is not None and not self.limiter.allow(req.peer):
            resp = Response(429, _TOO_MANY, list(_CT))
        else:
            headers = upstream_headers(req.headers, req.peer, self.network_id)
            try:
                resp = await self.pool.request(req.method, req.target, headers, req.body)
            except UpstreamTimeout as e:
                self._warn(e)
                resp = Response(504, _GATEWAY_TIMEOUT, list(_CT))
            except UpstreamUnavailable as e:
                self._warn(e)
                resp = Response(502, _BAD_GATEWAY, list(_CT))
        elapsed = time.monotonic() - start
        self.duration_sum += elapsed
        counts = self.status_counts
        status = resp.status
        counts[status] = counts.get(status, 0) + 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("network=%s src=%s %s %s %d %.1fms", self.network_id, req.peer,
                            req.method, req.path, status, elapsed * 1000.0)
        return resp
