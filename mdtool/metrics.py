"""Prometheus metrics of the daemons, served on loopback when ``metrics_port_<role>`` is set.

prometheus_client is imported only when a port is configured, so a daemon without
metrics does not pay for it. The hot path costs a dict lookup of a pre-created counter
child, one counter increment and one histogram observation per request.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from mdtool.errors import OperationFailed

LISTEN_ADDRESS = "127.0.0.1"
# Metadata answers are small and local: most of the resolution sits below 100 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
COMMON_CODES = (200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 409, 413, 429, 431,
                500, 502, 503, 504)


class DaemonMetrics:
    """The metrics of one daemon (``proxy``, ``agent`` or ``metadata``) in its own registry."""

    def __init__(self, role: str, registry=None, process_metrics: bool = True):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        self.role = role
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        p = f"mdtool_{role}"
        if process_metrics:
            from prometheus_client.gc_collector import GCCollector
            from prometheus_client.platform_collector import PlatformCollector
            from prometheus_client.process_collector import ProcessCollector
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        self.requests = Counter(f"{p}_requests", "HTTP requests answered, by status code",
                                ["code"], registry=reg)
        self.latency = Histogram(f"{p}_request_duration_seconds",
                                 "Time from a complete request to its answer",
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.upstream_errors = Counter(
            f"{p}_upstream_errors", "Requests the upstream did not answer usably, by kind",
            ["kind"], registry=reg)
        self._upstream = {k: self.upstream_errors.labels(k)
                          for k in ("timeout", "unavailable", "bad_answer")}
        self._codes = {c: self.requests.labels(str(c)) for c in COMMON_CODES}
        self.rate_limited = None
        self.lookups = None
        if role == "proxy":
            self.rate_limited = Counter(f"{p}_rate_limited_requests",
                                        "Requests refused with 429 by the rate limiter",
                                        registry=reg)
        if role == "agent":
            self.lookups = Counter(f"{p}_lookups", "Port lookups by (network, source IP): "
                                   "hit (one port), miss (none), ambiguous (several)",
                                   ["result"], registry=reg)
            self._lookup = {k: self.lookups.labels(k) for k in ("hit", "miss", "ambiguous")}

    # per request -------------------------------------------------------------------------

    def observe(self, status: int, seconds: float) -> None:
        child = self._codes.get(status)
        if child is None:
            child = self._codes[status] = self.requests.labels(str(status))
        child.inc()
        self.latency.observe(seconds)
        if status == 429 and self.rate_limited is not None:
            self.rate_limited.inc()

    def wrap(self, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """A handler that counts what ``handler`` answers and how long it took."""
        observe = self.observe
        clock = time.monotonic

        async def metered(req):
            start = clock()
            try:
                resp = await handler(req)
            except Exception:
                observe(500, clock() - start)
                raise
            observe(resp.status, clock() - start)
            return resp

        return metered

    def upstream(self, pool):
        """``pool`` with its failures counted by kind (timeout, unavailable, bad_answer)."""
        return _CountingUpstream(pool, self._upstream)

    def index(self, index_source: Callable[[], Any]) -> Callable[[], Any]:
        """The agent's index callable, with every lookup counted as hit, miss or ambiguous."""
        return _CountingIndex(index_source, self._lookup)


class _CountingUpstream:
    def __init__(self, pool, counters):
        self._pool = pool
        self._counters = counters

    async def request(self, *args, **kwargs):
        from mdtool.http.client import UpstreamError, UpstreamTimeout, UpstreamUnavailable
        try:
            return await self._pool.request(*args, **kwargs)
        except UpstreamTimeout:
            self._counters["timeout"].inc()
            raise
        except UpstreamUnavailable:
            self._counters["unavailable"].inc()
            raise
        except UpstreamError:
            self._counters["bad_answer"].inc()
            raise

    def __getattr__(self, name):  # close(), size, ... of the pool
        return getattr(self._pool, name)


class _CountingIndex:
    def __init__(self, source, counters):
        self._source = source
        self._counters = counters

    def __call__(self):
        return self

    def lookup(self, network_id, source_ip):
        matches = self._source().lookup(network_id, source_ip)
        n = len(matches)
        self._counters["hit" if n == 1 else "miss" if n == 0 else "ambiguous"].inc()
        return matches

    def __getattr__(self, name):
        return getattr(self._source(), name)


def serve(metrics: DaemonMetrics, port: int, addr: str = LISTEN_ADDRESS):
    """Serve ``/metrics`` on addr:port from a background thread; returns the WSGI server."""
    from prometheus_client import start_http_server
    try:
        server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as e:
        raise OperationFailed(f"cannot serve {metrics.role} metrics on {addr}:{port}: "
                              f"{e.strerror}") from None
    return server


def start(config, role: str) -> DaemonMetrics | None:
    """Metrics for ``role`` served on loopback when ``metrics_port_<role>`` is set, else None."""
    port = config.get(f"metrics_port_{role}")
    if not port:
        return None
    import logging
    metrics = DaemonMetrics(role)
    serve(metrics, port)
    logging.getLogger(f"mdtool.{role}").info("%s metrics on http://%s:%d/metrics", role,
                                             LISTEN_ADDRESS, port)
    return metrics
