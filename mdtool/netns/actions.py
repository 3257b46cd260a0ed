"""Planned kernel changes: what to do (human text) and how (an ip_lib call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    text: str                       # "create namespace qdhcp-…", shown by --dry-run and reports
    op: str                         # the mdtool.netns.ip_lib function that does it, or
                                    # "module.function" of another mdtool.netns module
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def delete_idle_bridge(bridge: str | None, link, network_id: str, ports: list[str],
                       removed: set[str]) -> list[Action]:
    """Pure: delete ``bridge`` when mdtool created it for ``network_id`` (its alias says so)
    and it carries no port once ``removed`` are gone: the bridge goes with its last port."""
    from mdtool.netns import names
    if not bridge or link is None or link.alias != names.bridge_alias(network_id):
        return []
    if any(p not in removed for p in ports):
        return []
    return [Action(f"delete bridge {bridge} (created by mdtool)", "delete_link",
                   {"ifname": bridge})]


def apply(nl, actions: list[Action]) -> list[Action]:
    """Run the actions in order through netlink session ``nl`` (an ip_lib op takes it; an
    op of another module does not); stops at the first failure (OperationFailed)."""
    import importlib

    from mdtool.netns import ip_lib

    for action in actions:
        module, _, function = action.op.rpartition(".")
        if module:
            getattr(importlib.import_module(f"mdtool.netns.{module}"), function)(**action.args)
        else:
            getattr(ip_lib, function)(nl, **action.args)
    return actions
