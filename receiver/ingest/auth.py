"""Who may post webhooks: a secret URL token, HTTP basic auth and CALLR's HMAC signature.

Each is optional and they combine: every one that is configured must pass.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

from receiver.callr.signature import SignatureCheck
from receiver.settings import Settings, SettingsError

log = structlog.get_logger("receiver.auth")

TOKEN_FILE = "webhook-url-token"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    """The configured checks, ready to apply to a request."""

    url_token: str | None
    basic_credentials: bytes | None
    signature: SignatureCheck | None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        """The checks the settings ask for."""
        return cls(
            url_token=settings.callr_url_token,
            basic_credentials=(
                settings.callr_basic_auth.encode() if settings.callr_basic_auth else None
            ),
            signature=(
                SignatureCheck(settings.callr_hmac_secrets, settings.callr_hmac_algorithm)
                if settings.callr_hmac_secrets
                else None
            ),
        )

    def token_matches(self, token: str) -> bool:
        """True when `token` (from the URL path) is the configured one."""
        assert self.url_token is not None
        return hmac.compare_digest(token.encode(), self.url_token.encode())

    def basic_matches(self, authorization: str | None) -> bool:
        """True when the `Authorization` header carries the configured user and password."""
        assert self.basic_credentials is not None
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            presented = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(presented, self.basic_credentials)


def resolve_webhook_auth(settings: Settings, *, embedded: bool) -> Settings:
    """Settings with webhook authentication decided: secure by default, one command for a new user.

    Nothing configured and an embedded database: a random URL token is made once
    and kept in the data folder. Nothing configured and an external database: refuse,
    unless RECEIVER_ALLOW_UNAUTHENTICATED is set.
    """
    if settings.webhook_auth_configured:
        return settings
    if embedded:
        token = ensure_url_token(settings.data_dir)
        return settings.model_copy(update={"callr_url_token": token})
    if settings.allow_unauthenticated:
        log.warning(
            "webhooks_unauthenticated",
            message="anyone who can reach this service can post webhooks to it",
        )
        return settings
    raise SettingsError(
        "no webhook authentication is configured for an external database.\n"
        "  Set at least one of RECEIVER_CALLR_HMAC_SECRETS, RECEIVER_CALLR_URL_TOKEN,\n"
        "  RECEIVER_CALLR_BASIC_AUTH (or RECEIVER_ALLOW_UNAUTHENTICATED=true to accept\n"
        "  any request, which only makes sense behind another guard)."
    )


def ensure_url_token(data_dir: Path) -> str:
    """The URL token kept in `data_dir`, made (readable by this user only) on first use."""
    return ensure_secret_file(data_dir / TOKEN_FILE)


def ensure_secret_file(path: Path) -> str:
    """The random token kept at `path`, made (readable by this user only) on first use."""
    data_dir = path.parent
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token
