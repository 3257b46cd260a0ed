"""The daemons' text formatter prints what logging.Formatter(TEXT_FORMAT) prints."""

from __future__ import annotations

import logging

from mdtool.logs import TEXT_FORMAT, TextFormatter


def _record(created: float) -> logging.LogRecord:
    rec = logging.LogRecord("mdtool.agent", logging.INFO, __file__, 1, "status=%d", (200,), None)
    rec.created = created
    rec.msecs = (created - int(created)) * 1000
    return rec


def test_same_text_as_the_stock_formatter_across_seconds():
    ours, stock = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for created in (1700000000.001, 1700000000.999, 1700000001.0, 1700000001.5, 1700000061.25,
                    1700000000.002):
        rec = _record(created)
        assert ours.format(rec) == stock.format(_record(created))


def test_a_message_is_one_line_whatever_an_instance_sent():
    """CR, LF, NEL (U+0085), U+2028, U+2029 and other controls are escaped: str.splitlines
    (what log readers use) must see one line; a traceback still spans lines."""
    from mdtool.logs import JOURNAL_FORMAT, JournalFormatter
    path = "/a\r\nb\x85c\u2028d\u2029e\x1b[2Jf\x00"
    rec = logging.LogRecord("mdtool.proxy.access", logging.INFO, __file__, 1, "src=%s GET %s 404",
                            ("10.0.0.5", path), None)
    for fmt in (TextFormatter(), JournalFormatter(JOURNAL_FORMAT)):
        text = fmt.format(rec)
        assert len(text.splitlines()) == 1, text
        assert "/a\\r\\nb\\x85c\\u2028d\\u2029e\\x1b[2Jf\\x00 404" in text
    try:
        raise ValueError("x")
    except ValueError:
        import sys
        rec = logging.LogRecord("mdtool", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "Traceback" in TextFormatter().format(rec).splitlines()[1]


def test_info_lines_are_what_format_makes_of_each_record():
    """The deferred access lines' shortcut (no records): the stock formatter's text for
    each, across seconds and loggers, with what an instance sent escaped as ever."""
    stock = logging.Formatter(TEXT_FORMAT)
    ours = TextFormatter()
    lines = [(1700000000.0, "src=%s GET %s %d", ("10.0.0.5", "/a", 200)),
             (1700000000.9995, "src=%s GET %s %d", ("10.0.0.5", "/b%s\r\n\u2028", 404)),
             (1700000001.001, "plain, no args %s", ()),
             (1700000061.25, "%.1fms", (1.25,))]
    for name in ("mdtool.proxy.access", "mdtool.agent"):
        want = []
        for created, msg, args in lines:
            rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
            rec.created = created
            rec.msecs = int((created - int(created)) * 1000) + 0.0
            text = stock.format(rec)
            want.append(text.replace("\r\n\u2028", "\\r\\n\\u2028") + "\n")
        assert ours.info_lines(name, lines, "\n") == "".join(want)
