"""Opening the registry (every CLI call, every TAB) never writes, and a busy SQLite is
waited for, not failed (issues 15.5 and 16.7)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from mdtool.errors import OperationFailed
from mdtool.registry import db
from mdtool.registry.api import Registry


def test_open_while_another_process_holds_the_write_lock(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    Registry(url)  # schema in place
    holder = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer in the middle of its transaction
    try:
        # Before: every open began with BEGIN IMMEDIATE and queued behind the writer for up
        # to the 60 s busy timeout. A read-only open goes straight through (WAL readers).
        res = subprocess.run([sys.executable, "-c",
                              "import sys; from mdtool.registry.api import Registry; "
                              "print(Registry(sys.argv[1]).revision())", url],
                             capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stderr
        assert int(res.stdout) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _locked() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("database is locked")


def test_a_busy_database_is_retried(tmp_path, monkeypatch):
    engine = db.make_engine(f"sqlite:///{tmp_path}/r.db")
    db.upgrade(engine)
    real, calls = db._found_version, []

    def flaky(conn):
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return real(conn)

    monkeypatch.setattr(db, "_found_version", flaky)
    assert db.upgrade(engine) == db.SCHEMA_VERSION
    assert len(calls) == 3


def test_other_errors_are_not_retried(tmp_path, monkeypatch):
    engine = db.make_engine(f"sqlite:///{tmp_path}/r.db")
    calls = []

    def broken(conn):
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "_found_version", broken)
    with pytest.raises(OperationFailed, match="disk I/O error"):
        db.upgrade(engine)
    assert calls == [1]


class _Broken:
    """A raw connection whose rollback fails the way *error* says."""

    def __init__(self, error):
        self.error = error
        self.in_transaction = True

    def execute(self, statement):
        raise self.error

    def close(self):
        raise self.error


def test_a_broken_connection_is_dropped_but_a_bug_is_never_hidden(tmp_path):
    from mdtool.registry.db import Engine
    engine = Engine(f"sqlite:///{tmp_path / 'r.db'}")
    # the driver says the connection broke: not reused, and closing it may fail quietly
    assert engine._rollback(_Broken(sqlite3.OperationalError("disk I/O error"))) is False
    engine._checkin(_Broken(sqlite3.OperationalError("disk I/O error")), healthy=False)
    # anything else is a bug in mdtool and must surface, not be taken for a broken connection
    with pytest.raises(TypeError):
        engine._rollback(_Broken(TypeError("a bug")))
    with pytest.raises(TypeError):
        engine._checkin(_Broken(TypeError("a bug")), healthy=False)
