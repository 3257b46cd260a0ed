"""Which header fields cross each hop of the metadata path: the one source of these rules.

Upstream requests are built from an allow-list, as Neutron's metadata agent builds Nova's
headers from scratch: a field an instance sent passes only when it is named in
:data:`END_TO_END`; the proxy and the agent then add the identity they state themselves.
A deny-list can never be complete: WSGI servers (Nova under eventlet, uwsgi, mod_wsgi)
file ``X_Instance_ID`` and ``X-Instance-ID`` under the same ``HTTP_X_INSTANCE_ID`` key, and
Nova takes the load-balancer path whenever ``X-Metadata-Provider`` is present, so either
reaching Nova turns a genuine request into a 403.
"""

from __future__ import annotations

from typing import Iterable

FORWARDED_FOR = "X-Forwarded-For"
NETWORK_ID = "X-Neutron-Network-ID"
INSTANCE_ID = "X-Instance-ID"
TENANT_ID = "X-Tenant-ID"
SIGNATURE = "X-Instance-ID-Signature"

# What an instance's request may carry through the proxy and the agent to Nova (lower case).
# Nova's metadata API reads no other field of the client's; the body's type is kept for the
# password POST; the User-Agent (read by nobody for identity) lets every hop's access line
# say who asked: inspect's own probes are tagged by it.
END_TO_END = frozenset({"accept", "content-type", "user-agent"})

# The User-Agent of `mdtool inspect`'s probes, and the tag each daemon's access line then
# carries, so an operator (and `inspect --port`) never takes a probe for an instance.
PROBE_AGENT = "mdtool-inspect"
PROBE_TAG = " probe=" + PROBE_AGENT


def probe_tag(user_agent: str | None) -> str:
    """:data:`PROBE_TAG` for a request inspect sent (by its User-Agent), else ''."""
    return PROBE_TAG if user_agent and user_agent.startswith(PROBE_AGENT) else ""

# Fields that describe one connection, never relayed in either direction (RFC 9110 7.6.1,
# plus the framing fields each hop sets again for itself).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade", "content-length"})

# Identity only the proxy, the agent or Nova may state (compared after folding '_' to '-',
# as a WSGI server does).
_IDENTITY_NAMES = frozenset({"x-forwarded-for", "x-tenant-id"})
_IDENTITY_PREFIXES = ("x-neutron-", "x-quantum-", "x-instance-id", "x-metadata-provider")


def wsgi_name(name: str) -> str:
    """The name a WSGI server files a field under, in lower case (``_`` and ``-`` alike)."""
    return name.lower().replace("_", "-")


def is_identity(name: str) -> bool:
    """True for a field that claims an identity (in any spelling a WSGI server would fold)."""
    n = wsgi_name(name)
    return n in _IDENTITY_NAMES or n.startswith(_IDENTITY_PREFIXES)


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fields of ``headers`` that may travel upstream, in their order."""
    return [item for item in headers if item[0].lower() in END_TO_END]


def relayable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response's fields without the hop-by-hop ones (what a hop passes back down)."""
    return [item for item in headers if item[0].lower() not in HOP_BY_HOP]
