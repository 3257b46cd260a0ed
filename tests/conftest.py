"""Fixtures shared by every tier: the registry backends (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import pytest

from tests import pg

BACKENDS = ["sqlite", "postgresql"]


def _pg_or_skip() -> str:
    if pg.admin_url() is None:
        pytest.skip("no PostgreSQL server (scripts/postgres.sh start, or MDTOOL_TEST_PG=postgresql:///postgres)")
    return pg.admin_url()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for this test (dropped afterwards); skips without a server."""
    _pg_or_skip()
    with pg.fresh_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh registry URL, once per backend: sqlite:///<tmp>/mdtool.db, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mdtool.db"
        return
    _pg_or_skip()
    with pg.fresh_database() as url:
        yield url
