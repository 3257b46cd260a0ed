"""One network's request path: rewrite headers, forward to the agent, map failures."""

from __future__ import annotations

import logging
import time
from bisect import bisect_left

from mdtool.http.client import UpstreamError, UpstreamPool, UpstreamTimeout
from mdtool.http.headers import end_to_end, probe_tag
from mdtool.http.types import Request, Response
from mdtool.logs import DeferredLines, Repeats
from mdtool.proxy.ratelimit import RateLimiter
from mdtool.proxy.rules import upstream_headers
from mdtool.proxy.tokens import TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, TokenSealer, parse_ttl

log = logging.getLogger("mdtool.proxy")
access_log = logging.getLogger("mdtool.proxy.access")
# One line a request, written with the others of the next few ms (mdtool/logs.py).
access_lines = DeferredLines(access_log)

_CT = [("Content-Type", "text/plain; charset=UTF-8")]
_BAD_GATEWAY = b"Bad Gateway: the metadata agent is not available\n"
_GATEWAY_TIMEOUT = b"Gateway Timeout: the metadata agent did not answer in time\n"
_TOO_MANY = b"Too Many Requests: metadata rate limit exceeded\n"
_UNAUTHORIZED = b"Unauthorized: missing, invalid or expired X-aws-ec2-metadata-token\n"
_WARN_EVERY = 10.0  # seconds between repeated upstream warnings of one network


REPEAT_WINDOW = 10.0  # seconds over which repeated 4xx lines of one source are summarised

# Upper bounds (seconds) of the latency histogram the metrics endpoint exposes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ProxyHandler:
    """Forwards requests that arrive on ``network_id`` to the agent behind ``pool``.

    Keeps per-status counts and the summed duration for the metrics endpoint.
    """

    __slots__ = ("pool", "network_id", "limiter", "status_counts", "duration_sum", "latency_counts",
                 "_last_warn", "_suppressed", "sealer", "tokens_required", "hop_limit",
                 "repeats", "cache", "_begin")

    def __init__(self, pool: UpstreamPool, network_id: str,
                 limiter: RateLimiter | None = None, sealer: TokenSealer | None = None,
                 *, tokens_required: bool = False, hop_limit: int = 1):
        self.pool = pool
        self.network_id = network_id
        self.limiter = limiter
        self.sealer = sealer  # None: no session tokens (the token path goes to the agent)
        self.tokens_required = tokens_required
        self.hop_limit = hop_limit
        self.status_counts: dict[int, int] = {}
        self.duration_sum = 0.0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last: above every bucket
        self._last_warn = -_WARN_EVERY
        self._suppressed = 0
        # A source that keeps getting 4xx (429 above all) is summarised, not logged per
        # request: one rate-limited instance wrote 17.8 MB of access log in 10 s.
        self.repeats = Repeats(REPEAT_WINDOW)
        # The fast path's cache of its answers (mdtool/fastpath.py); None in chain mode.
        self.cache = getattr(pool, "cache", None)
        # The chain's upstream answers through a callback (UpstreamPool.begin): see begin().
        self._begin = getattr(pool, "begin", None) if self.cache is None else None

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

    def _tokens(self, req: Request) -> Response | None:
        """IMDSv2: the token reply itself, a 4xx, or None when the request may pass."""
        if req.path == TOKEN_PATH:
            if req.method != "PUT":
                return Response(405, b"Method Not Allowed: use PUT for a token\n",
                                list(_CT) + [("Allow", "PUT")])
            if req.header("X-Forwarded-For") is not None:
                # A forwarded PUT came through another box: no token leaves the link.
                return Response(400, b"Bad Request: X-Forwarded-For on a token request\n",
                                list(_CT))
            ttl = parse_ttl(req.header(TTL_HEADER))
            if ttl is None:
                return Response(400, b"Bad Request: X-aws-ec2-metadata-token-ttl-seconds "
                                     b"must be an integer from 1 to 21600\n", list(_CT))
            token = self.sealer.issue(self.network_id, req.peer, ttl)
            return Response(200, token.encode(), list(_CT) + [(TTL_HEADER, str(ttl))],
                            hop_limit=self.hop_limit)
        token = req.header(TOKEN_HEADER)
        if token is None:
            if self.tokens_required:
                return Response(401, _UNAUTHORIZED, list(_CT))
            return None
        if not self.sealer.verify(token.strip(), self.network_id, req.peer):
            return Response(401, _UNAUTHORIZED, list(_CT))
        return None

    def _gate(self, req: Request) -> Response | None:
        """The proxy's own answer before any upstream: 429, IMDSv2's replies and refusals."""
        if self.limiter is not None and not self.limiter.allow(req.peer):
            return Response(429, _TOO_MANY, list(_CT))
        if self.sealer is not None:
            return self._tokens(req)
        return None

    def _cache_key(self, req: Request) -> tuple | None:
        """Everything of ``req`` the answer path reads (the upstream headers are built from
        the peer, this network and the end-to-end fields alone); None: not cacheable."""
        if req.method != "GET" or req.body:
            return None
        return (self.network_id, req.peer, req.target, tuple(end_to_end(req.headers)))

    def answer_now(self, req: Request) -> Response | None:
        """Answer from the upstream's cache of its own answers, if it has this one: the
        same gate, access line and metrics as :meth:`__call__`. None: ask ``__call__``
        (nothing was counted or consumed)."""
        cache = self.cache
        if cache is None:
            return None
        key = self._cache_key(req)
        hit = None if key is None else cache.get(key)
        if hit is None:
            return None
        start = time.monotonic()
        resp = self._gate(req) or hit
        self._account(req, resp, start)
        return resp

    def _failed(self, error: UpstreamError) -> Response:
        """The answer when the agent gave none: 504 when it was too slow, else 502."""
        self._warn(error)
        if isinstance(error, UpstreamTimeout):
            return Response(504, _GATEWAY_TIMEOUT, list(_CT))
        return Response(502, _BAD_GATEWAY, list(_CT))

    def begin(self, req: Request, reply) -> bool:
        """Answer ``req`` through ``reply(response)`` without a task (the server's
        protocol callbacks): the proxy's own refusals at once, the agent's answer from
        the callback it arrives in. The chain's every request pays for a task, a
        coroutine per layer and a loop iteration each otherwise. False: not this way
        (the fast path, the token path), ask ``__call__``; nothing was counted."""
        begin = self._begin
        if begin is None or req.path == TOKEN_PATH:
            return False
        start = time.monotonic()
        resp = self._gate(req)
        if resp is not None:
            reply(resp)
            self._account(req, resp, start)
            return True

        def done(up: Response | None, error: BaseException | None) -> None:
            # The answer first, the bookkeeping after: the client waits for nothing else.
            resp = up
            if error is not None:
                try:
                    resp = self._failed(error)
                except Exception:  # a bug here must still answer the client
                    log.exception("answering %s %s failed", req.method, req.target)
                    resp = Response(500, b"Internal Server Error\n", list(_CT))
            reply(resp)
            self._account(req, resp, start)

        # The allow-list (mdtool/http/headers.py) keeps the IMDSv2 token fields here too.
        headers = upstream_headers(req.headers, req.peer, self.network_id)
        begin(req.method, req.target, headers, req.body, done)
        return True

    async def __call__(self, req: Request) -> Response:
        start = time.monotonic()
        resp = self._gate(req)
        if resp is None:
            headers = upstream_headers(req.headers, req.peer, self.network_id)
            cache = self.cache
            key = state = None
            if cache is not None:
                key = self._cache_key(req)
                state = cache.state()
            try:
                resp = await self.pool.request(req.method, req.target, headers, req.body)
            except UpstreamError as e:
                resp = self._failed(e)
            else:
                if key is not None and resp.status == 200 and resp.hop_limit is None:
                    cache.put(key, state, resp)
        self._account(req, resp, start)
        return resp

    def _account(self, req: Request, resp: Response, start: float) -> None:
        """Metrics and the access line of one answered request."""
        now = time.monotonic()
        elapsed = now - start
        self.duration_sum += elapsed
        self.latency_counts[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        counts = self.status_counts
        status = resp.status
        counts[status] = counts.get(status, 0) + 1
        if access_log.isEnabledFor(logging.INFO):
            # inspect's probes get their own (tagged) line: never counted in a 4xx summary
            tag = probe_tag(req.header("User-Agent"))
            if status < 400 or status >= 500 or tag or self.repeats.first(req.peer, status, now):
                access_lines.info("network=%s src=%s %s %s %d %.1fms%s", self.network_id,
                                  req.peer, req.method, req.path, status, elapsed * 1000.0, tag)

    def flush_repeats(self, everything: bool = False) -> None:
        """Log the summaries of the repeat windows that are over (every window: at the end)."""
        for src, status, n, seconds in self.repeats.due(time.monotonic(), everything):
            access_lines.info("network=%s src=%s: %s more %d in %.0f s", self.network_id, src,
                              f"{n:,}", status, seconds)
        if everything:
            access_lines.flush()
