"""Shared bits of the resource commands."""

from __future__ import annotations

from typing import Callable, Sequence

import click

from mdtool.cli import output
from mdtool.cli.app import Ctx, abort
from mdtool.errors import MdtoolError

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


def delete_each(ctx: Ctx, kind: str, refs: Sequence[str], delete: Callable[[str], list[str]]) -> None:
    """Delete each of REFS in turn, as `openstack … delete` does: a failure is reported and the
    rest still go. ``delete(ref)`` returns what it removed, said on stderr (silent with -q).
    Exit 1 when any failed; with one REF, that failure's own message and exit code."""
    failed: list[MdtoolError] = []
    for ref in refs:
        try:
            for line in delete(ref):
                ctx.say(line)
        except MdtoolError as e:
            if len(refs) == 1:
                raise
            failed.append(e)
            click.echo(f"mdtool: error: {kind} {ref!r}: {e}", err=True)
    if failed:
        abort(f"{len(failed)} of {len(refs)} {kind}s failed to delete", 1)
