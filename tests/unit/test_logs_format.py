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
