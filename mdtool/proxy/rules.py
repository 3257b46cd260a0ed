"""What the proxy lets through: pure header rules, no I/O.

An instance must never be able to claim another identity, so only the fields named in the
allow-list of :mod:`mdtool.http.headers` pass, and the proxy states the two facts it knows
for sure: the peer address and the network the request arrived on.
"""

from __future__ import annotations

from mdtool.http.headers import END_TO_END as _END_TO_END
from mdtool.http.headers import FORWARDED_FOR, NETWORK_ID, is_identity
from mdtool.http.headers import HOP_BY_HOP as _HOP_BY_HOP  # noqa: F401 (one source, re-exported)

__all__ = ["FORWARDED_FOR", "NETWORK_ID", "is_forged", "upstream_headers"]


def is_forged(name: str) -> bool:
    """True for a header only the proxy, the agent or Nova may set (in any WSGI spelling)."""
    return is_identity(name)


def upstream_headers(headers: list[tuple[str, str]], peer: str,
                     network_id: str) -> list[tuple[str, str]]:
    """The headers forwarded to the agent for a request from ``peer`` on ``network_id``."""
    allowed = _END_TO_END
    out = [item for item in headers if item[0].lower() in allowed]
    out.append((FORWARDED_FOR, peer))
    out.append((NETWORK_ID, network_id))
    return out
