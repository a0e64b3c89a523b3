"""CALLR's v1 webhook signature: `X-CALLR-HmacSignature` = base64(HMAC(secret, raw body))."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = "x-callr-hmacsignature"

ALGORITHMS = {
    "sha256": hashlib.sha256,
    "sha1": hashlib.sha1,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    """The signature CALLR puts on `body` for a subscription with this secret and algorithm."""
    digest = hmac.new(secret.encode(), body, ALGORITHMS[algorithm]).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Verifies a signature against every secret in use (several during a rotation)."""

    secrets: Sequence[str]
    algorithm: str = "sha256"

    def verify(self, body: bytes, signature: str | None) -> bool:
        """True when `signature` is the signature of the exact bytes under one of the secrets."""
        if not signature:
            return False
        presented = signature.strip().encode("latin-1", errors="replace")
        matched = False
        # Every secret is tried, so that timing does not tell which one matched.
        for secret in self.secrets:
            expected = sign(body, secret, self.algorithm).encode("ascii")
            matched |= hmac.compare_digest(expected, presented)
        return matched
