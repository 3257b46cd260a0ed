"""``agent run``: the metadata agent on its Unix socket, forwarding signed requests to Nova."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mdtool.errors import OperationFailed
from mdtool.http.listen import bind_unix, unlink_socket

log = logging.getLogger("mdtool.agent")

UPSTREAM_TIMEOUT = 30.0  # below the proxy's timeout_server (32 s), so the proxy sees our 504


def run(config) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    from mdtool.agent.handler import AgentHandler, IndexFollower
    from mdtool.agent.upstream import upstream_pool
    from mdtool.http.server import HttpServer, Limits, run_daemon
    from mdtool.registry import open_registry

    from mdtool import logs, metrics as daemon_metrics

    logs.setup(config, "agent")
    secret = config.shared_secret()
    upstream_url = config.nova_metadata_url
    try:
        upstream = upstream_pool(config, read_timeout=UPSTREAM_TIMEOUT)  # BadInput: exit 2
    except ValueError as e:
        raise OperationFailed(f"nova_metadata_url: {e}") from None
    registry = open_registry(config.db_url)
    follower = IndexFollower(registry)
    metrics = daemon_metrics.start(config, "agent")
    path = Path(config.agent_socket)
    sock = bind_unix(path, what="agent")

    async def main(stop: asyncio.Event) -> int:
        if metrics is None:
            handler = AgentHandler(follower, upstream, secret).handle
        else:
            handler = metrics.wrap(AgentHandler(metrics.index(follower),
                                                metrics.upstream(upstream), secret).handle)
        server = HttpServer(handler, Limits())
        poller = None
        try:
            try:
                await follower.refresh(force=True)
            except Exception as e:  # the poller retries; answer 404 until then
                log.error("reading the registry failed: %s", e)
            await server.add_socket(sock)
            log.info("metadata agent listening on %s, forwarding to %s", path, upstream_url)
            poller = asyncio.create_task(follower.run(stop))
            await stop.wait()
            log.info("metadata agent stopping")
        finally:
            if poller is not None:
                await poller
            await server.close()
            await upstream.close()
            follower.close()
        log.info("metadata agent stopped")
        return 0

    try:
        return run_daemon(main)
    finally:
        sock.close()
        unlink_socket(path)
