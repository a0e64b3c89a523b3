"""Standard Webhooks headers for a forward: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

A handler's secret is a Standard Webhooks secret: `whsec_` followed by the base64 of
the key, so that the handler can verify with any Standard Webhooks library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


class SecretInvalid(ValueError):
    """A handler secret that is not `whsec_` + base64 of at least 24 bytes."""


def new_secret() -> str:
    """A fresh random secret in the Standard Webhooks form."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_...` secret; raises `SecretInvalid` with what is wrong."""
    encoded = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SecretInvalid("a handler secret must be 'whsec_' followed by base64") from None
    if len(key) < 24:
        raise SecretInvalid("a handler secret must hold at least 24 bytes of key")
    return key


def headers(
    *,
    message_id: str,
    timestamp: int,
    body: bytes,
    secret: str | None,
    previous: str | None = None,
) -> dict[str, str]:
    """The Standard Webhooks headers for one delivery; signed when the handler has a secret.

    `previous`: the secret before a rotation, during its overlap: the header then
    carries both signatures, space-separated, the new one first (Standard Webhooks lets
    a verifier accept any of them), so a handler on either secret verifies."""
    result = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = [
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in (secret, previous)
        if s is not None
    ]
    if signatures:
        result["webhook-signature"] = " ".join(signatures)
    return result
