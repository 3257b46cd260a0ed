"""Engines and schema versions.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writers, so concurrent
mdtool processes queue for the write lock instead of failing with "database is locked".
Schema changes are numbered steps applied in order inside one transaction; an upgrade
never drops data.

PostgreSQL: ``postgresql://`` means psycopg2 (SQLAlchemy 2.1 would pick psycopg 3, which
mdtool does not depend on). Writers queue on the ``registry_state`` row lock (see
``Registry._write``); read transactions are REPEATABLE READ, READ ONLY, so a view built
from several queries is one snapshot (a read-only snapshot never fails to serialise).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mdtool.errors import BadInput, OperationFailed
from mdtool.files import create_private
from mdtool import model
from mdtool.registry import schema

BUSY_TIMEOUT_MS = 60_000


def _v1(conn: Connection) -> None:
    schema.metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    """network_hosts: which nodes serve a network. A node that served a network before
    (it holds a DHCP port there) keeps serving it."""
    if sa.inspect(conn).has_table("network_hosts"):
        return
    schema.network_hosts.create(conn)
    p = schema.ports
    rows = conn.execute(sa.select(p.c.network_id, p.c.host).where(
        p.c.device_owner == "network:dhcp", p.c.host != "").distinct()).all()
    if rows:
        import datetime as dt
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        conn.execute(schema.network_hosts.insert(), [
            {"network_id": r.network_id, "host": r.host, "created_at": now} for r in rows])


def _v3(conn: Connection) -> None:
    """subnets.ipv6_address_mode and ipv6_ra_mode (Neutron's; NULL: neither set)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("subnets")}
    for column in ("ipv6_address_mode", "ipv6_ra_mode"):
        if column not in have:
            conn.exec_driver_sql(f"ALTER TABLE subnets ADD COLUMN {column} VARCHAR(32)")


def _v4_port_security(conn: Connection) -> None:
    # Neutron's port_security_enabled, on by default; v1 (create_all) already has it on a
    # new database, so add it only where it is missing.
    if "port_security_enabled" not in {c["name"] for c in sa.inspect(conn).get_columns("ports")}:
        conn.exec_driver_sql("ALTER TABLE ports ADD COLUMN port_security_enabled BOOLEAN "
                             "NOT NULL DEFAULT TRUE")


def _v5_flavor(conn: Connection) -> None:
    """instances.flavor: the flavor name Nova's EC2 instance-type gives (existing
    instances get the default one)."""
    if "flavor" not in {c["name"] for c in sa.inspect(conn).get_columns("instances")}:
        conn.exec_driver_sql("ALTER TABLE instances ADD COLUMN flavor VARCHAR(255) "
                             f"NOT NULL DEFAULT '{model.DEFAULT_FLAVOR}'")


# Any constant: concurrent first starts on an empty PostgreSQL database take turns.
_PG_UPGRADE_LOCK = 0x6D64746F6F6C  # "mdtool"

# (version, step). Append new steps; never edit a released one.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3),
                                                           (4, _v4_port_security),
                                                           (5, _v5_flavor)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def make_engine(url: str) -> Engine:
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise BadInput(f"invalid database URL {_masked(url)!r}: expected sqlite:///PATH or postgresql://…") from None
    if u.drivername == "postgres":
        u = pg_url(u)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            # private from its first byte: SQLite gives -wal and -shm the file's mode
            create_private(u.database)
        engine = sa.create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
                                  poolclass=sa.pool.NullPool if u.database in (None, "", ":memory:") else None)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn):
            write = conn.get_execution_options().get("mdtool_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if u.get_backend_name() == "postgresql":
        u = pg_url(u)
        engine = sa.create_engine(u, pool_pre_ping=True, pool_size=2, max_overflow=4)

        @sa.event.listens_for(engine, "begin")
        def _on_pg_begin(conn):
            if not conn.get_execution_options().get("mdtool_write", False):
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

        return engine
    raise BadInput(f"unsupported database URL {_masked(url)!r}: use sqlite:///PATH or postgresql://…")


def _masked(url: str) -> str:
    """The URL for an error message: never its password (config.mask_url, the one rule)."""
    from mdtool.config import mask_url
    return mask_url(url)


def pg_url(u: sa.engine.URL) -> sa.engine.URL:
    """``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg2://``; an explicit driver stays."""
    if u.drivername in ("postgresql", "postgres"):
        return u.set(drivername="postgresql+psycopg2")
    return u


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _found_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("registry_state"):
        return 0
    return conn.execute(sa.select(schema.registry_state.c.schema_version)).scalar() or 0


def _upgrade_locked(engine: Engine) -> int:
    with engine.connect().execution_options(mdtool_write=True) as conn:
        with conn.begin():
            if is_postgresql(engine):
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_UPGRADE_LOCK})
            current = _found_version(conn)  # again, under the lock: another process may have won
            if current > SCHEMA_VERSION:
                raise OperationFailed(
                    f"the registry has schema version {current}, newer than this mdtool "
                    f"({SCHEMA_VERSION}): upgrade mdtool")
            for version, step in MIGRATIONS:
                if version > current:
                    step(conn)
            if current == 0:
                conn.execute(schema.registry_state.insert().values(
                    id=1, schema_version=SCHEMA_VERSION, revision=1))
            elif current < SCHEMA_VERSION:
                conn.execute(schema.registry_state.update().values(schema_version=SCHEMA_VERSION))
            return current


def _busy(e: sa.exc.OperationalError) -> bool:
    """SQLite's 'database is locked'/'busy': returned at once, without the busy handler, while
    another connection recovers a WAL left by a killed writer or changes the journal mode."""
    msg = str(getattr(e, "orig", e)).lower()
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
            with engine.connect() as conn, conn.begin():
                current = _found_version(conn)
            if current == SCHEMA_VERSION:
                return current
            return _upgrade_locked(engine)
        except sa.exc.OperationalError as e:
            if _busy(e) and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            raise OperationFailed(f"cannot open the registry database: {_short(e)}"
                                  f"{_full_hint(engine)}") from None


def _full_hint(engine: Engine) -> str:
    """SQLite says 'disk I/O error' when it cannot grow its -shm/-wal files: name the cause."""
    db_path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
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
    msg = str(getattr(e, "orig", e)).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def secure_sqlite_file(url: str) -> None:
    """The registry holds user-data and keys: keep the SQLite files private."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            p = u.database + suffix
            try:
                if os.stat(p).st_mode & 0o777 != 0o600:
                    os.chmod(p, 0o600)
            except FileNotFoundError:
                pass
            except OSError as e:  # a read-only state dir: say so, no traceback
                raise OperationFailed(f"cannot make {p} private (chmod 600): {e.strerror}") from None
