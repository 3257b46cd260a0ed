"""A real PostgreSQL for the tests: a fresh, uniquely named database per test.

The server: ``MDTOOL_TEST_PG`` (an admin URL such as ``postgresql:///postgres``; set but
unreachable is an error, not a skip), else the local Unix socket that
``scripts/postgres.sh start`` (run by ``scripts/setup.sh --test``, hence by CI) brings up.
Without either, PostgreSQL tests are skipped.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

SOCKET_DIR = "/var/run/postgresql"
_checked: dict[str, str | None] = {}


def admin_url() -> str | None:
    """The admin URL of a reachable server, or None (raises when MDTOOL_TEST_PG is set but
    the server does not answer)."""
    if "url" in _checked:
        return _checked["url"]
    url = os.environ.get("MDTOOL_TEST_PG") or None
    explicit = url is not None
    if url is None and any(f.startswith(".s.PGSQL.") for f in _listdir(SOCKET_DIR)):
        url = "postgresql:///postgres"
    if url is not None:
        try:
            conn = _connect(url)
            conn.close()
        except Exception as e:
            if explicit:
                raise RuntimeError(f"MDTOOL_TEST_PG={url}: server unreachable: {e}") from None
            url = None
    _checked["url"] = url
    return url


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _connect(url: str, dbname: str | None = None):
    import psycopg2
    kw = {"connect_timeout": 5}
    if dbname:
        kw["dbname"] = dbname
    conn = psycopg2.connect(_libpq(url), **kw)
    conn.autocommit = True
    return conn


def _libpq(url: str) -> str:
    """A registry URL as libpq reads it (no SQLAlchemy-style driver in the scheme)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep and scheme.startswith("postgres") else url


def database_url(admin: str, name: str) -> str:
    from mdtool.registry.db import with_database
    return with_database(admin, name)


def with_user(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password``."""
    from urllib.parse import quote
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    host = netloc.rpartition("@")[2]
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}{slash}{tail}"


def create_database(admin: str, prefix: str = "mdtool_test") -> tuple[str, str]:
    """CREATE DATABASE <prefix>_<random>; returns (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return name, database_url(admin, name)


def drop_database(admin: str, name: str) -> None:
    """Forget this process's engines on it, then DROP DATABASE … WITH (FORCE)."""
    try:
        from mdtool.registry import api
        url = database_url(admin, name)
        reg = api._REGISTRIES.pop(url, None)
        if reg is not None:
            reg.engine.dispose()
    except Exception:
        pass
    conn = _connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@contextmanager
def fresh_database(prefix: str = "mdtool_test") -> Iterator[str]:
    admin = admin_url()
    if admin is None:
        raise RuntimeError("no PostgreSQL server")
    name, url = create_database(admin, prefix)
    try:
        yield url
    finally:
        drop_database(admin, name)
