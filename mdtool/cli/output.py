"""Output the way the OpenStack client does: -f table|json|value|shell, -c COLUMN."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import click

from mdtool.errors import BadInput

FORMATS = ("table", "json", "value", "shell")


def format_options(f: Callable) -> Callable:
    f = click.option("-c", "--column", "columns", multiple=True, metavar="NAME",
                     help="Show only this column (repeatable).")(f)
    f = click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True, help="Output format.")(f)
    return f


def plain(value: Any) -> Any:
    """Dataclasses and friends to JSON-able structures."""
    if is_dataclass(value):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    """One table cell: lists one item a line, dicts as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "\n".join(cell(v) for v in value)
    return str(value)


def _select(fields: list[str], columns: tuple[str, ...]) -> list[str]:
    if not columns:
        return fields
    unknown = [c for c in columns if c not in fields]
    if unknown:
        raise BadInput(f"unknown column {unknown[0]!r}; columns: {', '.join(fields)}")
    return list(columns)


def ascii_table(headers: list[str], rows: list[list[str]]) -> str:
    """The prettytable layout of the neutron and openstack clients."""
    split = [[c.split("\n") for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(x) for x in lines))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |", sep]
    for row in split:
        height = max(len(lines) for lines in row)
        for k in range(height):
            out.append("| " + " | ".join((lines[k] if k < len(lines) else "").ljust(w)
                                         for lines, w in zip(row, widths)) + " |")
    if rows:
        out.append(sep)
    return "\n".join(out)


def show(record: dict[str, Any], fmt: str, columns: tuple[str, ...] = (),
         heading: str | None = None) -> str:
    """One resource: Field/Value table (fields sorted), JSON object, values or shell vars."""
    fields = _select(sorted(record), columns)
    if fmt == "json":
        return json.dumps({k: plain(record[k]) for k in fields}, indent=2)
    if fmt == "value":
        return "\n".join(cell(record[k]) for k in fields)
    if fmt == "shell":
        return "\n".join(f"{k}={shlex.quote(cell(record[k]))}" for k in fields)
    table = ascii_table(["Field", "Value"], [[k, cell(record[k])] for k in fields])
    return f"{heading}\n{table}" if heading else table


def listing(records: list[dict[str, Any]], default_columns: list[str], fmt: str,
            columns: tuple[str, ...] = ()) -> str:
    """Many resources: a table with a row each, a JSON array, values a line each."""
    all_fields = list(records[0]) if records else default_columns
    known = list(dict.fromkeys(default_columns + all_fields))
    fields = _select(default_columns, columns) if not columns else _select(known, columns)
    if fmt == "json":
        return json.dumps([{k: plain(r[k]) for k in fields} for r in records], indent=2)
    if fmt == "value":
        return "\n".join(" ".join(cell(r[k]).replace("\n", ",") for k in fields) for r in records)
    if fmt == "shell":
        lines = []
        for i, r in enumerate(records):
            lines += [f"{k}_{i}={shlex.quote(cell(r[k]))}" for k in fields]
        return "\n".join(lines)
    return ascii_table(fields, [[cell(r[k]) for k in fields] for r in records])
