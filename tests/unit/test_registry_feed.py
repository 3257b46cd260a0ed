"""SQLite's change feed: a revision check when the database files moved, and every third
interval whatever they say (idle, the agent, metadata service, proxy and node each
queried the revision 4 times a second through a thread hand-off)."""

from __future__ import annotations

import asyncio

from mdtool.registry import Registry, notify


def test_an_idle_feed_returns_every_third_interval_and_a_commit_at_the_next(tmp_path, monkeypatch):
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    feed = reg.changes()
    assert feed.files == (f"{tmp_path}/r.db", f"{tmp_path}/r.db-wal")
    sleeps: list[float] = []
    monkeypatch.setattr(notify.time, "sleep", sleeps.append)

    def intervals_until_return() -> int:
        before = len(sleeps)
        assert feed.wait_blocking(0.25)
        return len(sleeps) - before

    intervals_until_return()  # whatever happened before the feed's first look
    assert [intervals_until_return() for _ in range(3)] == [3, 3, 3]
    reg.create_network("moved")
    assert intervals_until_return() == 1
    assert intervals_until_return() == 3


def test_a_commit_the_stat_cannot_see_is_read_within_three_intervals(tmp_path, monkeypatch):
    """A commit within one mtime tick of the last stat, sizes unchanged: the full check."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    feed = reg.changes()
    monkeypatch.setattr(feed, "_stat", lambda: ("always the same",))
    feed._seen = feed._stat()
    ticks: list[float] = []

    async def sleep(timeout, stop):
        ticks.append(timeout)

    monkeypatch.setattr(notify, "_sleep_or_stop", sleep)

    async def main():
        reg.create_network("unseen")
        assert await feed.wait(0.25, asyncio.Event())
        assert len(ticks) <= notify.FULL_CHECK_TICKS and notify.FULL_CHECK_TICKS * 0.25 < 1.0
        stop = asyncio.Event()
        stop.set()
        ticks.clear()
        assert await feed.wait(0.25, stop) and len(ticks) == 1  # stopping: at once

    asyncio.run(main())
