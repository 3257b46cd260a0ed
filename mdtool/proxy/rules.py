"""What the proxy lets through: pure header rules, no I/O.

An instance must never be able to claim another identity, so every header the agent or
Nova would trust is dropped when the client sent it, and the proxy states the two facts
it knows for sure: the peer address and the network the request arrived on.
"""

from __future__ import annotations

FORWARDED_FOR = "X-Forwarded-For"
NETWORK_ID = "X-Neutron-Network-ID"

# Exact names (lower case) and prefixes a client may not send.
_DROP_NAMES = frozenset({"x-forwarded-for", "x-tenant-id"})
_DROP_PREFIXES = ("x-neutron-", "x-quantum-", "x-instance-id")
# Hop-by-hop fields concern only the instance <-> proxy connection.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length"})


def is_forged(name: str) -> bool:
    """True for a header only the proxy, the agent or Nova may set."""
    lname = name.lower()
    return lname in _DROP_NAMES or lname.startswith(_DROP_PREFIXES)


def upstream_headers(headers: list[tuple[str, str]], peer: str,
                     network_id: str) -> list[tuple[str, str]]:
    """The headers forwarded to the agent for a request from ``peer`` on ``network_id``."""
    out = []
    append = out.append
    for item in headers:
        name = item[0]
        first = name[0] if name else ""
        if first in "xXcCkKpPtTuU":
            lname = name.lower()
            if lname in _DROP_NAMES or lname in _HOP_BY_HOP or lname.startswith(_DROP_PREFIXES):
                continue
        append(item)
    append((FORWARDED_FOR, peer))
    append((NETWORK_ID, network_id))
    return out
