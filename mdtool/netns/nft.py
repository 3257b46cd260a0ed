"""nftables through ``nft`` (the one program that speaks it), spawned by mdtool.process.

Tables are read as ``nft list table`` prints them and replaced whole from a ruleset text
in one ``nft -f`` transaction, so a table is never seen half-written.
"""

from __future__ import annotations

from mdtool import process
from mdtool.errors import OperationFailed

FAMILY = "bridge"


def list_table(table: str, family: str = FAMILY) -> str | None:
    """The table as ``nft list table`` prints it, or None when there is no such table."""
    res = process.run(["nft", "list", "table", family, table], check=False)
    if res.returncode == 0:
        return res.stdout
    if "No such file or directory" in res.stderr:
        return None
    msg = (res.stderr or res.stdout).strip().splitlines()
    raise OperationFailed(f"cannot read nft table {family} {table}: "
                          f"{msg[-1] if msg else f'exit status {res.returncode}'}")


def replace_table(table: str, ruleset: str) -> None:
    """Apply ``ruleset`` (a script that replaces ``table`` as a whole) in one transaction."""
    process.run(["nft", "-f", "-"], input=ruleset)


def delete_table(table: str, family: str = FAMILY) -> bool:
    """Delete the table; False when it was not there."""
    res = process.run(["nft", "delete", "table", family, table], check=False)
    if res.returncode == 0:
        return True
    if "No such file or directory" in res.stderr:
        return False
    msg = (res.stderr or res.stdout).strip().splitlines()
    raise OperationFailed(f"cannot delete nft table {family} {table}: "
                          f"{msg[-1] if msg else f'exit status {res.returncode}'}")
