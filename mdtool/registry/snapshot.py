"""A registry that answers ``get_network`` from one read of every network, for a command
that visits many networks (``enable-isolated-metadata --all``).

Per network, enable asks for the same network about six times (four queries each); over
200 networks that was ~5000 queries. Here one read (four queries) serves them all, and
before each network ``refresh()`` compares the registry revision (one cheap query), so a
change made by anyone since the read is seen exactly as before: the snapshot is read
again, or, after a few re-reads, every call goes to the registry as it did without the
snapshot. Any call that may write sends the rest of that network's calls to the registry.
"""

from __future__ import annotations

import copy

from mdtool import model

# Calls that never write: served (get_network) or passed on without dropping the snapshot.
_READ_ONLY = frozenset({
    "revision", "list_networks", "list_subnets", "get_subnet", "list_ports", "get_port",
    "dhcp_ports", "list_instances", "get_instance", "changes", "wait_for_change",
    "networks_with_ports", "served_networks",
})
MAX_RELOADS = 3


class SnapshotRegistry:
    def __init__(self, registry):
        self._registry = registry
        self._revision: int | None = None
        self._by_id: dict[str, model.Network] = {}
        self._by_name: dict[str, list[model.Network]] = {}
        self._valid = False
        self._reloads = 0

    def _load(self) -> None:
        self._revision, nets = self._registry.networks_with_ports()
        self._by_id = {n.id: n for n in nets}
        self._by_name = {}
        for n in nets:
            self._by_name.setdefault(n.name, []).append(n)
        self._valid = True
        self._reloads += 1

    def refresh(self) -> None:
        """Before each network: is the snapshot still what the registry holds?"""
        if self._reloads > MAX_RELOADS:
            self._valid = False
            return
        if self._revision is not None and self._registry.revision() == self._revision:
            self._valid = True
            return
        if self._reloads == MAX_RELOADS:  # the registry keeps changing: read per call
            self._reloads += 1
            self._valid = False
            return
        self._load()

    def get_network(self, ref: str) -> model.Network:
        if self._valid:
            net = self._by_id.get(ref)
            if net is None:
                same = self._by_name.get(ref) if ref else None
                net = same[0] if same and len(same) == 1 else None
            if net is not None:
                return copy.deepcopy(net)
        # unknown, ambiguous, a prefix, or no valid snapshot: the registry decides
        return self._registry.get_network(ref)

    def __getattr__(self, name):
        attr = getattr(self._registry, name)
        if callable(attr) and name not in _READ_ONLY:
            def call(*args, **kwargs):
                self._valid = False  # may write: the snapshot is stale from here on
                return attr(*args, **kwargs)
            return call
        return attr
