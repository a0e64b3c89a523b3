"""Query parameters of the API, read by the route's model (`receiver.api.models`):
a bad value is a 400 that names the parameter. Opaque cursors."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

import orjson
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from receiver.api.models import Query


class BadParameter(ValueError):
    """A query parameter the API cannot use; `name` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


Q = TypeVar("Q", bound=Query)


def read_query(model: type[Q], query: QueryParams) -> Q:
    """`query` read by the route's model: each parameter once (a list field may repeat),
    none it does not name; raises `BadParameter` naming the first that is wrong."""
    names = {field.alias or name: field for name, field in model.model_fields.items()}
    unknown = sorted(set(query.keys()) - set(names))
    if unknown:
        raise BadParameter(unknown[0], f"unknown parameter {unknown[0]!r}")
    given: dict[str, object] = {}
    for name, field in names.items():
        values = query.getlist(name)
        if not values:
            continue
        if _repeatable(field.annotation):
            given[name] = values
        elif len(values) > 1:
            raise BadParameter(name, f"{name} may be given once")
        else:
            given[name] = values[0]
    try:
        return model.model_validate(given)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        name = str(problem["loc"][0])
        if problem["type"] in ("enum", "literal_error"):
            choices = ", ".join(_choices(names[name].annotation))
            raise BadParameter(name, f"{name} must be one of {choices}") from None
        raise BadParameter(name, f"{name} {problem['msg']}") from None


def _repeatable(annotation: Any) -> bool:
    return any(get_origin(option) is list for option in (annotation, *get_args(annotation)))


def _choices(annotation: Any) -> list[str]:
    """The values a Literal or an enum (optional, or in a list) allows."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [choice for option in get_args(annotation) for choice in _choices(option)]


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

    def decode(self, cursor: str | None) -> list[object] | None:
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
