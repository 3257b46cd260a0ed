"""X-Instance-ID-Signature: vectors computed with `openssl dgst -sha256 -hmac KEY`."""

import pytest

from mdtool.agent.sign import sign_instance_id, verify_instance_id

VECTORS = [
    ("s3cr3t", "8b1c7cd4-6c2f-4f43-9d2d-3a1b0c5e7f21",
     "a6b9355e7032fa6b4297a02e791ee0d1ccf7c78e5cd7feda9d8106199fe8f24e"),
    ("metadata-secret", "i-0000000a",
     "a36f8220849930d97d77c63b3f41a2de4f67fcd754d1369648475d930fdf09ec"),
    ("k", "", "8bb990c40a7d61cb97597a942125025be50ac8beb74436e3735b98893a7f6620"),
]


@pytest.mark.parametrize("secret,instance_id,expected", VECTORS)
def test_sign_matches_openssl(secret, instance_id, expected):
    assert sign_instance_id(secret, instance_id) == expected


@pytest.mark.parametrize("secret,instance_id,expected", VECTORS)
def test_verify_accepts_good_signature(secret, instance_id, expected):
    assert verify_instance_id(secret, instance_id, expected)


def test_verify_rejects_bad_signatures():
    secret, iid, good = VECTORS[0]
    assert not verify_instance_id(secret, iid, good[:-1] + "0")
    assert not verify_instance_id(secret, iid, good.upper())
    assert not verify_instance_id(secret, iid, "")
    assert not verify_instance_id("other", iid, good)
    assert not verify_instance_id(secret, iid + "x", good)
    assert not verify_instance_id(secret, iid, "é" * 64)
