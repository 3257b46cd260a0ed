"""DeferredLines: a per-request line stamped when made, written at the end of the loop
iteration: the same text in the same place as the logging call it replaces."""

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


def test_lines_are_the_logging_call_s_text_written_after_the_iteration(own_file, monkeypatch):
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
        return before, path.read_text()

    before, after = asyncio.run(go())
    monkeypatch.undo()
    assert before == ""  # nothing written within the iteration
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
        await asyncio.sleep(0)
        return seen

    assert asyncio.run(go()) == 0
    assert [r.getMessage() for r in caplog.records] == ["network=n1 src=10.0.0.2 GET /a 200 0.1ms"]


def test_outside_a_loop_a_line_is_written_at_once(caplog):
    caplog.set_level(logging.INFO, logger="mdtool.proxy.access")
    logs.DeferredLines(logging.getLogger("mdtool.proxy.access")).info("x=%d", 1)
    assert [r.getMessage() for r in caplog.records] == ["x=1"]
