"""mdtool.files: every mode explicit, whatever the umask (issue 13.8)."""

import os
import stat

import pytest

from mdtool import files


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_folders_made_on_the_way_get_the_mode(tmp_path, umask_000):
    files.ensure_dir(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o755] * 3
    files.ensure_dir(tmp_path / "a" / "b" / "c", 0o700)
    assert mode(tmp_path / "a/b/c") == 0o700 and mode(tmp_path / "a/b") == 0o755


def test_write_atomic_leaves_existing_folders_alone(tmp_path, umask_000):
    os.chmod(tmp_path, 0o711)
    assert files.write_atomic(tmp_path / "new" / "f", "x")
    assert (mode(tmp_path), mode(tmp_path / "new"), mode(tmp_path / "new" / "f")) == (0o711, 0o755, 0o644)
    assert files.write_atomic(tmp_path / "s", "secret", files.PRIVATE_MODE)
    assert mode(tmp_path / "s") == 0o600


def test_open_append_creates_and_corrects_the_mode(tmp_path, umask_000):
    log = tmp_path / "log" / "x.log"
    with files.open_append(log) as f:
        f.write(b"one\n")
    assert (mode(log), mode(log.parent)) == (0o640, 0o755)
    os.chmod(log, 0o666)
    with files.open_append(log) as f:
        f.write(b"two\n")
    assert mode(log) == 0o640 and log.read_bytes() == b"one\ntwo\n"


def test_create_private_never_touches_an_existing_file(tmp_path, umask_000):
    db = tmp_path / "db" / "mdtool.db"
    files.create_private(db)
    assert mode(db) == 0o600 and db.read_bytes() == b""
    db.write_bytes(b"data")
    files.create_private(db)
    assert db.read_bytes() == b"data"


def test_daemon_log_file_mode(tmp_path, umask_000):
    import logging

    from mdtool import logs
    from mdtool.config import Config
    cfg = Config(state_dir=str(tmp_path), environ={"MDTOOL_LOG_DIR": str(tmp_path / "logs")})
    handler = logs.setup(cfg, "agent", verbose=0)
    handler.LOOK_EVERY = 0.0  # look for a moved file at every write (default: every 1 s)
    try:
        logging.getLogger("mdtool.test").info("hello")
        path = tmp_path / "logs" / "mdtool-agent.log"
        assert (mode(path), mode(path.parent)) == (0o640, 0o755)
        assert "hello" in path.read_text()
        path.unlink()  # logrotate moved it away: the reopened file gets the mode too
        logging.getLogger("mdtool.test").info("again")
        assert mode(path) == 0o640 and "again" in path.read_text()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_write_atomic_without_fsync(tmp_path, monkeypatch, umask_000):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    assert files.write_atomic(tmp_path / "pid", "123\n", durable=False)
    assert synced == [] and mode(tmp_path / "pid") == 0o644
    assert files.write_atomic(tmp_path / "f", "x")
    assert len(synced) == 1
