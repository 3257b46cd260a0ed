"""Shared bits of the resource commands."""

from __future__ import annotations

import click

from mdtool.cli import output

pass_ctx = click.pass_obj


def emit_one(record: dict, fmt: str, columns, heading: str | None = None) -> None:
    click.echo(output.show(record, fmt, columns, heading if fmt == "table" else None))


def emit_list(records: list[dict], default_columns: list[str], fmt: str, columns) -> None:
    text = output.listing(records, default_columns, fmt, columns)
    if text:
        click.echo(text)


def parse_pairs(values, keys, option, required=None):
    """Parse repeated 'k=v,k=v' options; every key is required unless told otherwise."""
    from mdtool.registry import validate
    req = keys if required is None else required
    return [validate.key_values(x, keys, option, req) for x in values]
