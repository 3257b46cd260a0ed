"""DeferredLines: a per-request line stamped when made, written with the others of the next
few milliseconds: the same text in the same place as the logging call it replaces, none
lost, in order."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mdtool import logs
from mdtool.config import Config

FMT = "network=%s src=%s %s %s %d %.1fms%s"


@pytest.fixture
def own_file(tmp_path):
    """The daemon set-up (logs.setup, its stderr sent to a file), and nothing else on the
    root logger during the test (pytest's capture handlers are put back afterwards)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = Config(state_dir=str(tmp_path / "state"), config_file="/dev/null")
    path = tmp_path / "proxy.log"
    with open(path, "a") as stream:
        handler = logs.setup(config, "proxy", verbose=0, stream=stream)
        try:
            yield path, handler
        finally:
            root.handlers = handlers
            root.setLevel(level)
            handler.close()


def test_lines_are_the_logging_call_s_text_written_after_a_few_ms(own_file, monkeypatch):
    path, handler = own_file
    logging.getLogger().handlers = [handler]
    logger = logging.getLogger("mdtool.proxy.access")
    lines = logs.DeferredLines(logger)
    stamps = iter([1764736800.25, 1764736800.5, 1764736801.999])
    monkeypatch.setattr(logs.time, "time", lambda: next(stamps))

    async def go():
        lines.info(FMT, "n1", "10.0.0.2", "GET", "/a", 200, 0.1, "")
        lines.info(FMT, "n1", "10.0.0.2", "GET", "/b\nforged", 200, 0.2, "")
        lines.info(FMT, "n1", "10.0.0.3", "GET", "/c", 404, 0.3, " probe=mdtool-inspect")
        before = path.read_text()
        await asyncio.sleep(0)
        same_iteration_over = path.read_text()
        await asyncio.sleep(logs.FLUSH_DELAY * 4)
        return before + same_iteration_over, path.read_text()

    before, after = asyncio.run(go())
    monkeypatch.undo()
    # Nothing written within the iteration, nor at its end: one write for the few ms.
    assert before == ""
    expected = []
    for created, args in ((1764736800.25, ("n1", "10.0.0.2", "GET", "/a", 200, 0.1, "")),
                          (1764736800.5, ("n1", "10.0.0.2", "GET", "/b\nforged", 200, 0.2, "")),
                          (1764736801.999, ("n1", "10.0.0.3", "GET", "/c", 404, 0.3,
                                            " probe=mdtool-inspect"))):
        record = logger.makeRecord(logger.name, logging.INFO, "", 0, FMT, args, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        expected.append(handler.format(record) + "\n")
    assert after == "".join(expected)  # the formatter's own text, time of the call
    assert "/b\\nforged" in after and after.count("\n") == 3  # escaped, one line each


def test_another_handler_gets_the_ordinary_logging_call(caplog):
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    lines = logs.DeferredLines(logging.getLogger("mdtool.proxy.access"))

    async def go():
        lines.info(FMT, "n1", "10.0.0.2", "GET", "/a", 200, 0.1, "")
        seen = len(caplog.records)
        await asyncio.sleep(logs.FLUSH_DELAY * 4)
        return seen

    assert asyncio.run(go()) == 0
    assert [r.getMessage() for r in caplog.records] == ["network=n1 src=10.0.0.2 GET /a 200 0.1ms"]


def test_outside_a_loop_a_line_is_written_at_once(caplog):
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    logs.DeferredLines(logging.getLogger("mdtool.proxy.access")).info("x=%d", 1)
    assert [r.getMessage() for r in caplog.records] == ["x=1"]


def test_many_waiting_lines_are_written_at_once(caplog):
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    lines = logs.DeferredLines(logging.getLogger("mdtool.proxy.access"))

    async def go():
        for i in range(logs.FLUSH_LINES):
            lines.info("x=%d", i)
        return [r.getMessage() for r in caplog.records]

    assert asyncio.run(go()) == [f"x={i}" for i in range(logs.FLUSH_LINES)]


def test_lines_left_by_a_loop_that_ended_are_not_lost_and_stay_in_order(caplog):
    """A loop (a daemon) that ends before the timer: its lines go out at the next line,
    in order, or at flush_deferred() (run_daemon on stop, and at exit)."""
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    lines = logs.DeferredLines(logging.getLogger("mdtool.proxy.access"))

    async def one(*numbers):
        for n in numbers:
            lines.info("x=%d", n)

    def seen():  # flush_deferred() also writes what earlier tests' daemons left waiting
        return [r.getMessage() for r in caplog.records if r.name == "mdtool.proxy.access"]

    asyncio.run(one(1, 2))
    assert seen() == []  # its timer never ran
    asyncio.run(one(3))
    assert seen() == ["x=1", "x=2", "x=3"]
    asyncio.run(one(4))
    logs.flush_deferred()
    assert seen() == ["x=1", "x=2", "x=3", "x=4"]


def test_a_stopping_daemon_writes_its_waiting_lines_first(caplog):
    """run_daemon: SIGTERM writes what waits before the daemon logs that it stops."""
    import os
    import signal

    from mdtool.http.server import run_daemon
    caplog.set_level(logging.INFO, logger="mdtool")
    lines = logs.DeferredLines(logging.getLogger("mdtool.proxy.access"))

    async def main(stop):
        lines.info("x=%d", 1)
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        logging.getLogger("mdtool.proxy").info("stopping")
        lines.info("x=%d", 2)
        return 0

    assert run_daemon(main) == 0
    assert [r.getMessage() for r in caplog.records] == ["x=1", "stopping", "x=2"]
