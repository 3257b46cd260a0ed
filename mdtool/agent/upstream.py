"""The agent's way to Nova, from Neutron's options: this node's Unix socket, HTTP or HTTPS.

``problems(config)`` is the one check of the combinations: ``config check`` prints it and
``agent run`` refuses to start on it, so what passes the check is what the agent can use.
The TLS options mean what they mean in Neutron's ``metadata_agent.ini``:
``nova_metadata_insecure`` skips the check of Nova's certificate (``auth_ca_cert`` is then
unused), ``auth_ca_cert`` replaces the system's CAs, and ``nova_client_cert`` with
``nova_client_priv_key`` is the certificate the agent shows Nova.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit

from mdtool.errors import BadInput

TLS_OPTIONS = ("nova_metadata_insecure", "auth_ca_cert", "nova_client_cert",
               "nova_client_priv_key")


def _where(config, name: str) -> str:
    """``name`` and where its value comes from (file:line or variable)."""
    source = config.values[("DEFAULT", name)].source
    return name if source == "default" else f"{name} ({source})"


def uses_tls(config) -> bool:
    return urlsplit(config.nova_metadata_url).scheme == "https"


def problems(config) -> list[str]:
    """Every reason the agent could not reach Nova as configured, one line each."""
    out: list[str] = []
    url = config.nova_metadata_url
    protocol = config.get("nova_metadata_protocol")
    if protocol == "https" and url.startswith("unix:"):
        out.append(f"{_where(config, 'nova_metadata_protocol')} = https needs "
                   "nova_metadata_host (or an https:// nova_metadata_url): this node's "
                   "metadata service speaks plain HTTP on its Unix socket")
    elif protocol == "https" and url.startswith("http://"):
        out.append(f"{_where(config, 'nova_metadata_protocol')} = https, but "
                   f"{_where(config, 'nova_metadata_url')} is http://: say https:// there")
    cert, key = config.get("nova_client_cert"), config.get("nova_client_priv_key")
    if (cert is None) != (key is None):
        given, missing = (("nova_client_cert", "nova_client_priv_key") if key is None
                          else ("nova_client_priv_key", "nova_client_cert"))
        out.append(f"{_where(config, given)} is set without {missing}: give both")
    if out or not uses_tls(config):
        return out
    files = [("nova_client_cert", cert), ("nova_client_priv_key", key)]
    if not config.get("nova_metadata_insecure"):
        files.insert(0, ("auth_ca_cert", config.get("auth_ca_cert")))
    for name, path in files:
        if path is not None and not os.access(path, os.R_OK):
            reason = "does not exist" if not os.path.exists(path) else "is not readable"
            out.append(f"{_where(config, name)}: {path} {reason}")
    if not out:
        try:
            _context(config)
        except (ssl.SSLError, ValueError) as e:
            out.append(str(e))
    return out


def _context(config) -> ssl.SSLContext:
    """The TLS context of the options (ssl.SSLError/ValueError naming the option at fault)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.get("nova_metadata_insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.get("auth_ca_cert"):
        # Nova's CA replaces the system's, as requests' verify=<file> does in Neutron.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cafile=config.get("auth_ca_cert"))
        except ssl.SSLError as e:
            raise ValueError(f"{_where(config, 'auth_ca_cert')}: no CA certificate in "
                             f"{config.get('auth_ca_cert')} ({e.reason or e})") from None
    cert = config.get("nova_client_cert")
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, config.get("nova_client_priv_key"))
        except ssl.SSLError as e:
            raise ValueError(f"{_where(config, 'nova_client_cert')} and nova_client_priv_key: "
                             f"not a certificate and its key ({e.reason or e})") from None
    return ctx


def ssl_context(config) -> ssl.SSLContext | None:
    """The TLS context for an https:// Nova, None for HTTP; BadInput when it cannot work."""
    errors = problems(config)
    if errors:
        raise BadInput(errors[0])
    return _context(config) if uses_tls(config) else None


def upstream_pool(config, **kwargs):
    """The agent's :class:`~mdtool.http.client.UpstreamPool` toward Nova, as configured."""
    from mdtool.http.client import UpstreamPool
    context = ssl_context(config)
    if config.nova_metadata_url.startswith("unix:"):
        # This node's metadata service must be root's (or ours): a socket another user
        # holds is never sent a signature.
        kwargs.setdefault("peer_uids", frozenset({0, os.geteuid()}))
    return UpstreamPool(config.nova_metadata_url, ssl=context, **kwargs)
