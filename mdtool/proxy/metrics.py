"""Prometheus text exposition of the proxy's counters, on a loopback port (root namespace)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdtool.http.types import Request, Response

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
    out += ["# HELP mdtool_proxy_request_duration_seconds_sum Time spent answering, by network.",
            "# TYPE mdtool_proxy_request_duration_seconds_sum counter"]
    for net, secs in sorted(daemon.durations().items()):
        out.append(f'mdtool_proxy_request_duration_seconds_sum{{network="{net}"}} {secs:.6f}')
    return "\n".join(out) + "\n"


def handler_for(daemon: ProxyDaemon):
    async def handle(req: Request) -> Response:
        if req.path != "/metrics":
            return Response.text(404, "Not Found\n")
        return Response(200, render(daemon).encode(), [("Content-Type", _CONTENT_TYPE)])

    return handle
