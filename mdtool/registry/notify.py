"""How a reader learns that the registry changed, on any node, without hammering it.

Every write transaction bumps ``registry_state.revision``; on PostgreSQL it also sends
``NOTIFY mdtool_registry, '<revision>'``, which PostgreSQL delivers to every listening
session when (and only when) the transaction commits.

A reader (the agent's port index, the metadata service's document cache) loops::

    feed = registry.changes()
    while not stop.is_set():
        ...compare registry.revision() with what it holds, rebuild when it moved...
        await feed.wait(feed.interval, stop)

- :class:`PgListenFeed` (PostgreSQL) LISTENs on its own connection, outside the pool, and
  watches its socket with the event loop (``add_reader``): ``wait`` returns as soon as a
  notification arrives. ``interval`` is a slow fallback poll (5 s), in case a
  notification is lost (the connection broke and came back, PgBouncer in transaction
  mode, a NOTIFY sent by hand with another payload...). After the listening connection
  is (re)established ``wait`` returns at once, so whatever happened meanwhile is read.
- :class:`PollFeed` (SQLite, no notifications) sleeps ``interval`` (0.25 s), then stats
  the database and its -wal file (a commit changes one of them): ``wait`` returns when
  they changed, and after every ``FULL_CHECK_TICKS``-th interval whatever they say (a
  commit within one mtime tick of the last stat that kept the sizes is still read within
  0.75 s). Idle, a follower's revision query (a thread hand-off each) runs at 1.3 Hz, not 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import time

CHANNEL = "mdtool_registry"
PG_FALLBACK_POLL = 5.0
SQLITE_POLL = 0.25
FULL_CHECK_TICKS = 3  # PollFeed: a revision check every 3rd interval even when no file moved
RECONNECT_DELAY = 1.0

log = logging.getLogger("mdtool.registry")


async def _sleep_or_stop(timeout: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(timeout)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)


class PollFeed:
    """No notifications: the reader checks the revision when one of ``files`` (the SQLite
    database and its -wal) changed since the last return, or every ``FULL_CHECK_TICKS``
    intervals of ``timeout`` whatever they say. Without files: after every interval."""

    kind = "poll"

    def __init__(self, interval: float = SQLITE_POLL, files: tuple[str, ...] = ()):
        self.interval = interval
        self.notifications = 0
        self.files = files
        self._seen = self._stat()
        self._ticks = 0  # intervals slept since the last return

    def _stat(self) -> tuple:
        out = []
        for path in self.files:
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def _check_now(self) -> bool:
        """After an interval: whether the reader should check the revision now."""
        self._ticks += 1
        seen = self._stat()
        if not self.files or seen != self._seen or self._ticks >= FULL_CHECK_TICKS:
            self._seen, self._ticks = seen, 0
            return True
        return False

    async def wait(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        while True:
            await _sleep_or_stop(timeout, stop)
            if (stop is not None and stop.is_set()) or self._check_now():
                return True  # maybe: the caller checks the revision

    def wait_blocking(self, timeout: float) -> bool:
        while True:
            time.sleep(timeout)
            if self._check_now():
                return True

    def close(self) -> None:
        pass


class PgListenFeed:
    """LISTEN mdtool_registry on a dedicated psycopg2 connection."""

    kind = "listen"

    def __init__(self, engine, interval: float = PG_FALLBACK_POLL):
        self.engine = engine
        self.interval = interval
        self.conn = None
        self.notifications = 0   # received, for tests and logs
        self.last_payload: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._failing = False

    # -- the listening connection ----------------------------------------------------

    def _connect(self):
        """A new autocommit connection with LISTEN issued (blocking, a few ms)."""
        conn = self.engine.raw_connect(connect_timeout=5, application_name="mdtool-listen")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        return conn

    def _drain(self) -> bool:
        """Read what the socket holds; True when a notification arrived. Raises on a
        broken connection."""
        self.conn.poll()
        got = False
        while self.conn.notifies:
            n = self.conn.notifies.pop(0)
            self.notifications += 1
            self.last_payload = n.payload
            got = True
        return got

    def _drop(self, why: Exception | str) -> None:
        if not self._failing:
            log.warning("registry change notifications lost (%s): reconnecting, polling every "
                        "%.0f s meanwhile", why, self.interval)
        self._failing = True
        if self.conn is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self.conn.fileno())
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def _on_readable(self) -> None:
        try:
            got = self._drain()
        except Exception as e:  # the server went away: the next wait reconnects
            self._drop(e)
            got = True
        if got and self._event is not None:
            self._event.set()

    # -- asyncio -----------------------------------------------------------------------

    async def _ensure(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Connected and watched by ``loop``; True when it was (re)connected just now."""
        if self.conn is not None and self._loop is loop:
            return False
        if self.conn is not None:  # another loop (a test's second asyncio.run): start over
            self._drop("event loop changed")
        conn = await loop.run_in_executor(None, self._connect)
        self.conn, self._loop = conn, loop
        self._event = asyncio.Event()
        loop.add_reader(conn.fileno(), self._on_readable)
        if self._failing:
            log.info("registry change notifications back")
        self._failing = False
        return True

    async def wait(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        """Until a notification, ``timeout`` or ``stop``; True when something may have
        changed (a notification, a fresh connection, or a fallback poll is due)."""
        loop = asyncio.get_running_loop()
        try:
            if await self._ensure(loop):
                return True
        except Exception as e:
            self._drop(e)
            await _sleep_or_stop(min(RECONNECT_DELAY * 5, timeout), stop)
            return True
        event = self._event
        if event.is_set() or self.conn.notifies:
            event.clear()
            self.conn.notifies.clear()
            return True
        waiters = [asyncio.ensure_future(event.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        event.clear()
        return True

    # -- blocking (scripts, tests) -------------------------------------------------------

    def wait_blocking(self, timeout: float) -> bool:
        """select() on the connection; True when a notification arrived in time."""
        deadline = time.monotonic() + timeout
        if self.conn is None:
            try:
                self.conn = self._connect()
            except Exception as e:
                self._drop(e)
                time.sleep(min(RECONNECT_DELAY, timeout))
                return True
        while True:
            try:
                if self._drain():
                    return True
            except Exception as e:
                self._drop(e)
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self.conn], [], [], left)

    def close(self) -> None:
        if self.conn is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self.conn.fileno())
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
