"""Connections, transactions and schema versions: the registry's small dialect layer.

Plain DB-API: Python's ``sqlite3`` for ``sqlite:///PATH``, ``psycopg2`` (imported only for
a PostgreSQL URL) for ``postgresql://`` (also ``postgres://`` and ``postgresql+psycopg2://``).
The queries (:mod:`mdtool.registry.api`) and the tables (:mod:`mdtool.registry.schema`) are
written once; what differs between the two lives here:

- placeholders: the SQL text uses ``?``; PostgreSQL gets ``%s``;
- SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writers, so concurrent mdtool
  processes queue for the write lock instead of failing with "database is locked";
- PostgreSQL writers queue on the ``registry_state`` row lock (see ``Registry._write``);
  read transactions are REPEATABLE READ, READ ONLY, so a view built from several queries
  is one snapshot (a read-only snapshot never fails to serialise);
- column values: JSON text is decoded, ``bytea`` comes back as ``bytes``, booleans as
  ``bool``, so a row reads the same on both;
- a few idle connections are kept per engine (PostgreSQL ones are pinged before reuse, as
  a server restart leaves them dead).

Schema changes are numbered steps applied in order inside one transaction; an upgrade
never drops data. Why not SQLAlchemy (which this replaced): importing it cost ~140 ms of
a ~220 ms ``mdtool net-list``, every CLI call and TAB paid it, and the registry has one
query path that needs none of its abstraction.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections import namedtuple
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from mdtool.errors import BadInput, OperationFailed
from mdtool.files import create_private
from mdtool import model
from mdtool.registry import schema

BUSY_TIMEOUT_MS = 60_000
SQLITE_IDLE = 5      # idle connections kept per engine
POSTGRESQL_IDLE = 2

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)


class Engine:
    """One registry database: its dialect, a few pooled connections, transactions."""

    def __init__(self, url: str):
        m = _URL.match(url or "")
        if not m:
            raise BadInput(f"invalid database URL {_masked(url)!r}: expected sqlite:///PATH or postgresql://…")
        scheme, rest = m.group(1).lower(), m.group(2)
        self.url = url
        self.listeners: list[Callable[[str], None]] = []  # each statement, for tests
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        self._rows: dict[tuple, tuple] = {}
        if scheme in ("sqlite", "sqlite+pysqlite"):
            self.dialect = "sqlite"
            self.database = rest.partition("/")[2].split("?", 1)[0] or ":memory:"
            self.memory = self.database == ":memory:"
            self._max_idle = SQLITE_IDLE
            self.errors = (sqlite3.OperationalError, sqlite3.IntegrityError)
            self.driver_error = sqlite3.Error   # every error the driver raises
            if not self.memory:
                # private from its first byte: SQLite gives -wal and -shm the file's mode
                create_private(self.database)
            else:  # one connection is the database: share it, one transaction at a time
                self._memory_lock = threading.Lock()
        elif scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
            import psycopg2
            import psycopg2.extensions
            import psycopg2.extras
            self._pg = psycopg2
            self.dialect = "postgresql"
            self.database = None
            self.memory = False
            self._max_idle = POSTGRESQL_IDLE
            # libpq reads the URI itself (host, port, user, password, dbname, ?options)
            self.dsn = "postgresql://" + rest
            self.errors = (psycopg2.OperationalError, psycopg2.IntegrityError)
            self.driver_error = psycopg2.Error
        else:
            raise BadInput(f"unsupported database URL {_masked(url)!r}: use sqlite:///PATH or postgresql://…")

    # -- raw connections ------------------------------------------------------------------

    def raw_connect(self, **params):
        """A new DB-API connection, set up as every registry connection is."""
        if self.dialect == "sqlite":
            raw = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            raw.execute("PRAGMA foreign_keys=ON")
            raw.execute("PRAGMA synchronous=NORMAL")
            return raw
        raw = self._pg.connect(self.dsn, **params)
        # json columns come back as their text, decoded below as SQLite's are
        self._pg.extras.register_default_json(raw, loads=lambda s: s)
        return raw

    def _checkout(self):
        with self._lock:
            while self._idle:
                raw, since = self._idle.pop()
                if self.dialect == "sqlite":
                    return raw
                if not raw.closed and self._ping(raw):
                    return raw
        return self.raw_connect()

    def _ping(self, raw) -> bool:
        try:
            with raw.cursor() as cur:
                cur.execute("SELECT 1")
            raw.rollback()
            return True
        except (self.driver_error, OSError):
            try:
                raw.close()
            except self.driver_error:
                pass
            return False

    def _checkin(self, raw, healthy: bool) -> None:
        if healthy:
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append((raw, time.monotonic()))
                    return
        try:
            raw.close()
        except (self.driver_error, OSError):  # closing a broken connection: nothing to release
            pass

    def dispose(self) -> None:
        """Close the idle connections (a later transaction opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for raw, _ in idle:
            try:
                raw.close()
            except (self.driver_error, OSError):  # already broken: nothing to release
                pass

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def begin(self, write: bool = False) -> Iterator["Connection"]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        if self.memory:
            self._memory_lock.acquire()
        try:
            raw = self._checkout()
            healthy = False
            try:
                if self.dialect == "sqlite":
                    self._notify_listeners("BEGIN IMMEDIATE" if write else "BEGIN")
                    raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                elif write:
                    raw.set_session(isolation_level="READ COMMITTED", readonly=False)
                else:
                    raw.set_session(isolation_level="REPEATABLE READ", readonly=True)
                    self._notify_listeners("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield Connection(self, raw)
                if self.dialect == "sqlite":
                    raw.execute("COMMIT")
                else:
                    raw.commit()
                healthy = True
            finally:
                if not healthy:
                    healthy = self._rollback(raw)
                self._checkin(raw, healthy)
        finally:
            if self.memory:
                self._memory_lock.release()

    def _rollback(self, raw) -> bool:
        """Roll back after a failure; False when the connection is broken (not reused)."""
        try:
            if self.dialect == "sqlite":
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
            else:
                raw.rollback()
            return True
        except (self.driver_error, OSError):  # the connection broke: closed, not pooled
            return False

    def _notify_listeners(self, statement: str) -> None:
        for listener in self.listeners:
            listener(statement)

    # -- statements -----------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """The dialect's text of a statement written with ``?`` placeholders."""
        if self.dialect == "sqlite":
            return text
        out = self._sql_cache.get(text)
        if out is None:
            out = self._sql_cache[text] = text.replace("%", "%%").replace("?", "%s")
        return out

    def row_type(self, description) -> tuple:
        """(namedtuple class, [(index, converter)]) for a cursor's columns."""
        names = tuple(d[0] for d in description)
        known = self._rows.get(names)
        if known is None:
            convert = [(i, _CONVERTERS[n]) for i, n in enumerate(names) if n in _CONVERTERS]
            known = self._rows[names] = (namedtuple("Row", names, rename=True), convert)
        return known


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _bytes(value):
    return bytes(value) if isinstance(value, memoryview) else value


def _bool(value):
    return None if value is None else bool(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    **{c: _json for c in schema.JSON_COLUMNS},
    **{c: _bytes for c in schema.BINARY_COLUMNS},
    **{c: _bool for c in schema.BOOLEAN_COLUMNS},
}


class Result:
    """The rows of one statement (read at once) and, for a change, how many it touched."""

    def __init__(self, rows: list, rowcount: int):
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self):
        return iter(self._rows)

    def all(self) -> list:
        return list(self._rows)

    def first(self):
        return self._rows[0] if self._rows else None

    def one(self):
        if len(self._rows) != 1:
            raise OperationFailed(f"registry: expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self):
        return self._rows[0][0] if self._rows else None

    def scalar_one(self):
        return self.one()[0]

    def scalars(self) -> list:
        return [r[0] for r in self._rows]


class Connection:
    """A connection inside one transaction (see :meth:`Engine.begin`)."""

    def __init__(self, engine: Engine, raw):
        self.engine = engine
        self.dialect = engine.dialect
        self.raw = raw

    def execute(self, text: str, params: Sequence = ()) -> Result:
        """Run one statement written with ``?`` placeholders."""
        e = self.engine
        if e.listeners:
            e._notify_listeners(text)
        cur = self.raw.cursor()
        try:
            cur.execute(e.sql(text), tuple(params))
            if cur.description is None:
                return Result([], cur.rowcount)
            cls, convert = e.row_type(cur.description)
            rows = cur.fetchall()
            if convert:
                out = []
                for r in rows:
                    r = list(r)
                    for i, f in convert:
                        r[i] = f(r[i])
                    out.append(cls._make(r))
            else:
                out = [cls._make(r) for r in rows]
            return Result(out, cur.rowcount)
        finally:
            cur.close()

    def insert(self, table: str, values: dict[str, Any]) -> None:
        """INSERT one row; JSON columns are given as Python values."""
        self.insert_many(table, [values])

    def insert_many(self, table: str, rows: list[dict[str, Any]]) -> None:
        """INSERT rows that all have the columns of the first (one statement, executemany)."""
        if not rows:
            return
        cols = list(rows[0])
        text = (f"INSERT INTO {table} ({', '.join(_quote(c) for c in cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})")
        if self.engine.listeners:
            self.engine._notify_listeners(text)
        cur = self.raw.cursor()
        try:
            cur.executemany(self.engine.sql(text),
                            [tuple(_encode(c, r[c]) for c in cols) for r in rows])
        finally:
            cur.close()

    def update(self, table: str, values: dict[str, Any], where: str, params: Sequence = ()) -> int:
        """UPDATE ``table`` SET values WHERE ``where``; the number of rows changed."""
        sets = ", ".join(f"{_quote(c)} = ?" for c in values)
        return self.execute(f"UPDATE {table} SET {sets} WHERE {where}",
                            [_encode(c, v) for c, v in values.items()] + list(params)).rowcount

    # -- what is there (for the migrations) -----------------------------------------------

    def has_table(self, table: str) -> bool:
        if self.dialect == "sqlite":
            q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            q = ("SELECT 1 FROM information_schema.tables "
                 "WHERE table_schema = current_schema() AND table_name = ?")
        return self.execute(q, (table,)).first() is not None

    def columns(self, table: str) -> set[str]:
        if self.dialect == "sqlite":
            return {r.name for r in self.execute(f"PRAGMA table_info({_quote(table)})")}
        return set(self.execute("SELECT column_name FROM information_schema.columns "
                                "WHERE table_schema = current_schema() AND table_name = ?",
                                (table,)).scalars())

    def tables(self) -> list[str]:
        if self.dialect == "sqlite":
            return self.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY name").scalars()
        return self.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = current_schema() ORDER BY table_name").scalars()


def _quote(column: str) -> str:
    # "position" is a keyword of PostgreSQL; quoting every column keeps one text for both
    return f'"{column}"'


def _encode(column: str, value):
    if column in schema.JSON_COLUMNS:
        return json.dumps(value)
    return value


# -- schema versions ---------------------------------------------------------------------

def _v1(conn: Connection) -> None:
    for statement in schema.create_statements(conn.dialect):
        conn.execute(statement)


def _v2(conn: Connection) -> None:
    """network_hosts: which nodes serve a network. A node that served a network before
    (it holds a DHCP port there) keeps serving it."""
    if conn.has_table("network_hosts"):
        return
    for statement in schema.create_statements(conn.dialect, only="network_hosts"):
        conn.execute(statement)
    rows = conn.execute("SELECT DISTINCT network_id, host FROM ports "
                        "WHERE device_owner = ? AND host != ''", ("network:dhcp",)).all()
    if rows:
        import datetime as dt
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for r in rows:
            conn.insert("network_hosts", {"network_id": r.network_id, "host": r.host,
                                          "created_at": now})


def _v3(conn: Connection) -> None:
    """subnets.ipv6_address_mode and ipv6_ra_mode (Neutron's; NULL: neither set)."""
    have = conn.columns("subnets")
    for column in ("ipv6_address_mode", "ipv6_ra_mode"):
        if column not in have:
            conn.execute(f"ALTER TABLE subnets ADD COLUMN {column} VARCHAR(32)")


def _v4_port_security(conn: Connection) -> None:
    # Neutron's port_security_enabled, on by default; v1 already has it on a new database,
    # so add it only where it is missing.
    if "port_security_enabled" not in conn.columns("ports"):
        conn.execute("ALTER TABLE ports ADD COLUMN port_security_enabled BOOLEAN "
                     "NOT NULL DEFAULT TRUE")


def _v5_flavor(conn: Connection) -> None:
    """instances.flavor: the flavor name Nova's EC2 instance-type gives (existing
    instances get the default one)."""
    if "flavor" not in conn.columns("instances"):
        conn.execute("ALTER TABLE instances ADD COLUMN flavor VARCHAR(255) "
                     f"NOT NULL DEFAULT '{model.DEFAULT_FLAVOR}'")


# Any constant: concurrent first starts on an empty PostgreSQL database take turns.
_PG_UPGRADE_LOCK = 0x6D64746F6F6C  # "mdtool"

# (version, step). Append new steps; never edit a released one.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3),
                                                           (4, _v4_port_security),
                                                           (5, _v5_flavor)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def make_engine(url: str) -> Engine:
    return Engine(url)


def with_database(url: str, name: str) -> str:
    """``url`` (a server) naming the database ``name`` instead of its own."""
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{netloc}/{name}" + (f"?{query}" if query else "")


def _masked(url: str) -> str:
    """The URL for an error message: never its password (config.mask_url, the one rule)."""
    from mdtool.config import mask_url
    return mask_url(url)


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect == "postgresql"


def _found_version(conn: Connection) -> int:
    if not conn.has_table("registry_state"):
        return 0
    return conn.execute("SELECT schema_version FROM registry_state").scalar() or 0


def _upgrade_locked(engine: Engine) -> int:
    with engine.begin(write=True) as conn:
        if is_postgresql(engine):
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_UPGRADE_LOCK,))
        current = _found_version(conn)  # again, under the lock: another process may have won
        if current > SCHEMA_VERSION:
            raise OperationFailed(
                f"the registry has schema version {current}, newer than this mdtool "
                f"({SCHEMA_VERSION}): upgrade mdtool")
        for version, step in MIGRATIONS:
            if version > current:
                step(conn)
        if current == 0:
            conn.insert("registry_state", {"id": 1, "schema_version": SCHEMA_VERSION,
                                           "revision": 1})
        elif current < SCHEMA_VERSION:
            conn.update("registry_state", {"schema_version": SCHEMA_VERSION}, "id = ?", (1,))
        return current


def _busy(e: Exception) -> bool:
    """SQLite's 'database is locked'/'busy': returned at once, without the busy handler, while
    another connection recovers a WAL left by a killed writer or changes the journal mode."""
    msg = str(e).lower()
    return "database is locked" in msg or "database is busy" in msg


def upgrade(engine: Engine) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before.

    Opening never writes when the schema is current (the common case: every CLI call, every
    TAB completion): one read transaction checks the version, and only an old or empty
    database takes the write lock. A busy SQLite is retried with backoff for up to the busy
    timeout, as the write path waits for its lock, instead of failing the command.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            with engine.begin() as conn:
                current = _found_version(conn)
            if current == SCHEMA_VERSION:
                return current
            return _upgrade_locked(engine)
        except engine.errors[0] as e:
            if _busy(e) and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            raise OperationFailed(f"cannot open the registry database: {_short(e)}"
                                  f"{_full_hint(engine)}") from None


def _full_hint(engine: Engine) -> str:
    """SQLite says 'disk I/O error' when it cannot grow its -shm/-wal files: name the cause."""
    db_path = engine.database if engine.dialect == "sqlite" else None
    if not db_path or db_path == ":memory:":
        return ""
    folder = os.path.dirname(os.path.abspath(db_path))
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    if st.f_bavail == 0 or st.f_favail == 0:
        return f" (no space left on the file system of {folder}: free some space, then retry)"
    return ""


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def secure_sqlite_file(engine: Engine) -> None:
    """The registry holds user-data and keys: keep the SQLite files private."""
    if engine.dialect == "sqlite" and not engine.memory:
        for suffix in ("", "-wal", "-shm"):
            p = engine.database + suffix
            try:
                if os.stat(p).st_mode & 0o777 != 0o600:
                    os.chmod(p, 0o600)
            except FileNotFoundError:
                pass
            except OSError as e:  # a read-only state dir: say so, no traceback
                raise OperationFailed(f"cannot make {p} private (chmod 600): {e.strerror}") from None
