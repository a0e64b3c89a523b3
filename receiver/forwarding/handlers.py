"""The handler registry, shared by the CLI and the HTTP API. Changes apply at once, no restart."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from receiver.forwarding.destinations import DestinationRefused, Destinations
from receiver.forwarding.routing import route_unrouted, wake_dispatchers
from receiver.forwarding.signing import SecretInvalid, secret_key

_INSERT = """
INSERT INTO handlers (match, prefix, is_default, url, secret, timeout, replies, statuses,
                      terminal_only)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, match, prefix, is_default, url, secret, timeout, enabled, created_at, replies,
    statuses, terminal_only
"""
_LIST = """
SELECT id, match, prefix, is_default, url, secret, timeout, enabled, created_at, replies,
    statuses, terminal_only
FROM handlers ORDER BY is_default, match, prefix, id
"""
_SET_ENABLED = """
UPDATE handlers SET enabled = $2 WHERE id = $1
RETURNING id, match, prefix, is_default, url, secret, timeout, enabled, created_at, replies,
    statuses, terminal_only
"""

# The kinds of news a handler can subscribe to, as the CLI and the API name them.
EVENTS = ("replies", "status")
# Which status changes: every change, or only those to a terminal status.
STATUS_FILTERS = ("all", "terminal")


# What a handler URL must not hold; the OpenAPI description's NewHandler.url says the same.
_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


# The default rules (link-local, unspecified refused), for callers with no settings.
ANYWHERE = Destinations()


def shown_url(url: str) -> str:
    """`url` as it may be shown and logged: any credentials in it replaced."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


class HandlerError(ValueError):
    """A handler that cannot be registered as asked; the message says why."""


class HandlerExists(HandlerError):
    """A handler for the same user_data (or the default one) is already registered."""


@dataclass(frozen=True, slots=True)
class HandlerView:
    """A registered handler as people see it (the secret, and credentials in its URL, never)."""

    id: int
    user_data: str | None
    default: bool
    url: str
    signed: bool
    timeout: float
    enabled: bool
    created_at: datetime
    events: tuple[str, ...]
    status_filter: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_data": self.user_data,
            "default": self.default,
            "url": self.url,
            "signed": self.signed,
            "timeout": self.timeout,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "events": list(self.events),
            "status_filter": self.status_filter,
        }


@dataclass(frozen=True, slots=True)
class NewHandler:
    """What a caller asks to register, checked before it reaches the database."""

    user_data: str | None
    default: bool
    url: str
    secret: str | None = None
    timeout: float = 10.0
    events: tuple[str, ...] = ("replies",)
    status_filter: str | None = None

    def validated(self, destinations: Destinations = ANYWHERE) -> NewHandler:
        if not self.events or not set(self.events) <= set(EVENTS):
            raise HandlerError(f"events must be one or both of {', '.join(EVENTS)}")
        if self.status_filter is not None:
            if self.status_filter not in STATUS_FILTERS:
                raise HandlerError(f"status_filter must be one of {', '.join(STATUS_FILTERS)}")
            if "status" not in self.events:
                raise HandlerError("status_filter needs the status events")
        if self.default == (self.user_data is not None):
            raise HandlerError("give either a user_data value or default, not both or neither")
        for name, value in (("user_data", self.user_data), ("url", self.url)):
            if value is not None and "\x00" in value:
                raise HandlerError(f"{name} must not contain a NUL character")
        if self.user_data is not None and not self.user_data.rstrip("*"):
            raise HandlerError("user_data must have at least one character before a final '*'")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HandlerError(
                f"url must be an http:// or https:// URL, not {shown_url(self.url)!r}"
            )
        if _NOT_IN_URL.search(self.url):
            raise HandlerError("url must not contain spaces or control characters")
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise HandlerError(
                f"url's host is not a name that DNS can carry: {shown_url(self.url)!r}"
            ) from None
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
        except ValueError:
            raise HandlerError(
                f"url has a port that is not 0 to 65535: {shown_url(self.url)!r}"
            ) from None
        try:
            destinations.check(self.url)
        except DestinationRefused as error:
            raise HandlerError(str(error)) from None
        if not 0 < self.timeout <= 300:
            raise HandlerError("timeout must be between 0 and 300 seconds")
        if self.secret is not None:
            try:
                secret_key(self.secret)
            except SecretInvalid as error:
                raise HandlerError(str(error)) from None
        return self


async def add_handler(
    conn: Any, new: NewHandler, destinations: Destinations = ANYWHERE
) -> tuple[HandlerView, int]:
    """Register a handler; returns it and how many waiting forwards it took.

    `destinations`: where forwards may go (receiver.forwarding.destinations); the URL's
    name is resolved now too, and refused if it names a refused address.
    """
    new = new.validated(destinations)
    refused = await destinations.check_now(new.url, unresolved_ok=True)
    if refused is not None:
        raise HandlerError(f"url: {refused}")
    match, prefix = None, False
    if new.user_data is not None:
        prefix = new.user_data.endswith("*")
        match = new.user_data[:-1] if prefix else new.user_data
    try:
        row = await conn.fetchrow(
            _INSERT,
            match,
            prefix,
            new.default,
            new.url,
            new.secret,
            new.timeout,
            "replies" in new.events,
            "status" in new.events,
            new.status_filter == "terminal",
        )
    except asyncpg.UniqueViolationError:
        which = "a default handler" if new.default else f"a handler for {new.user_data!r}"
        raise HandlerExists(f"{which} is already registered") from None
    return _view(row), await route_unrouted(conn)


async def list_handlers(conn: Any, *, query_values: bool = True) -> list[HandlerView]:
    """Every handler, the default last. `query_values` False: each URL's query values
    hidden (what read scopes see: a query may carry a key, `?api_key=...`)."""
    rows = await conn.fetch(_LIST)
    views = [_view(row) for row in rows]
    if query_values:
        return views
    return [dataclasses.replace(view, url=without_query_values(view.url)) for view in views]


def without_query_values(url: str) -> str:
    """`url` with each value of its query replaced by `***` (the names kept)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = (item.partition("=") for item in parts.query.split("&"))
    hidden = "&".join(f"{name}=***" if sign else name for name, sign, _ in names)
    return parts._replace(query=hidden).geturl()


async def remove_handler(conn: Any, handler_id: int) -> bool:
    """Delete a handler; its undelivered forwards go back to routing (to another, or unrouted)."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE forwards SET state = 'unrouted', handler_id = NULL, conversation = NULL"
            " WHERE handler_id = $1 AND state IN ('pending', 'in_flight') AND kind = 'reply'",
            handler_id,
        )
        # A status change was news for that team alone: kept, as dead, for the record.
        await conn.execute(
            "UPDATE forwards SET state = 'dead', last_error = 'its handler was removed'"
            " WHERE handler_id = $1 AND state IN ('pending', 'in_flight') AND kind = 'status'",
            handler_id,
        )
        removed = await conn.fetchval("DELETE FROM handlers WHERE id = $1 RETURNING id", handler_id)
    if removed is None:
        return False
    await route_unrouted(conn)
    return True


async def set_enabled(conn: Any, handler_id: int, *, enabled: bool) -> HandlerView | None:
    """Enable or disable a handler; a disabled one keeps its forwards waiting."""
    row = await conn.fetchrow(_SET_ENABLED, handler_id, enabled)
    if row is not None and enabled:
        await wake_dispatchers(conn)
    return _view(row) if row is not None else None


def _view(row: Any) -> HandlerView:
    user_data = None
    if not row["is_default"]:
        user_data = row["match"] + ("*" if row["prefix"] else "")
    return HandlerView(
        id=row["id"],
        user_data=user_data,
        default=row["is_default"],
        url=shown_url(row["url"]),
        signed=row["secret"] is not None,
        timeout=row["timeout"],
        enabled=row["enabled"],
        created_at=row["created_at"],
        events=tuple(
            e for e, on in zip(EVENTS, (row["replies"], row["statuses"]), strict=True) if on
        ),
        status_filter=("terminal" if row["terminal_only"] else "all") if row["statuses"] else None,
    )
