"""``agent run``: the metadata agent on its Unix socket, forwarding signed requests to Nova."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

from mdtool.errors import OperationFailed

log = logging.getLogger("mdtool.agent")

SOCKET_MODE = 0o660
UPSTREAM_TIMEOUT = 30.0  # below the proxy's timeout_server (32 s), so the proxy sees our 504


def bind_unix(path: Path, mode: int = SOCKET_MODE) -> socket.socket:
    """Listen on ``path``; a stale socket file is removed, a live one is an error."""
    from mdtool.files import make_dirs
    make_dirs(path.parent)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: left behind by a killed agent
        else:
            raise OperationFailed(f"another agent already listens on {path}: stop it first")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask closes the window between bind() and chmod() where the socket is wider open.
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise OperationFailed(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(1024)
    return sock


def run(config) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    from mdtool.agent.handler import AgentHandler, IndexFollower
    from mdtool.http.client import UpstreamPool
    from mdtool.http.server import HttpServer, Limits, run_daemon
    from mdtool.registry import open_registry

    from mdtool import logs, metrics as daemon_metrics

    logs.setup(config, "agent")
    secret = config.shared_secret()
    upstream_url = config.nova_metadata_url
    try:
        upstream = UpstreamPool(upstream_url, read_timeout=UPSTREAM_TIMEOUT)
    except ValueError as e:
        raise OperationFailed(f"nova_metadata_url: {e}") from None
    registry = open_registry(config.db_url)
    follower = IndexFollower(registry)
    metrics = daemon_metrics.start(config, "agent")
    path = Path(config.agent_socket)
    sock = bind_unix(path)

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
        try:
            path.unlink()
        except FileNotFoundError:
            pass
