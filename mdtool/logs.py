"""Logging of the daemons, set up one way: where lines go, what they look like, how much.

Lines go to stderr, or ``log_file`` (one file for all daemons), or ``<log_dir>/mdtool-<role>.log``.
Files are reopened when logrotate moves them. A daemon's own file (``log_dir``, or the file
its stderr was sent to by ``enable-isolated-metadata``) also rotates by size,
``max_logfile_size_mb`` x ``max_logfile_count`` (``log_rotation_type = size``, oslo.log's
names). A line that cannot be written (a full log disk) is dropped and counted: logging
never stops a daemon. Under systemd (stderr is the journal, as ``JOURNAL_STREAM`` says)
lines carry an sd-daemon(3) ``<priority>`` prefix and no timestamp: journald stamps and
ranks them itself. ``debug = true`` or ``-v`` on the command line: debug.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import re
import sys
import time
import weakref
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
    ctx = click.get_current_context(silent=True)  # None outside a command
    return int(ctx.find_root().params.get("verbose") or 0) if ctx else 0


class TextFormatter(_OneLine, logging.Formatter):
    """``TEXT_FORMAT`` exactly, with the timestamp's strftime done once per second: the
    daemons log every request, and formatting the time was a visible part of that."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._stamp = ""
        self._uses_time = super().usesTime()  # the format never changes: look once
        self._parts: dict[str, tuple[str, str, str]] = {}  # info_lines' text by logger

    def usesTime(self) -> bool:
        return self._uses_time

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.default_msec_format % (self._second_stamp(record.created), record.msecs)

    def _second_stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(created))
            self._second = second
        return self._stamp

    def info_lines(self, name: str, lines: list[tuple[float, str, tuple]], end: str) -> str:
        """What ``format()`` makes of INFO records of logger ``name`` made at ``created``
        from ``msg % args`` (each followed by ``end``), without the records: the text
        around the time and the message is TEXT_FORMAT's, filled in once per logger."""
        parts = self._parts.get(name)
        if parts is None:
            parts = self._parts[name] = self._split(name)
        before, between, after = parts
        msec = self.default_msec_format
        stamp = self._second_stamp
        return "".join([before + msec % (stamp(created), int((created - int(created)) * 1000))
                        + between + escape(msg % args if args else msg) + after + end
                        for created, msg, args in lines])

    def _split(self, name: str) -> tuple[str, str, str]:
        """TEXT_FORMAT for an INFO line of ``name``: the text before the time, between the
        time and the message, and after the message."""
        filled = self._fmt % {"asctime": "\0", "levelname": "INFO", "name": name,
                              "message": "\1"}
        before, _, rest = filled.partition("\0")
        between, _, after = rest.partition("\1")
        return escape(before), escape(between), escape(after)


# How long a DeferredLines line may wait for the ones after it, and how many may wait.
FLUSH_DELAY = 0.005  # seconds
FLUSH_LINES = 256


class DeferredLines:
    """One logger's INFO lines, each stamped when it is made and written together at most
    FLUSH_DELAY after the first of them (at once when FLUSH_LINES wait), in order; what
    still waits when the daemon exits is written then (:func:`flush_deferred`).

    The proxy logs every request, and the logging call cost more than answering one from
    the cache: a record, the walk up the logger tree, the handler's lock, then a stat(),
    write() and flush() a line. Here a line costs its message and its time stamp. When the
    daemon logs to its own file alone (:func:`setup`'s :class:`RotatingFile`, the usual
    case) the waiting lines are formatted by that file's formatter (the text formatter
    without a record each: :meth:`TextFormatter.info_lines`) and written with one write():
    the same lines, in the same file. Any other set-up (a console, a test's
    capture handler, a filter) takes the ordinary logging call for each, at the flush.

    A write per loop iteration was still a write (and a stat) per request at one
    connection, where every request is an iteration of its own: about 8 % of the proxy's
    time. A few milliseconds' wait batches them there too."""

    def __init__(self, logger: logging.Logger):
        import asyncio  # here: the CLI imports this module and never needs asyncio
        self.logger = logger
        self._pending: list[tuple[float, str, tuple]] = []
        self._running_loop = asyncio.get_running_loop
        self._timer: asyncio.TimerHandle | None = None  # the flush to come, if any
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that runs it
        _DEFERRED.add(self)

    def info(self, msg: str, *args) -> None:
        """``logger.info(msg, *args)``, written within FLUSH_DELAY (at once outside a
        running loop)."""
        pending = self._pending
        pending.append((time.time(), msg, args))
        if len(pending) == 1:
            try:
                # Once a flush, not a line: in Python 3.11 it costs a getpid() syscall.
                loop = self._loop = self._running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_DELAY, self.flush)
        elif len(pending) >= FLUSH_LINES or not self._loop.is_running():
            # Many waiting, or lines left by a loop that ended before its timer ran.
            self.flush()

    def flush(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        pending, self._pending = self._pending, []
        if not pending:
            return
        handler = self._own_file()
        if handler is None:
            for _, msg, args in pending:
                self.logger.info(msg, *args)
            return
        name = self.logger.name
        end = handler.terminator
        try:
            formatter = handler.formatter
            if type(formatter) is TextFormatter:
                text = formatter.info_lines(name, pending, end)
            else:
                fmt = handler.format
                text = "".join([fmt(_plain_record(name, created, msg, args)) + end
                                for created, msg, args in pending])
        except Exception:  # a line its format refuses: the logging call reports it, as ever
            for _, msg, args in pending:
                self.logger.info(msg, *args)
            return
        handler.acquire()
        try:
            handler.write_lines(text, len(pending))
        finally:
            handler.release()

    def _own_file(self) -> RotatingFile | None:
        """The daemon's own file when it is the only place an INFO line of this logger
        goes, unfiltered; None otherwise."""
        logger: logging.Logger | None = self.logger
        root = logging.getLogger()
        if not logger.isEnabledFor(logging.INFO):
            return None
        while logger is not None and logger is not root:
            if logger.handlers or logger.filters or not logger.propagate:
                return None
            logger = logger.parent  # type: ignore[assignment]
        if logger is None or root.filters or len(root.handlers) != 1:
            return None
        handler = root.handlers[0]
        if type(handler) is not RotatingFile or handler.filters or handler.level > logging.INFO:
            return None
        return handler


_DEFERRED: "weakref.WeakSet[DeferredLines]" = weakref.WeakSet()


def flush_deferred() -> None:
    """Write every DeferredLines line still waiting (a daemon stopping; at exit too)."""
    for lines in list(_DEFERRED):
        lines.flush()


# After logging's own shutdown was registered (at its import), so run before it.
atexit.register(flush_deferred)

_RECORD = logging.LogRecord.__new__


def _plain_record(name: str, created: float, msg: str, args: tuple) -> logging.LogRecord:
    """The fields of an INFO record a formatter reads, without the rest of LogRecord's
    work (caller's file, thread, process); ``msecs`` as LogRecord computes it."""
    record = _RECORD(logging.LogRecord)
    record.__dict__.update(name=name, msg=msg, args=args, levelno=logging.INFO,
                           levelname="INFO", created=created,
                           msecs=int((created - int(created)) * 1000) + 0.0,
                           exc_info=None, exc_text=None, stack_info=None)
    return record


class Repeats:
    """Repeated lines of one (source, status), summarised: the first of a window is
    logged, the rest only counted; ``due()`` gives, once the window is over, how many
    were left out (``src=10.0.0.5: 17,431 more 429 in 10 s``). Pure; ``max_keys`` bounds
    its memory (beyond it lines are simply logged)."""

    def __init__(self, window: float = 10.0, max_keys: int = 10000):
        self.window = window
        self.max_keys = max_keys
        self._open: dict[tuple[str, int], list] = {}  # (source, status) -> [start, left out]

    def first(self, source: str, status: int, now: float) -> bool:
        """True: log this line; False: it was counted."""
        entry = self._open.get((source, status))
        if entry is None:
            if len(self._open) < self.max_keys:
                self._open[(source, status)] = [now, 0]
            return True
        entry[1] += 1
        return False

    def due(self, now: float, everything: bool = False) -> list[tuple[str, int, int, float]]:
        """(source, status, lines left out, seconds) of every window that is over."""
        if not self._open:  # the common case, asked every second for every network
            return []
        out = []
        for key, (start, n) in list(self._open.items()):
            if everything or now - start >= self.window:
                del self._open[key]
                if n:
                    out.append((key[0], key[1], n, now - start))
        return out


class RepeatGate:
    """Repeats for a daemon without a timer: ``allow()`` says whether a request's line is
    logged (every non-4xx, the first 4xx of a window) and, at most once a second, logs
    the summaries of the windows that ended with ``summary % (*key, count, status,
    seconds)`` (``key``: a tuple, e.g. (network, source)) through ``logger`` (a Logger,
    or the DeferredLines the request lines go through, so the two stay in order)."""

    def __init__(self, logger: "logging.Logger | DeferredLines", summary: str,
                 window: float = 10.0):
        self.logger = logger
        self.summary = summary
        self.repeats = Repeats(window)
        self._flushed = 0.0

    def allow(self, key: tuple, status: int, now: float) -> bool:
        if now - self._flushed >= 1.0:
            self._flushed = now
            for who, st, n, seconds in self.repeats.due(now):
                self.logger.info(self.summary, *who, f"{n:,}", st, seconds)
        return not 400 <= status < 500 or self.repeats.first(key, status, now)


class RotatingFile(logging.FileHandler):
    """A daemon's log file: rotated at ``max_bytes`` keeping ``backups`` old files
    (``path.1`` the newest), reopened when moved away (logrotate), always files.LOG_MODE.
    A failed write (ENOSPC) drops the line and counts it; one complaint a minute at most
    goes to stderr. Whether the file was moved is looked at (a stat) at most every
    LOOK_EVERY seconds, not at every write: lines written in between still land in the
    moved file (logrotate's copy), none is lost."""

    terminator = "\n"
    LOOK_EVERY = 1.0  # seconds

    def __init__(self, path: str | os.PathLike, max_bytes: int = 0, backups: int = 0):
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._complained = -60.0
        self._ident: tuple[int, int] | None = None
        self._size = 0
        self._look_due = 0.0  # time.monotonic() of the next look for a move
        super().__init__(path, mode="a", encoding="utf-8", delay=True)

    def _open(self):
        import io

        from mdtool.files import open_append
        # Created (and reopened after rotation or logrotate) with files.LOG_MODE, never
        # the umask's; missing folders get files.DIR_MODE. logging flushes every record.
        stream = io.TextIOWrapper(io.BufferedWriter(open_append(self.baseFilename)),
                                  encoding="utf-8", errors="backslashreplace")
        st = os.fstat(stream.fileno())
        self._ident = (st.st_dev, st.st_ino)
        self._look_due = time.monotonic() + self.LOOK_EVERY
        self._size = st.st_size
        return stream

    def _moved(self) -> bool:
        try:
            st = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # what it still held is lost with the line

    def _rotate(self) -> None:
        self._close_stream()
        base = self.baseFilename
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                if os.path.exists(f"{base}.{i}"):
                    os.replace(f"{base}.{i}", f"{base}.{i + 1}")
            os.replace(base, f"{base}.1")
        else:
            os.truncate(base, 0)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_lines(self, text: str, count: int) -> None:
        """``count`` formatted lines at once (each ending in the terminator); the caller
        holds the handler's lock. A failure drops them all, counted."""
        try:
            self._write(text)
        except RecursionError:
            raise
        except Exception:
            self.dropped += count - 1
            self.handleError(None)  # type: ignore[arg-type]

    def _write(self, msg: str) -> None:
        if self.stream is not None:
            now = time.monotonic()
            if now >= self._look_due:
                self._look_due = now + self.LOOK_EVERY
                if self._moved():
                    self._close_stream()
        if self.stream is not None and self.max_bytes and \
                self._size + len(msg) > self.max_bytes and self._size > 0:
            self._rotate()
        if self.stream is None:
            self.stream = self._open()
        self.stream.write(msg)
        self.stream.flush()
        self._size += len(msg)

    def handleError(self, record: logging.LogRecord | None) -> None:
        err = sys.exc_info()[1]
        self.dropped += 1
        self._close_stream()  # nothing half-written stays buffered to fail again
        now = time.monotonic()
        if now - self._complained >= 60.0:
            self._complained = now
            try:
                sys.stderr.write(f"mdtool: cannot write the log {self.baseFilename}: {err}; "
                                 f"{self.dropped} lines dropped so far\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


def _stderr_file(stream) -> str | None:
    """The regular file stderr was sent to (a daemon started in the background), if any."""
    try:
        fd = stream.fileno()
        if not os.path.isfile(f"/proc/self/fd/{fd}"):
            return None
        path = os.readlink(f"/proc/self/fd/{fd}")
    except (OSError, ValueError, AttributeError):
        return None
    return path if path.startswith("/") and not path.endswith(" (deleted)") else None


def _rotation(config) -> tuple[int, int]:
    if config.get("log_rotation_type") != "size":
        return 0, 0
    return config.get("max_logfile_size_mb") << 20, config.get("max_logfile_count")


def destination(config, role: str) -> Path | None:
    """The log file of ``role``, or None for stderr."""
    if config.get("log_file"):
        return Path(config.get("log_file"))
    if config.get("log_dir"):
        return Path(config.get("log_dir")) / f"mdtool-{role}.log"
    return None


def setup(config, role: str, verbose: int | None = None, stream=None) -> logging.Handler:
    """Configure the root logger for daemon ``role``; returns the handler installed."""
    verbose = cli_verbosity() if verbose is None else verbose
    level = logging.DEBUG if config.get("debug") or verbose > 0 else logging.INFO
    path = destination(config, role)
    handler: logging.Handler
    stream = sys.stderr if stream is None else stream
    mode = config.get("use_journal")
    redirected = None
    if path is None and not (mode == "yes" or (mode == "auto" and stderr_is_journal(stream=stream))):
        redirected = _stderr_file(stream)
    if path is not None or redirected is not None:
        # One file written by several daemons (log_file) is left to logrotate: two
        # processes renaming one file would lose lines.
        shared = path is not None and bool(config.get("log_file"))
        max_bytes, backups = (0, 0) if shared else _rotation(config)
        handler = RotatingFile(path or redirected, max_bytes, backups)
        journal = mode == "yes"
    else:
        handler = logging.StreamHandler(stream)
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
