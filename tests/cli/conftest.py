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


@pytest.fixture
def db_snapshot(state_dir):
    """A full dump of the registry, to show a refused command changed nothing."""
    import sqlalchemy as sa

    def snap():
        eng = sa.create_engine(f"sqlite:///{state_dir}/mdtool.db")
        out = {}
        with eng.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                out[table] = sorted(map(tuple, conn.exec_driver_sql(f"SELECT * FROM {table}").all()),
                                    key=repr)
        eng.dispose()
        return out

    return snap
