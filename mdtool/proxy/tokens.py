"""IMDSv2-style session tokens, sealed rather than stored.

``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: N`` (1-21600) returns
a token; GETs may present it in ``X-aws-ec2-metadata-token``. The proxy keeps no table:
a token carries its expiry and a random nonce, sealed with HMAC-SHA256 over the network
id and the peer address it was issued to, so it verifies only for that instance (same
network, same source address) until it expires, and survives a proxy restart. The key
is derived from ``metadata_proxy_shared_secret`` with a label of its own, so a token
can never pass for an instance signature or the other way round.

Pure logic (no I/O besides the clock): the handler decides what to answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MIN_TTL = 1
MAX_TTL = 21600
_VERSION = "v1."
_KEY_LABEL = b"mdtool imds session token key v1"
_PAYLOAD = struct.Struct(">Q8s")  # expiry (unix seconds), nonce
_MAC_LEN = 32
_MAX_TOKEN_LEN = 128  # a real one is 78 characters; anything longer is junk


def derive_key(shared_secret: str | bytes) -> bytes:
    secret = shared_secret.encode() if isinstance(shared_secret, str) else shared_secret
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def parse_ttl(value: str | None) -> int | None:
    """The TTL header's seconds, or None when missing, not a plain integer or out of range."""
    if value is None:
        return None
    v = value.strip(" \t")
    if not v.isascii() or not v.isdigit() or len(v) > 6:
        return None
    n = int(v)
    return n if MIN_TTL <= n <= MAX_TTL else None


class TokenSealer:
    """Issues and verifies tokens bound to (network id, peer address)."""

    def __init__(self, key: bytes, clock=time.time):
        self._key = key
        self.clock = clock

    def _mac(self, network_id: str, peer: str, payload: bytes) -> bytes:
        msg = b"|".join((network_id.encode(), peer.encode(), payload))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def issue(self, network_id: str, peer: str, ttl: int) -> str:
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError(f"ttl {ttl} out of range")
        expiry = int(self.clock()) + ttl
        payload = _PAYLOAD.pack(expiry, os.urandom(8))
        raw = payload + self._mac(network_id, peer, payload)
        return _VERSION + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def verify(self, token: str, network_id: str, peer: str) -> bool:
        """True only for an unexpired token issued to this peer on this network."""
        if len(token) > _MAX_TOKEN_LEN or not token.startswith(_VERSION):
            return False
        body = token[len(_VERSION):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            return False
        if len(raw) != _PAYLOAD.size + _MAC_LEN:
            return False
        payload, mac = raw[:_PAYLOAD.size], raw[_PAYLOAD.size:]
        if not hmac.compare_digest(mac, self._mac(network_id, peer, payload)):
            return False
        expiry, _ = _PAYLOAD.unpack(payload)
        now = self.clock()
        # A sealed expiry further out than the longest TTL cannot have come from us.
        return now < expiry <= now + MAX_TTL + 1
