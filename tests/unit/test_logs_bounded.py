"""Logs cannot fill the disk or stop a daemon: repeated lines are summarised, files rotate
by size and count, and a line that cannot be written is dropped, not raised."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import sys

import pytest

from mdtool import logs
from mdtool.config import Config
from mdtool.http.types import Request
from mdtool.proxy import handler as proxy_handler
from mdtool.proxy.handler import ProxyHandler
from mdtool.proxy.ratelimit import RateLimiter, RateLimits
from tests.unit.test_logs import restore_root  # noqa: F401  (autouse: root logger restored)


def test_repeats_log_the_first_and_count_the_rest_per_source_and_status():
    r = logs.Repeats(window=10.0)
    assert r.first("10.0.0.5", 429, 0.0)
    assert not any(r.first("10.0.0.5", 429, t / 10) for t in range(1, 100))
    assert r.first("10.0.0.6", 429, 1.0) and r.first("10.0.0.5", 404, 1.0)
    assert r.due(5.0) == []
    assert r.due(10.5) == [("10.0.0.5", 429, 99, 10.5)]
    assert r.first("10.0.0.5", 429, 11.0)  # a new window starts with a line again
    assert sorted(x[:3] for x in r.due(20.0, everything=True)) == []  # nothing left out
    small = logs.Repeats(window=10.0, max_keys=1)
    assert small.first("a", 429, 0.0) and small.first("b", 429, 0.0) and small.first("b", 429, 0.1)


class FakePool:
    async def request(self, method, target, headers, body):
        from mdtool.http.types import Response
        return Response(200, b"ok")


def test_a_rate_limited_instance_costs_two_lines_per_window(caplog, monkeypatch):
    """17.8 MB of access log in 10 s from one rate-limited instance: now its 429s are one
    line, then `src=10.0.0.5: 17,431 more 429 in 10 s`."""
    clock = [1000.0]
    monkeypatch.setattr(proxy_handler.time, "monotonic", lambda: clock[0])
    limiter = RateLimiter(RateLimits(base_limit=5, burst_limit=5), clock=lambda: clock[0])
    h = ProxyHandler(FakePool(), "net-1", limiter)

    async def burst(n):
        for _ in range(n):
            await h(Request("GET", "/latest/meta-data/", [], b"", "10.0.0.5"))
            clock[0] += 0.0005

    with caplog.at_level(logging.INFO, logger="mdtool.proxy.access"):
        asyncio.run(burst(17436))
        clock[0] = 1011.0
        h.flush_repeats()
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.proxy.access"]
    assert len(lines) == 5 + 1 + 1, lines[:10]
    assert lines[5].startswith("network=net-1 src=10.0.0.5 GET /latest/meta-data/ 429")
    assert lines[6] == "network=net-1 src=10.0.0.5: 17,430 more 429 in 11 s"
    from mdtool.accesslog import parse  # mdtool logs shows it with the source's lines
    assert parse(f"2026-12-03 00:00:00,000 INFO mdtool.proxy.access: {lines[6]}").source == "10.0.0.5"


def test_files_rotate_by_size_and_count(tmp_path):
    path = tmp_path / "mdtool-proxy.log"
    h = logs.RotatingFile(path, max_bytes=1000, backups=2)
    h.setFormatter(logging.Formatter("%(message)s"))
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("y" * 99,), None)
    for _ in range(50):
        h.emit(rec)
    h.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["mdtool-proxy.log", "mdtool-proxy.log.1", "mdtool-proxy.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert (path.stat().st_mode & 0o777) == 0o640


def test_a_file_moved_away_is_reopened_within_a_second(tmp_path, monkeypatch):
    """logrotate moves the file: the lines of the next second still go to the moved file
    (a stat a write was a visible part of a request), then the new file gets them."""
    clock = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    path = tmp_path / "a.log"
    h = logs.RotatingFile(path)
    h.setFormatter(logging.Formatter("%(message)s"))
    h.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "one", (), None))
    os.rename(path, tmp_path / "a.log.old")
    clock[0] += 0.5
    h.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "two", (), None))
    clock[0] += h.LOOK_EVERY
    h.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "three", (), None))
    h.close()
    assert (tmp_path / "a.log.old").read_text() == "one\ntwo\n"  # none lost
    assert path.read_text() == "three\n"  # the move was noticed


def test_a_full_disk_drops_lines_without_raising_or_a_traceback_each(tmp_path, monkeypatch, capsys):
    h = logs.RotatingFile(tmp_path / "full.log")
    h.setFormatter(logging.Formatter("%(message)s"))

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h, "_open", lambda: Full())
    for _ in range(100):
        h.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "line", (), None))
    err = capsys.readouterr().err
    assert h.dropped == 100
    assert err.count("\n") == 1 and "No space left on device; 1 lines dropped" in err
    assert "Traceback" not in err


def test_a_daemon_whose_stderr_is_a_file_rotates_that_file(tmp_path):
    """enable-isolated-metadata sends a daemon's output to <state_dir>/log/<role>.log: the
    daemon rotates it itself (it grew without bound in the state dir before)."""
    out = tmp_path / "proxy.log"
    code = ("import logging, sys; from mdtool import logs; from mdtool.config import Config; "
            f"c = Config(state_dir={str(tmp_path)!r}, config_file='/dev/null', environ="
            "{'MDTOOL_MAX_LOGFILE_SIZE_MB': '1', 'MDTOOL_MAX_LOGFILE_COUNT': '1'}); "
            "h = logs.setup(c, 'proxy', 0); print(type(h).__name__, h.max_bytes, h.backups); "
            "[logging.getLogger('mdtool.proxy').info('x' * 1000) for _ in range(3000)]")
    with open(out, "ab") as f:
        subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=f,
                       check=True, env={**os.environ, "JOURNAL_STREAM": ""})
    assert sorted(p.name for p in tmp_path.glob("proxy.log*")) == ["proxy.log", "proxy.log.1"]
    assert out.stat().st_size <= 1 << 20


def test_rotation_options_and_log_file_left_to_logrotate(tmp_path):
    c = Config(state_dir=str(tmp_path), config_file="/dev/null",
               environ={"MDTOOL_LOG_DIR": str(tmp_path / "logs")})
    h = logs.setup(c, "agent", 0)
    assert isinstance(h, logs.RotatingFile) and (h.max_bytes, h.backups) == (100 << 20, 5)
    c = Config(state_dir=str(tmp_path), config_file="/dev/null",
               environ={"MDTOOL_LOG_FILE": str(tmp_path / "all.log")})
    h = logs.setup(c, "agent", 0)
    assert (h.max_bytes, h.backups) == (0, 0)
    c = Config(state_dir=str(tmp_path), config_file="/dev/null",
               environ={"MDTOOL_LOG_DIR": str(tmp_path / "logs"), "MDTOOL_LOG_ROTATION_TYPE": "none"})
    assert logs.setup(c, "agent", 0).max_bytes == 0


def test_the_metadata_service_summarises_repeated_4xx_of_one_instance(caplog, monkeypatch):
    from mdtool.accesslog import parse
    from mdtool.http.types import Response
    from mdtool.metadata import daemon as md
    clock = [100.0]
    monkeypatch.setattr(md.time, "monotonic", lambda: clock[0])

    class Service:
        async def handle(self, req):
            return Response(404 if req.path == "/nope" else 200, b"")

    handle = md.logged(Service())

    async def many():
        for _ in range(500):
            await handle(Request("GET", "/nope", [("X-Instance-ID", "i-1")], b"", ""))
            clock[0] += 0.001
        clock[0] = 111.0
        await handle(Request("GET", "/ok", [("X-Instance-ID", "i-2")], b"", ""))

    with caplog.at_level(logging.INFO, logger="mdtool.metadata"):
        asyncio.run(many())
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.metadata"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("instance=i-1 GET /nope status=404")
    assert lines[1] == "instance=i-1: 499 more 404 in 11 s"
    assert lines[2].startswith("instance=i-2 GET /ok status=200")
    assert parse(f"2026-12-03 00:00:00,000 INFO mdtool.metadata: {lines[1]}").instance == "i-1"
