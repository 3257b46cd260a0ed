import os

import pytest
from click.testing import CliRunner

from mdtool.cli import cli


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    d = tmp_path / "state"
    monkeypatch.setenv("MDTOOL_STATE_DIR", str(d))
    monkeypatch.delenv("MDTOOL_DB", raising=False)
    monkeypatch.delenv("MDTOOL_CONFIG", raising=False)
    return d


@pytest.fixture
def run(state_dir):
    """Invoke mdtool in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def _run(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return _run


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_db(request, state_dir, monkeypatch):
    """Run the test's commands on SQLite (the state dir's default) and on a fresh PostgreSQL
    database (MDTOOL_DB; skipped without a server, see tests/pg.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{state_dir}/mdtool.db"
        return
    from tests import pg
    if pg.admin_url() is None:
        pytest.skip("no PostgreSQL server (scripts/postgres.sh start)")
    with pg.fresh_database() as url:
        monkeypatch.setenv("MDTOOL_DB", url)
        yield url


@pytest.fixture
def db_snapshot(state_dir):
    """A full dump of the registry, to show a refused command changed nothing."""
    def snap():
        from mdtool.registry import db
        eng = db.make_engine(os.environ.get("MDTOOL_DB") or f"sqlite:///{state_dir}/mdtool.db")
        out = {}
        with eng.begin() as conn:
            for table in conn.tables():
                out[table] = sorted(map(tuple, conn.execute(f"SELECT * FROM {table}").all()),
                                    key=repr)
        eng.dispose()
        return out

    return snap
