"""Daemon logging: destination, journald format, level."""

import io
import logging
import os

import pytest

from mdtool import logs
from mdtool.config import Config


def cfg(tmp_path, **env):
    return Config(state_dir=str(tmp_path), config_file="/dev/null",
                  environ={f"MDTOOL_{k.upper()}": v for k, v in env.items()})


@pytest.fixture(autouse=True)
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_text_to_stream(tmp_path):
    buf = io.StringIO()
    logs.setup(cfg(tmp_path), "agent", verbose=0, stream=buf)
    logging.getLogger("mdtool.agent").info("hello")
    logging.getLogger("mdtool.agent").debug("hidden")
    line = buf.getvalue()
    assert line.endswith(" INFO mdtool.agent: hello\n") and "hidden" not in line


def test_journal_format_and_debug(tmp_path):
    buf = io.StringIO()
    logs.setup(cfg(tmp_path, use_journal="yes", debug="true"), "proxy", verbose=0, stream=buf)
    logging.getLogger("mdtool.proxy").debug("d")
    logging.getLogger("mdtool.proxy").warning("w\nsecond line")
    # A message is one line (its newline escaped); only a traceback spans lines, each
    # with the prefix.
    assert buf.getvalue() == "<7>mdtool.proxy: d\n<4>mdtool.proxy: w\\nsecond line\n"
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("mdtool.proxy").exception("failed")
    tb = buf.getvalue().splitlines()[2:]
    assert tb[0] == "<3>mdtool.proxy: failed" and tb[1] == "<3>Traceback (most recent call last):"
    assert all(line.startswith("<3>") for line in tb)


def test_verbose_is_debug_and_log_dir(tmp_path):
    logs.setup(cfg(tmp_path, log_dir=str(tmp_path / "log")), "metadata", verbose=1)
    logging.getLogger("mdtool.metadata").debug("dbg")
    for h in logging.getLogger().handlers:
        h.flush()
    assert "DEBUG mdtool.metadata: dbg" in (tmp_path / "log" / "mdtool-metadata.log").read_text()


def test_journal_stream_detection(tmp_path):
    f = open(tmp_path / "x", "w")
    st = os.fstat(f.fileno())
    assert logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
    assert not logs.stderr_is_journal({"JOURNAL_STREAM": "1:2"}, f)
    assert not logs.stderr_is_journal({}, f)
    f.close()
