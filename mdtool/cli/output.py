"""Output the way the OpenStack client does: -f table|json|value|shell|yaml|csv, -c COLUMN,
--max-width, --prefix (shell) and, for lists, --long."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import textwrap
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable

import click

from mdtool.errors import BadInput

FORMATS = ("table", "json", "value", "shell", "yaml", "csv")


@dataclass(frozen=True)
class Layout:
    """How to lay out a table or shell output, beside the format and the columns."""

    max_width: int = 0      # 0: no limit
    prefix: str = ""        # shell variable names start with this
    long: bool = False      # lists: every column, not only the default ones


_LAYOUT_KEY = "mdtool.output.layout"


def _remember(name: str):
    def callback(ctx: click.Context, _param, value):
        layout = ctx.meta.get(_LAYOUT_KEY, Layout())
        ctx.meta[_LAYOUT_KEY] = Layout(**{**asdict(layout), name: value})
        return value
    return callback


def current_layout() -> Layout:
    """The --max-width/--prefix/--long of the command being run (defaults outside one)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_LAYOUT_KEY, Layout()) if ctx else Layout()


def format_options(f: Callable | None = None, *, listing: bool = False) -> Callable:
    """-f/-c for every command that prints resources; the layout options go to the context
    (``current_layout()``), so command signatures stay (fmt, columns)."""
    def decorate(f: Callable) -> Callable:
        if listing:
            f = click.option("--long", is_flag=True, expose_value=False, is_eager=True,
                             callback=_remember("long"),
                             help="Every column, not only the default ones.")(f)
        f = click.option("--prefix", default="", metavar="P", expose_value=False, is_eager=True,
                         callback=_remember("prefix"),
                         help="Prefix of every variable name (-f shell).")(f)
        f = click.option("--max-width", type=click.IntRange(0), default=0, metavar="N",
                         expose_value=False, is_eager=True, callback=_remember("max_width"),
                         help="Wrap the widest columns so a table fits N characters (0: no limit).")(f)
        f = click.option("-c", "--column", "columns", multiple=True, metavar="NAME",
                         help="Show only this column (repeatable).")(f)
        f = click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
                         show_default=True, help="Output format.")(f)
        return f
    return decorate(f) if f is not None else decorate


@dataclass(frozen=True)
class Shown:
    """A structured value (what json, yaml and csv carry) with the text a table shows."""

    value: Any
    text: str


def plain(value: Any) -> Any:
    """Dataclasses and friends to JSON-able structures."""
    if isinstance(value, Shown):
        return plain(value.value)
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
    if isinstance(value, Shown):
        return value.text
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


def _fit(widths: list[int], max_width: int) -> list[int]:
    """Column widths whose table fits max_width: the widest columns give way first."""
    widths = list(widths)
    floor = 8
    while max_width and sum(widths) + 3 * len(widths) + 1 > max_width:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        excess = sum(widths) + 3 * len(widths) + 1 - max_width
        others = sorted(w for i, w in enumerate(widths) if i != widest)
        target = max(floor, widths[widest] - excess, others[-1] if others else floor)
        if target >= widths[widest]:
            target = widths[widest] - 1
        if target < floor:
            break  # cannot fit: leave it wide rather than unreadable
        widths[widest] = target
    return widths


def _wrap(lines: list[str], width: int) -> list[str]:
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, width, break_on_hyphens=False) or [""]
    return out


def ascii_table(headers: list[str], rows: list[list[str]], max_width: int = 0) -> str:
    """The prettytable layout of the neutron and openstack clients."""
    split = [[c.split("\n") for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(x) for x in lines))
    fitted = _fit(widths, max_width)
    if fitted != widths:
        split = [[_wrap(lines, w) if w < full else lines
                  for lines, w, full in zip(row, fitted, widths)] for row in split]
        widths = [max(w, len(h)) for w, h in zip(fitted, headers)]
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


def shell_name(field: str, prefix: str = "") -> str:
    """A valid shell variable name for a column, as the OpenStack client makes them
    (``binding:host_id`` -> ``binding_host_id``)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", prefix + field)
    return name if not name[:1].isdigit() else "_" + name


def _yaml(data: Any) -> str:
    import yaml  # only for -f yaml: keeps every other command's start-up lean
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False,
                          allow_unicode=True).rstrip("\n")


def _csv_cell(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def _csv(headers: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    w.writerow(headers)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue().rstrip("\n")


def show(record: dict[str, Any], fmt: str, columns: tuple[str, ...] = (),
         heading: str | None = None, layout: Layout | None = None) -> str:
    """One resource: Field/Value table (fields sorted), JSON/YAML object, values, shell
    variables or CSV."""
    layout = layout or current_layout()
    fields = _select(sorted(record), columns)
    if fmt == "json":
        return json.dumps({k: plain(record[k]) for k in fields}, indent=2)
    if fmt == "yaml":
        return _yaml({k: plain(record[k]) for k in fields})
    if fmt == "csv":
        return _csv(["Field", "Value"], [[k, record[k]] for k in fields])
    if fmt == "value":
        return "\n".join(cell(record[k]) for k in fields)
    if fmt == "shell":
        return "\n".join(f"{shell_name(k, layout.prefix)}={shlex.quote(cell(record[k]))}"
                         for k in fields)
    table = ascii_table(["Field", "Value"], [[k, cell(record[k])] for k in fields],
                        layout.max_width)
    return f"{heading}\n{table}" if heading else table


def listing(records: list[dict[str, Any]], default_columns: list[str], fmt: str,
            columns: tuple[str, ...] = (), layout: Layout | None = None) -> str:
    """Many resources: a table with a row each, a JSON/YAML array, values a line each,
    shell variables ``<column>_<n>`` or CSV."""
    layout = layout or current_layout()
    all_fields = list(records[0]) if records else default_columns
    known = list(dict.fromkeys(default_columns + all_fields))
    if columns:
        fields = _select(known, columns)
    else:
        fields = known if layout.long else default_columns
    if fmt == "json":
        return json.dumps([{k: plain(r[k]) for k in fields} for r in records], indent=2)
    if fmt == "yaml":
        return _yaml([{k: plain(r[k]) for k in fields} for r in records]) if records else "[]"
    if fmt == "csv":
        return _csv(fields, [[r[k] for k in fields] for r in records])
    if fmt == "value":
        return "\n".join(" ".join(cell(r[k]).replace("\n", ",") for k in fields) for r in records)
    if fmt == "shell":
        lines = []
        for i, r in enumerate(records):
            lines += [f"{shell_name(k, layout.prefix)}_{i}={shlex.quote(cell(r[k]))}" for k in fields]
        return "\n".join(lines)
    return ascii_table(fields, [[cell(r[k]) for k in fields] for r in records], layout.max_width)
