"""The handler registry, shared by the CLI and the HTTP API. Changes apply at once, no restart."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict
from urllib.parse import urlsplit

import asyncpg

from receiver.db.engine import Connection, Record, one_row
from receiver.forwarding.destinations import DestinationRefused, Destinations
from receiver.forwarding.routing import route_unrouted, wake_dispatchers
from receiver.forwarding.signing import SecretInvalid, new_secret, secret_key

# Assembled once, at import, from the constant column list: no input reaches the text.
_COLUMNS = """id, match, prefix, is_default, url, secret, timeout, enabled, created_at, replies,
    statuses, terminal_only, final_statuses, max_in_flight, rate, attempts, first_retry,
    notify_url, disabled_reason, disabled_at, failing_since, previous_secret_until, name"""
_INSERT = f"""
INSERT INTO handlers (match, prefix, is_default, url, secret, timeout, replies, statuses,
                      terminal_only, final_statuses, max_in_flight, rate, attempts, first_retry,
                      notify_url, name)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING {_COLUMNS}
"""
_LIST = f"SELECT {_COLUMNS} FROM handlers ORDER BY is_default, match, prefix, id"
_ONE = f"SELECT {_COLUMNS} FROM handlers WHERE id = $1"
# Disabled: why and when, kept until it is enabled again.
_SET_ENABLED = f"""
UPDATE handlers SET enabled = $2,
    disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
    disabled_at = CASE WHEN $2 THEN NULL ELSE now() END
WHERE id = $1 AND enabled <> $2
RETURNING {_COLUMNS}
"""
_UPDATE = f"""
UPDATE handlers SET url = $2, secret = $3, timeout = $4, replies = $5, statuses = $6,
    terminal_only = $7, final_statuses = $8, max_in_flight = $9, rate = $10, attempts = $11,
    first_retry = $12, notify_url = $13, name = $14
WHERE id = $1
RETURNING {_COLUMNS}
"""
_DUE_NOW = """
UPDATE forwards SET next_attempt_at = now()
WHERE handler_id = $1 AND state = 'pending' AND next_attempt_at > now()
"""
_ROTATE = f"""
UPDATE handlers SET previous_secret = secret,
    previous_secret_until = CASE WHEN secret IS NULL THEN NULL
                                 ELSE now() + $3 * interval '1 second' END,
    secret = $2
WHERE id = $1
RETURNING {_COLUMNS}
"""
# A notice to a handler's owners (its notify_url), written with the change it tells of.
NOTICE = """
INSERT INTO handler_notices (handler_id, kind, url, body, created_at, next_at)
SELECT h.id, $2, h.notify_url,
    convert_to(json_build_object(
        'type', 'handler.' || $2,
        'handler', json_build_object(
            'id', h.id,
            'user_data', CASE WHEN h.is_default THEN NULL
                              ELSE h.match || CASE WHEN h.prefix THEN '*' ELSE '' END END,
            'default', h.is_default),
        'reason', $3::text,
        'at', now())::text, 'UTF8'),
    now(), now()
FROM handlers h WHERE h.id = $1 AND h.notify_url IS NOT NULL
"""

# The kinds of news a handler can subscribe to, as the CLI and the API name them.
EVENTS = ("replies", "status")
# Which status changes: every change, or only those to a terminal status.
STATUS_FILTERS = ("all", "terminal")
# What a handler's policy may be set to.
MAX_IN_FLIGHT = 1000
MAX_RATE = 1000.0
MAX_ATTEMPTS = 100
MAX_FIRST_RETRY = 86400.0
DEFAULT_OVERLAP = 86400
"""Seconds the secret before a rotation keeps signing, unless told otherwise."""
# The fields `update_handler` changes, as the CLI and the API name them.
# Its policy, and its name: what a new handler may give beside where it goes and what.
POLICY = (
    "final_statuses",
    "max_in_flight",
    "rate",
    "attempts",
    "first_retry",
    "notify_url",
    "name",
)
CHANGEABLE = ("url", "secret", "timeout", "events", "status_filter", *POLICY)


# A handler's name: printable, not blank at either end, not `#n` (how ids are shown).
_NAME = re.compile(
    r"(?=.{1,64}$)[^#\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?"
)

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
    final_statuses: tuple[int, ...] = ()
    max_in_flight: int | None = None
    rate: float | None = None
    attempts: int | None = None
    first_retry: float | None = None
    notify_url: str | None = None
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = None
    previous_secret_until: datetime | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """How people call it: its name, else its number."""
        return self.name or f"#{self.id}"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "user_data": self.user_data,
            "default": self.default,
            "url": self.url,
            "signed": self.signed,
            "timeout": self.timeout,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "events": list(self.events),
            "status_filter": self.status_filter,
            "final_statuses": list(self.final_statuses),
            "max_in_flight": self.max_in_flight,
            "rate": self.rate,
            "attempts": self.attempts,
            "first_retry": self.first_retry,
            "notify_url": self.notify_url,
            "disabled_reason": self.disabled_reason,
            "disabled_at": _iso(self.disabled_at),
            "failing_since": _iso(self.failing_since),
            "previous_secret_until": _iso(self.previous_secret_until),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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
    final_statuses: tuple[int, ...] = ()
    max_in_flight: int | None = None
    rate: float | None = None
    attempts: int | None = None
    first_retry: float | None = None
    notify_url: str | None = None
    name: str | None = None

    def validated(
        self, destinations: Destinations = ANYWHERE, *, check_url: bool = True
    ) -> NewHandler:
        """This handler, checked; raises `HandlerError` saying what is wrong. `check_url`
        False: its URL is one already kept (a change that leaves it as it is must not be
        refused by a rule the URL predates)."""
        self._policy_checked()
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise HandlerError(
                "name must be 1 to 64 characters, printable, not only spaces, and not start"
                " with # (numbers are the handlers' ids)"
            )
        if self.notify_url is not None:
            _url_checked("notify_url", self.notify_url, destinations)
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
        if check_url:
            _url_checked("url", self.url, destinations)
        if not 0 < self.timeout <= 300:
            raise HandlerError("timeout must be between 0 and 300 seconds")
        if self.secret is not None:
            try:
                secret_key(self.secret)
            except SecretInvalid as error:
                raise HandlerError(str(error)) from None
        return self

    def _policy_checked(self) -> None:
        bad = [s for s in self.final_statuses if not 300 <= s <= 599]
        if bad:
            raise HandlerError(
                "final_statuses are HTTP statuses of 300 to 599 (a 2xx is a success):"
                f" not {', '.join(map(str, bad))}"
            )
        if self.max_in_flight is not None and not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise HandlerError(f"max_in_flight must be 1 to {MAX_IN_FLIGHT}")
        if self.rate is not None and not 0 < self.rate <= MAX_RATE:
            raise HandlerError(f"rate must be above 0 and at most {MAX_RATE:g} a second")
        if self.attempts is not None and not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise HandlerError(f"attempts must be 1 to {MAX_ATTEMPTS}")
        if self.first_retry is not None and not 0 < self.first_retry <= MAX_FIRST_RETRY:
            raise HandlerError(f"first_retry must be above 0 and at most {MAX_FIRST_RETRY:g} s")


def _url_checked(name: str, url: str, destinations: Destinations) -> None:
    """`url` as a handler's (or its notices') URL must be; raises `HandlerError` naming `name`."""
    if "\x00" in url:
        raise HandlerError(f"{name} must not contain a NUL character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HandlerError(f"{name} must be an http:// or https:// URL, not {shown_url(url)!r}")
    if _NOT_IN_URL.search(url):
        raise HandlerError(f"{name} must not contain spaces or control characters")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise HandlerError(
            f"{name}'s host is not a name that DNS can carry: {shown_url(url)!r}"
        ) from None
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise HandlerError(
            f"{name} has a port that is not 0 to 65535: {shown_url(url)!r}"
        ) from None
    try:
        destinations.check(url)
    except DestinationRefused as error:
        raise HandlerError(f"{name}: {error}" if name != "url" else str(error)) from None


async def add_handler(
    conn: Connection, new: NewHandler, destinations: Destinations = ANYWHERE
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
        row = await one_row(conn, _INSERT, match, prefix, new.default, *_columns(new))
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "ix_handlers_name":
            raise HandlerExists(f"a handler named {new.name!r} is already registered") from None
        which = "a default handler" if new.default else f"a handler for {new.user_data!r}"
        raise HandlerExists(f"{which} is already registered") from None
    return _view(row), await route_unrouted(conn)


async def list_handlers(conn: Connection, *, query_values: bool = True) -> list[HandlerView]:
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


async def remove_handler(conn: Connection, handler_id: int) -> bool:
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


async def set_enabled(
    conn: Connection, handler_id: int, *, enabled: bool, reason: str = "disabled by an admin"
) -> HandlerView | None:
    """Enable or disable a handler; a disabled one keeps its forwards waiting, with the
    `reason`, and its owners get a notice. None when there is no such handler."""
    async with conn.transaction():
        row = await conn.fetchrow(_SET_ENABLED, handler_id, enabled, reason)
        if row is None:  # no such handler, or already so
            row = await conn.fetchrow(_ONE, handler_id)
            return _view(row) if row is not None else None
        if enabled:
            await wake_dispatchers(conn)
        else:
            await conn.execute(NOTICE, handler_id, "disabled", reason)
            await wake_dispatchers(conn)  # the notice goes out
    return _view(row)


async def find_handler(conn: Connection, handler_id: int) -> HandlerView | None:
    row = await conn.fetchrow(_ONE, handler_id)
    return _view(row) if row is not None else None


class HandlerFields(TypedDict, total=False):
    """The fields of a handler that change (CHANGEABLE), each of its own type."""

    url: str
    secret: str | None
    timeout: float
    events: tuple[str, ...]
    status_filter: str | None
    final_statuses: tuple[int, ...]
    max_in_flight: int | None
    rate: float | None
    attempts: int | None
    first_retry: float | None
    notify_url: str | None
    name: str | None


def handler_fields(document: Mapping[str, object]) -> HandlerFields:
    """The changeable fields that `document` holds, checked for their JSON types (their
    ranges are `NewHandler.validated`'s to check); raises `HandlerError` for a field that
    is not changeable or not of its type."""
    unknown = sorted(set(document) - set(CHANGEABLE))
    if unknown:
        raise HandlerError(f"cannot change {', '.join(unknown)}: only {', '.join(CHANGEABLE)}")
    found: HandlerFields = {}
    if "url" in document:
        url = _text("url", document["url"])
        if url is None:
            raise HandlerError("url must be a string")
        found["url"] = url
    if "secret" in document:
        found["secret"] = _text("secret", document["secret"])
    if "timeout" in document:
        timeout = _number("timeout", document["timeout"])
        if timeout is None:
            raise HandlerError("timeout must be a number of seconds")
        found["timeout"] = timeout
    if "events" in document:
        events = document["events"]
        if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
            raise HandlerError("events must be a list of strings")
        found["events"] = tuple(str(e) for e in events)
    if "status_filter" in document:
        found["status_filter"] = _text("status_filter", document["status_filter"])
    if "final_statuses" in document:
        statuses = document["final_statuses"]
        if statuses is not None and (
            not isinstance(statuses, list | tuple)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in statuses)
        ):
            raise HandlerError("final_statuses must be a list of HTTP statuses")
        found["final_statuses"] = tuple(int(x) for x in statuses or ())
    if "max_in_flight" in document:
        found["max_in_flight"] = _whole("max_in_flight", document["max_in_flight"])
    if "rate" in document:
        found["rate"] = _number("rate", document["rate"])
    if "attempts" in document:
        found["attempts"] = _whole("attempts", document["attempts"])
    if "first_retry" in document:
        found["first_retry"] = _number("first_retry", document["first_retry"])
    if "notify_url" in document:
        found["notify_url"] = _text("notify_url", document["notify_url"])
    if "name" in document:
        found["name"] = _text("name", document["name"])
    return found


def _text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise HandlerError(f"{name} must be a string")
    return value


def _whole(name: str, value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise HandlerError(f"{name} must be a whole number")
    return value


def _number(name: str, value: object) -> float | None:
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise HandlerError(f"{name} must be a number")
    return float(value) if value is not None else None


async def update_handler(
    conn: Connection,
    handler_id: int,
    changes: Mapping[str, object],
    destinations: Destinations = ANYWHERE,
) -> HandlerView | None:
    """Change what `changes` names (CHANGEABLE) of a handler, keeping its id, its
    user_data and its forwards; None when there is no such handler. A `None` value of a
    policy field (or of `secret`, `notify_url`) sets it back to the default (none)."""
    fields = handler_fields(changes)
    row = await conn.fetchrow("SELECT * FROM handlers WHERE id = $1 FOR UPDATE", handler_id)
    if row is None:
        return None
    current = _view(row)
    merged = NewHandler(
        user_data=current.user_data,
        default=current.default,
        url=row["url"],
        secret=row["secret"],
        timeout=current.timeout,
        events=current.events,
        status_filter=current.status_filter,
        final_statuses=current.final_statuses,
        max_in_flight=current.max_in_flight,
        rate=current.rate,
        attempts=current.attempts,
        first_retry=current.first_retry,
        notify_url=row["notify_url"],
        name=current.name,
    )
    if "events" in fields:
        if "status" in fields["events"] and "status_filter" not in fields:
            fields["status_filter"] = merged.status_filter or "all"
        if "status" not in fields["events"]:
            fields["status_filter"] = None
    new = dataclasses.replace(merged, **fields).validated(destinations, check_url="url" in changes)
    if "url" in changes:
        refused = await destinations.check_now(new.url, unresolved_ok=True)
        if refused is not None:
            raise HandlerError(f"url: {refused}")
    try:
        updated = await conn.fetchrow(_UPDATE, handler_id, *_columns(new))
    except asyncpg.UniqueViolationError:
        raise HandlerExists(f"a handler named {new.name!r} is already registered") from None
    if "url" in changes:
        # A URL put right: what waits for a retry is tried there now, not at its turn.
        await conn.execute(_DUE_NOW, handler_id)
    await wake_dispatchers(conn)
    # None: removed meanwhile.
    return _view(updated) if updated is not None else None


async def rotate_secret(
    conn: Connection, handler_id: int, overlap_seconds: float
) -> tuple[HandlerView, str] | None:
    """A new secret for a handler; the old one signs beside it for `overlap_seconds`
    (each forward then carries both signatures). Returns the handler and the new secret
    (shown once); None when there is no such handler."""
    secret = new_secret()
    row = await conn.fetchrow(_ROTATE, handler_id, secret, overlap_seconds)
    return (_view(row), secret) if row is not None else None


def _columns(new: NewHandler) -> tuple[object, ...]:
    """The columns from `url` to `name`, in the order _INSERT and _UPDATE take them."""
    return (
        new.url,
        new.secret,
        new.timeout,
        "replies" in new.events,
        "status" in new.events,
        new.status_filter == "terminal",
        list(new.final_statuses),
        new.max_in_flight,
        new.rate,
        new.attempts,
        new.first_retry,
        new.notify_url,
        new.name,
    )


def _view(row: Record) -> HandlerView:
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
        final_statuses=tuple(row["final_statuses"] or ()),
        max_in_flight=row["max_in_flight"],
        rate=row["rate"],
        attempts=row["attempts"],
        first_retry=row["first_retry"],
        notify_url=shown_url(row["notify_url"]) if row["notify_url"] else None,
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        failing_since=row["failing_since"],
        previous_secret_until=row["previous_secret_until"],
        name=row["name"],
    )
