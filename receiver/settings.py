"""Configuration from the environment (`RECEIVER_*`), validated once at start."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

HmacAlgorithm = Literal["sha256", "sha512", "md5"]

_URL_TOKEN = re.compile(r"[A-Za-z0-9_\-.~]{16,256}")
# The least length of an API, admin or metrics token.
MIN_TOKEN_LENGTH = 20


class SettingsError(Exception):
    """A setting has a value the service cannot run with; the message names it."""


class Settings(BaseSettings):
    """Every setting of the service. Each field is read from `RECEIVER_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="RECEIVER_", frozen=True, extra="ignore")

    database_url: str | None = None
    data_dir: Path = Path(".receiver")
    # A streaming standby for the read pages (docs/configuration.md), used while it is
    # within `read_replica_max_lag` of the primary.
    read_database_url: str | None = None
    read_replica_max_lag: timedelta = Field(default="30s", validate_default=True)
    # The server itself when `database_url` is a pooler in transaction mode
    # (docs/configuration.md): what needs a session of its own (LISTEN, the migration's
    # lock, a command's connection) connects here.
    direct_database_url: str | None = None

    callr_hmac_secrets: Annotated[tuple[str, ...], NoDecode] = ()
    callr_hmac_algorithm: HmacAlgorithm = "sha256"
    callr_url_token: str | None = None
    callr_basic_auth: str | None = None
    allow_unauthenticated: bool = False

    max_body_bytes: int = Field(default=1024 * 1024, gt=0, le=64 * 1024 * 1024)
    ack_timeout: float = Field(default=5.0, gt=0, le=60)
    retry_after: int = Field(default=5, ge=1, le=3600)

    writer_batch_max: int = Field(default=500, ge=1, le=10_000)
    writer_concurrency: int = Field(default=2, ge=1, le=16)
    writer_queue_max: int = Field(default=20_000, ge=1)
    db_pool_size: int = Field(default=8, ge=2, le=200)
    db_command_timeout: float = Field(default=10.0, gt=0)

    # The projector of every serve process (off: only `receiver worker` projects).
    projector: bool = True
    projector_batch_max: int = Field(default=2000, ge=1, le=50_000)
    projector_poll_interval: float = Field(default=1.0, gt=0, le=3600)
    # A batch's raw bodies at most (the first event is taken whatever its size): what
    # a projector holds in memory at once.
    projector_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=1024**3)
    # Events pending and no projector batch for this long: the projection is stalled.
    projection_stall_after: timedelta = Field(default="1m", validate_default=True)

    # Read tokens (API reads, console pages) and admin tokens (those, and every change).
    api_tokens: Annotated[tuple[str, ...], NoDecode] = ()
    admin_tokens: Annotated[tuple[str, ...], NoDecode] = ()
    # Send tokens: `POST /api/v1/sms` only; `TOKEN=PREFIX` sends only with a user_data
    # that starts with PREFIX.
    send_tokens: Annotated[tuple[str, ...], NoDecode] = ()
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    console_mask: Annotated[tuple[Literal["numbers", "text"], ...], NoDecode] = ()
    api_pool_size: int = Field(default=4, ge=1, le=100)
    api_statement_timeout: float = Field(default=5.0, gt=0, le=600)
    # /metrics needs `Authorization: Bearer <token>` when set; open otherwise.
    metrics_token: str | None = None
    # How often the days kept for /api/v1/stats are tidied and refreshed.
    stats_keep_interval: float = Field(default=60.0, gt=0)

    routing_window_hours: float = Field(default=7 * 24, gt=0)
    # The country whose national numbers (06 12 ... in FR) searches read as E.164.
    default_region: str | None = None
    # When set, the only networks a handler's address may be in (comma-separated CIDRs).
    handler_allowed_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # The proxies whose X-Forwarded-For (and -Proto) is believed: addresses or networks,
    # comma-separated. None by default: the client is the peer of the connection.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    forward_max_attempts: int = Field(default=12, ge=1, le=100)
    forward_backoff_base: float = Field(default=40.0, gt=0)
    dispatcher: bool = True
    dispatch_concurrency: int = Field(default=16, ge=1, le=1000)
    dispatch_poll_interval: float = Field(default=5.0, gt=0)
    # A handler with no 2xx for this long while its forwards wait is disabled.
    handler_disable_after: timedelta = Field(default="3d", validate_default=True)
    # An SMS CALLR accepted this long ago with no delivery report since: CALLR is silent.
    webhooks_silent_after: timedelta = Field(default="30m", validate_default=True)

    # CALLR's API (docs/callr-api.md): subscribe, reconcile, backfill.
    callr_api_url: str = "https://api.callr.com"
    callr_api_login: str | None = None
    callr_api_password: str | None = None
    callr_api_rate: float = Field(default=5.0, gt=0, le=100)
    callr_api_timeout: float = Field(default=10.0, gt=0, le=300)
    # Outbound SMS in a non-final status for longer than this are asked of CALLR.
    reconcile_after: timedelta = Field(default="1d", validate_default=True)
    reconcile_interval: timedelta = Field(default="1h", validate_default=True)
    reconcile_limit: int = Field(default=1000, ge=1, le=100_000)
    # CALLR's v2 API key: sends go through `POST /v2.0/sms` when no login is set.
    callr_api_key: str | None = None
    # The STOP number CALLR puts in place of %STOPNUM% (with a custom sender): the
    # parts are counted with it; unset, with a number of 5 digits.
    callr_stop_number: str | None = Field(default=None, pattern=r"^\+?[0-9]{2,15}$")

    # Sending SMS through the receiver (docs/sending.md): the sender of every serve
    # process and worker, how many sends each has in flight at once.
    sender: bool = True
    send_concurrency: int = Field(default=4, ge=1, le=100)
    # A lost answer: CALLR's list of SMS is taken as complete this long after the try.
    send_lookup_after: timedelta = Field(default="1m", validate_default=True)
    # A send whose fate could not be found out in this long is `unknown`.
    send_unknown_after: timedelta = Field(default="15m", validate_default=True)

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator(
        "callr_hmac_secrets",
        "api_tokens",
        "admin_tokens",
        "send_tokens",
        "console_mask",
        "handler_allowed_networks",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_tokens", "admin_tokens", "send_tokens")
    @classmethod
    def _long_enough(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        short = [
            token for token in value if len(token.partition("=")[0].strip()) < MIN_TOKEN_LENGTH
        ]
        if short:
            raise ValueError(
                f"{len(short)} token(s) shorter than {MIN_TOKEN_LENGTH} characters: a short token"
                " can be guessed; make them with `openssl rand -hex 24`"
            )
        return value

    @field_validator("default_region", mode="before")
    @classmethod
    def _region(cls, value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            return None
        region = value.strip().upper()
        import phonenumbers  # only when a region is set

        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code such as FR, GB or US")
        return region

    @field_validator("handler_allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network such as 10.0.0.0/8") from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"shorter than {MIN_TOKEN_LENGTH} characters: a short token can be guessed"
            )
        return value

    @field_validator("callr_hmac_algorithm", "log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "reconcile_after",
        "reconcile_interval",
        "projection_stall_after",
        "send_lookup_after",
        "send_unknown_after",
        "handler_disable_after",
        "webhooks_silent_after",
        "read_replica_max_lag",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator(
        "reconcile_after",
        "reconcile_interval",
        "projection_stall_after",
        "send_lookup_after",
        "send_unknown_after",
        "handler_disable_after",
        "webhooks_silent_after",
        "read_replica_max_lag",
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    @field_validator("callr_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError(
                "must not carry credentials: set RECEIVER_CALLR_API_LOGIN and _PASSWORD"
            )
        return value.rstrip("/")

    @field_validator(
        "database_url",
        "read_database_url",
        "direct_database_url",
        "callr_url_token",
        "callr_basic_auth",
        "callr_api_login",
        "callr_api_password",
        "callr_api_key",
        "callr_stop_number",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url", "read_database_url", "direct_database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("callr_url_token")
    @classmethod
    def _token_shape(cls, value: str | None) -> str | None:
        if value is not None and not _URL_TOKEN.fullmatch(value):
            raise ValueError(
                "must be 16 to 256 characters from A-Z a-z 0-9 - _ . ~ (it is a URL path segment)"
            )
        return value

    @field_validator("callr_basic_auth")
    @classmethod
    def _user_colon_password(cls, value: str | None) -> str | None:
        if value is not None:
            user, sep, password = value.partition(":")
            if not sep or not user or not password:
                raise ValueError("must be user:password, both non-empty")
        return value

    @model_validator(mode="after")
    def _direct_beside_a_pooler(self) -> Settings:
        if self.direct_database_url is not None and self.database_url is None:
            raise ValueError(
                "RECEIVER_DIRECT_DATABASE_URL is the server behind the pooler that"
                " RECEIVER_DATABASE_URL names: set RECEIVER_DATABASE_URL too"
            )
        return self

    @property
    def pooled(self) -> bool:
        """Whether `database_url` is a connection pooler in transaction mode (a direct URL
        to the server is given beside it)."""
        return self.direct_database_url is not None

    @property
    def database_urls(self) -> tuple[str | None, ...]:
        """Every database URL set: the primary (or its pooler), the server behind the
        pooler, the read replica."""
        return (self.database_url, self.direct_database_url, self.read_database_url)

    @property
    def session_database_url(self) -> str | None:
        """Where a connection that keeps a session of its own goes (LISTEN, session locks,
        a command's own connection): the server itself."""
        return self.direct_database_url or self.database_url

    @property
    def callr_api_configured(self) -> bool:
        """True when the CALLR API login and password are both set."""
        return bool(self.callr_api_login and self.callr_api_password)

    @property
    def sending_api(self) -> Literal["v1", "v2"] | None:
        """Which CALLR API sends go through: JSON-RPC with the login, else v2 with the key."""
        if self.callr_api_configured:
            return "v1"
        return "v2" if self.callr_api_key else None

    @property
    def webhook_auth_configured(self) -> bool:
        """True when at least one way of authenticating CALLR is set."""
        return bool(self.callr_hmac_secrets or self.callr_url_token or self.callr_basic_auth)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `1d` (or a plain number of seconds) as a timedelta."""
    value = text.strip().lower()
    try:
        return timedelta(seconds=float(value))
    except ValueError:
        pass
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 12h or 1d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, raising `SettingsError` with every bad one named."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = [f"invalid configuration ({error.error_count()} problem(s)):"]
        for problem in error.errors():
            if not problem["loc"]:  # a rule between settings, which its message names
                lines.append(f"  {problem['msg']}")
                continue
            name = "RECEIVER_" + "_".join(str(part) for part in problem["loc"]).upper()
            lines.append(f"  {name}: {problem['msg']}")
        raise SettingsError("\n".join(lines)) from None
