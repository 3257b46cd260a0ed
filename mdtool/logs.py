"""Logging of the daemons, set up one way: where lines go, what they look like, how much.

Lines go to stderr, or ``log_file`` (one file for all daemons), or ``<log_dir>/mdtool-<role>.log``.
Files are reopened when logrotate moves them. Under systemd (stderr is the journal, as
``JOURNAL_STREAM`` says) lines carry an sd-daemon(3) ``<priority>`` prefix and no timestamp:
journald stamps and ranks them itself. ``debug = true`` or ``-v`` on the command line: debug.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

# sd-daemon(3) priorities, as syslog(3) numbers them.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


# Everything a reader could take for a line break (str.splitlines() breaks on C1's NEL and
# on U+2028/U+2029 too) or a terminal control: an instance must never forge or split a
# log line through a path or a header it sent.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(m: re.Match) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: str) -> str:
    """``text`` on one line: CR, LF, NEL, U+2028, U+2029 and other controls escaped."""
    return _UNSAFE.sub(_escape_one, text) if _UNSAFE.search(text) else text


class _OneLine:
    """The message part of a record is always one line; only a traceback spans several."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))  # type: ignore[misc]


class JournalFormatter(_OneLine, logging.Formatter):
    """``<6>mdtool.agent: message``; a multi-line message (a traceback) keeps the prefix."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def stderr_is_journal(environ=None, stream=None) -> bool:
    """True when stderr is the journal stream systemd connected (see systemd.exec(5))."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    dev, _, ino = value.partition(":")
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def cli_verbosity() -> int:
    """How many -v the command line carried (0 outside a click command)."""
    click = sys.modules.get("click")  # never imported here: the lean proxy runs without it
    if click is None:
        return 0
    try:
        ctx = click.get_current_context(silent=True)
        return int(ctx.find_root().params.get("verbose") or 0) if ctx else 0
    except Exception:
        return 0


class TextFormatter(_OneLine, logging.Formatter):
    """``TEXT_FORMAT`` exactly, with the timestamp's strftime done once per second: the
    daemons log every request, and formatting the time was a visible part of that."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


def destination(config, role: str) -> Path | None:
    """The log file of ``role``, or None for stderr."""
    if config.get("log_file"):
        return Path(config.get("log_file"))
    if config.get("log_dir"):
        return Path(config.get("log_dir")) / f"mdtool-{role}.log"
    return None


class ModeFileHandler(logging.handlers.WatchedFileHandler):
    """A log file reopened after logrotate, created (and reopened) with files.LOG_MODE,
    never the umask's mode; missing folders get files.DIR_MODE."""

    def _open(self):
        import io

        from mdtool.files import open_append
        # logging flushes after every record
        return io.TextIOWrapper(io.BufferedWriter(open_append(self.baseFilename)),
                                encoding=self.encoding or "utf-8", errors=self.errors)


def setup(config, role: str, verbose: int | None = None, stream=None) -> logging.Handler:
    """Configure the root logger for daemon ``role``; returns the handler installed."""
    verbose = cli_verbosity() if verbose is None else verbose
    level = logging.DEBUG if config.get("debug") or verbose > 0 else logging.INFO
    path = destination(config, role)
    handler: logging.Handler
    if path is not None:
        handler = ModeFileHandler(path)
        journal = config.get("use_journal") == "yes"
    else:
        stream = sys.stderr if stream is None else stream
        handler = logging.StreamHandler(stream)
        mode = config.get("use_journal")
        journal = mode == "yes" or (mode == "auto" and stderr_is_journal(stream=stream))
    handler.setFormatter(JournalFormatter(JOURNAL_FORMAT) if journal else TextFormatter())
    # A line per request: skip what no format here prints (the walk up the stack for the
    # caller's file and line, thread and process names).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler._mdtool = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from an earlier setup, or the CLI's plain stderr handler (basicConfig);
        # anything else (a test's capture handler) stays.
        if getattr(old, "_mdtool", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
