"""``metadata run``: the Nova-compatible metadata service as a foreground daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mdtool.http.headers import probe_tag
from mdtool.http.types import Request, Response
from mdtool.logs import DeferredLines, RepeatGate

log = logging.getLogger("mdtool.metadata")
access_lines = DeferredLines(log)  # one line a request, written within a few ms

REVISION_POLL_SECONDS = 0.25


def logged(service) -> "callable":
    # Repeated 4xx for one instance are summarised, as the proxy and the agent do.
    repeats = RepeatGate(access_lines, "instance=%s: %s more %d in %.0f s")

    async def handle(req: Request) -> Response:
        start = time.monotonic()
        resp = await service.handle(req)
        now = time.monotonic()
        instance = req.header("X-Instance-ID") or "-"
        tag = probe_tag(req.header("User-Agent"))  # inspect's probes: always their own line
        if tag or repeats.allow((instance,), resp.status, now):
            access_lines.info("instance=%s %s %s status=%d ms=%.1f%s", instance, req.method,
                              req.path, resp.status, (now - start) * 1000.0, tag)
        return resp
    return handle


def make_service(config, registry):
    """This node's metadata service over ``registry`` (the daemon's, and the proxy's in
    fast-path mode: one construction, so both answer alike)."""
    from mdtool.metadata.service import MetadataService
    return MetadataService(registry, config.shared_secret(),
                           dhcp_domain=config.get("dhcp_domain") or "", follow_source=False)


async def follow_revisions(service, stop: asyncio.Event, feed=None) -> None:
    """Drop cached documents when the revision moves; between checks, sleep on the
    registry's change feed (PostgreSQL: woken by NOTIFY, 5 s fallback; SQLite: 0.25 s)."""
    failing = False
    while not stop.is_set():
        try:
            if await service.refresh():
                log.info("registry revision %s: cached documents dropped", service.revision)
            if failing:
                log.info("registry readable again")
            failing = False
        except Exception as e:  # keep answering from the cache
            if not failing:
                log.error("reading the registry revision failed: %s", e)
            failing = True
        if feed is not None:
            await feed.wait(feed.interval, stop)
            continue
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), REVISION_POLL_SECONDS)


def run(config, host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    from mdtool.http.server import HttpServer, Limits, run_daemon
    from mdtool.config import mask_url
    from mdtool.registry import open_registry

    from mdtool.http.listen import bind_tcp, bind_unix, unlink_socket

    from mdtool import logs, metrics as daemon_metrics

    logs.setup(config, "metadata")
    if host or port:  # `metadata run --host/--port`: TCP asked for on the command line
        host = host or config.get("metadata_listen_host") or "127.0.0.1"
        port = port or config.get("metadata_listen_port") or 8775
        tcp = (host, port)
    else:
        tcp = config.metadata_listen
    registry = open_registry(config.db_url)
    service = make_service(config, registry)
    changes = getattr(registry, "changes", None)
    feed = changes() if callable(changes) else None  # None: poll every REVISION_POLL_SECONDS
    metrics = daemon_metrics.start(config, "metadata")
    path = config.metadata_socket
    socks = [bind_unix(path, what="metadata service")]
    where = [str(path)]
    if tcp is not None:
        try:
            socks.append(bind_tcp(*tcp))
        except BaseException:
            socks[0].close()
            unlink_socket(path)
            raise
        where.append("%s:%d" % tcp)

    async def main(stop: asyncio.Event) -> int:
        handler = logged(service)
        server = HttpServer(handler if metrics is None else metrics.wrap(handler), Limits())
        poller = None
        try:
            await service.refresh()
            for sock in socks:
                await server.add_socket(sock)
            log.info("metadata service listening on %s (registry %s, revision %s)",
                     " and ".join(where), mask_url(config.db_url), service.revision)
            poller = asyncio.create_task(follow_revisions(service, stop, feed))
            await stop.wait()
            log.info("metadata service stopping")
        finally:
            if poller is not None:
                await poller
            await server.close()
            service.close()
            if feed is not None:
                feed.close()
        log.info("metadata service stopped")
        return 0

    try:
        return run_daemon(main)
    finally:
        for sock in socks:
            sock.close()
        unlink_socket(path)
