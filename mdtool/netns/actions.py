"""Planned kernel changes: what to do (human text) and how (an ip_lib call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    text: str                       # "create namespace qdhcp-…", shown by --dry-run and reports
    op: str                         # name of the mdtool.netns.ip_lib function that does it
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def apply(actions: list[Action]) -> list[Action]:
    """Run the actions in order; stops at the first failure (OperationFailed)."""
    from mdtool.netns import ip_lib

    for action in actions:
        getattr(ip_lib, action.op)(**action.args)
    return actions
