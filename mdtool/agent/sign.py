"""The instance-id signature Neutron's agent adds and Nova checks.

``X-Instance-ID-Signature`` is the hex HMAC-SHA256 of the instance id keyed with
``metadata_proxy_shared_secret``; both sides must agree byte for byte to interoperate
with a real Nova or a real Neutron metadata agent.
"""

from __future__ import annotations

import hashlib
import hmac


def sign_instance_id(secret: str, instance_id: str) -> str:
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def verify_instance_id(secret: str, instance_id: str, signature: str) -> bool:
    """Constant-time check, so a client cannot guess the signature byte by byte."""
    expected = sign_instance_id(secret, instance_id)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
