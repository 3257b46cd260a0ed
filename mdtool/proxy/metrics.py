"""Prometheus text exposition of the proxy's counters, on a loopback port (root namespace)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdtool.http.types import Request, Response
from mdtool.proxy.handler import LATENCY_BUCKETS

if TYPE_CHECKING:
    from mdtool.proxy.daemon import ProxyDaemon

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(daemon: ProxyDaemon) -> str:
    out = [
        "# HELP mdtool_proxy_networks Networks with at least one listener.",
        "# TYPE mdtool_proxy_networks gauge",
        f"mdtool_proxy_networks {sum(1 for s in daemon.sites.values() if s.listening)}",
        "# HELP mdtool_proxy_listeners Listening sockets inside namespaces.",
        "# TYPE mdtool_proxy_listeners gauge",
        f"mdtool_proxy_listeners {sum(s.listening for s in daemon.sites.values())}",
        "# HELP mdtool_proxy_requests_total Requests answered, by network and status.",
        "# TYPE mdtool_proxy_requests_total counter",
    ]
    totals = daemon.totals()
    for (net, status), n in sorted(totals.items()):
        out.append(f'mdtool_proxy_requests_total{{network="{net}",code="{status}"}} {n}')
    # Derived from the status counts: nothing extra on the request path.
    limited: dict[str, int] = {}
    upstream: dict[str, int] = {"unavailable": 0, "timeout": 0}
    for (net, status), n in totals.items():
        if status == 429:
            limited[net] = limited.get(net, 0) + n
        elif status == 502:
            upstream["unavailable"] += n
        elif status == 504:
            upstream["timeout"] += n
    out += ["# HELP mdtool_proxy_rate_limited_total Requests refused with 429, by network.",
            "# TYPE mdtool_proxy_rate_limited_total counter"]
    out += [f'mdtool_proxy_rate_limited_total{{network="{net}"}} {n}' for net, n in sorted(limited.items())]
    out += ["# HELP mdtool_proxy_upstream_errors_total Agent unreachable (502) or too slow (504).",
            "# TYPE mdtool_proxy_upstream_errors_total counter"]
    out += [f'mdtool_proxy_upstream_errors_total{{kind="{k}"}} {n}' for k, n in upstream.items()]
    out += ["# HELP mdtool_proxy_request_duration_seconds Time to answer a request, all networks.",
            "# TYPE mdtool_proxy_request_duration_seconds histogram"]
    cumulative = 0
    counts = daemon.latency_counts()
    for bound, n in zip(list(LATENCY_BUCKETS) + ["+Inf"], counts):
        cumulative += n
        out.append(f'mdtool_proxy_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
    out.append(f"mdtool_proxy_request_duration_seconds_count {cumulative}")
    out.append(f"mdtool_proxy_request_duration_seconds_sum {sum(daemon.durations().values()):.6f}")
    out += ["# HELP mdtool_proxy_request_seconds_total Time spent answering, by network.",
            "# TYPE mdtool_proxy_request_seconds_total counter"]
    for net, secs in sorted(daemon.durations().items()):
        out.append(f'mdtool_proxy_request_seconds_total{{network="{net}"}} {secs:.6f}')
    return "\n".join(out) + "\n"


def handler_for(daemon: ProxyDaemon):
    async def handle(req: Request) -> Response:
        if req.path != "/metrics":
            return Response.text(404, "Not Found\n")
        return Response(200, render(daemon).encode(), [("Content-Type", _CONTENT_TYPE)])

    return handle
