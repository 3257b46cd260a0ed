"""What keeps one tenant from taking its network or the node down: the per-source cap,
the open-file limit, and EMFILE reported without a traceback loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource

from mdtool.http.client import UpstreamPool
from mdtool.http.server import OPEN_CONNECTIONS, Limits
from mdtool.netns import switch
from mdtool.proxy import daemon as proxy_daemon
from mdtool.proxy.daemon import ProxyDaemon, connection_budget, raise_nofile_limit


def test_emfile_is_one_line_per_interval_never_a_traceback(tmp_path, monkeypatch, caplog):
    """Out of descriptors, listing /run/netns failed every round, each time a traceback."""
    def no_fds():
        raise OSError(errno.EMFILE, "Too many open files", "/run/netns")

    monkeypatch.setattr(switch, "list_netns", no_fds)

    async def main():
        daemon = ProxyDaemon(UpstreamPool("unix:" + str(tmp_path / "none")), Limits(), None,
                             poll_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.serve(stop))
        await asyncio.sleep(0.5)  # ~50 rounds
        stop.set()
        await asyncio.wait_for(task, 5)
        return daemon

    with caplog.at_level(logging.INFO, logger="mdtool.proxy"):
        daemon = asyncio.run(main())
    mine = [r for r in caplog.records if r.name == "mdtool.proxy" and r.levelno >= logging.WARNING]
    assert len(mine) == 1, [r.getMessage() for r in mine]
    assert "out of file descriptors" in mine[0].getMessage() and mine[0].exc_info is None
    assert "raise LimitNOFILE" in mine[0].getMessage()
    assert daemon._emfile_suppressed >= 10


def test_the_open_file_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
            before, now = raise_nofile_limit()
            assert before == min(256, hard) and now == hard
            assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_budget_leaves_room_for_everything_else():
    # 1024 descriptors, 128 upstream connections, 4 listeners: accept() stays clear of EMFILE
    assert connection_budget(1024, 128, 4) == 1024 - 128 - 4 - proxy_daemon.FD_RESERVE
    assert connection_budget(100, 128, 4) == 16  # never nothing at all


def test_limits_from_config_carry_the_per_source_cap(tmp_path):
    from mdtool.config import Config
    limits = proxy_daemon.limits_from_config(Config(state_dir=str(tmp_path), environ={
        "MDTOOL_METADATA_HAPROXY__MAX_CONNECTIONS_PER_SOURCE": "7"}))
    assert limits.max_connections_per_source == 7
    assert limits.max_connections == 1024
    assert OPEN_CONNECTIONS.count >= 0
