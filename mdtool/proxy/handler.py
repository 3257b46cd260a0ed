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


class ProxyHandler:
    """Forwards requests that arrive on ``network_id`` to the agent behind ``pool``."""

    __slots__ = ("pool", "network_id", "limiter")

    def __init__(self, pool: UpstreamPool, network_id: str,
                 limiter: RateLimiter | None = None):
        self.pool = pool
        self.network_id = network_id
        self.limiter = limiter

    async def __call__(self, req: Request) -> Response:
        logging_on = access_log.isEnabledFor(logging.INFO)
        if logging_on:
            start = time.monotonic()
        if self.limiter is not None and not self.limiter.allow(req.peer):
            resp = Response(429, _TOO_MANY, list(_CT))
        else:
            headers = upstream_headers(req.headers, req.peer, self.network_id)
            try:
                resp = await self.pool.request(req.method, req.target, headers, req.body)
            except UpstreamTimeout as e:
                log.warning("network %s: %s", self.network_id, e)
                resp = Response(504, _GATEWAY_TIMEOUT, list(_CT))
            except UpstreamUnavailable as e:
                log.warning("network %s: %s", self.network_id, e)
                resp = Response(502, _BAD_GATEWAY, list(_CT))
        if logging_on:
            access_log.info("network=%s src=%s %s %s %d %.1fms", self.network_id, req.peer,
                            req.method, req.path, resp.status,
                            (time.monotonic() - start) * 1000.0)
        return resp
