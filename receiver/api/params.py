"""Query parameters of the API, read strictly: a bad value is a 400 that names the parameter."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from receiver.http import whole_number


class BadParameter(ValueError):
    """A query parameter the API cannot use; `name` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class Params:
    """Typed access to a request's query parameters."""

    def __init__(self, query: QueryParams, *, allowed: Collection[str]) -> None:
        unknown = sorted(set(query.keys()) - set(allowed))
        if unknown:
            raise BadParameter(unknown[0], f"unknown parameter {unknown[0]!r}")
        self._query = query

    def text(self, name: str) -> str | None:
        values = self._query.getlist(name)
        if len(values) > 1:
            raise BadParameter(name, f"{name} may be given once")
        if values and "\x00" in values[0]:
            # PostgreSQL's text cannot hold it: no stored value can match.
            raise BadParameter(name, f"{name} must not contain a NUL character")
        return values[0] if values else None

    def choices(self, name: str, allowed: Sequence[str]) -> list[str]:
        values = self._query.getlist(name)
        for value in values:
            if value not in allowed:
                raise BadParameter(name, f"{name} must be one of {', '.join(allowed)}")
        return values

    def choice(self, name: str, allowed: Sequence[str]) -> str | None:
        value = self.text(name)
        if value is not None and value not in allowed:
            raise BadParameter(name, f"{name} must be one of {', '.join(allowed)}")
        return value

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadParameter(name, f"{name} must be an ISO 8601 time with a zone") from None
        if parsed.tzinfo is None:
            raise BadParameter(name, f"{name} must be an ISO 8601 time with a zone")
        try:
            # Compared in UTC: a time at the edge of year 1 or 9999 may have none.
            parsed.astimezone(UTC)
        except OverflowError:
            raise BadParameter(name, f"{name} is out of the range of times") from None
        return parsed

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        number = whole_number(value)
        if number is None or not low <= number <= high:
            raise BadParameter(name, f"{name} must be a whole number from {low} to {high}")
        return number


class Cursors:
    """Opaque, signed keyset positions: a cursor that was changed is refused.

    `key` gives the signing key when asked (the deployment's, read at start)."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key_of = key

    @property
    def _key(self) -> bytes:
        return self._key_of()

    def encode(self, position: Sequence[Any]) -> str:
        payload = orjson.dumps(list(position), default=str)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def decode(self, cursor: str | None) -> list[Any] | None:
        if cursor is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise BadParameter("cursor", "cursor is not one this API gave") from None
        mac, payload = raw[:16], raw[16:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise BadParameter("cursor", "cursor is not one this API gave")
        position = orjson.loads(payload)
        assert isinstance(position, list)
        return position
