"""Query parameters, each route's a model: how a text becomes a value, and the error
when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from receiver.api.models.base import (
    EventStateName,
    ForwardStateName,
    StatusName,
)
from receiver.http import whole_number

# -------------------------------------------------------------------- queries


class Query(BaseModel):
    """A route's query parameters: described in OpenAPI and read by this model
    (`receiver.api.params.read_query`), each value from its text.

    The annotated types below say how a text becomes a value and word what is wrong
    with one; a choice (a Literal or an enum) that is not one is worded by read_query.
    """

    model_config = ConfigDict(extra="forbid")


def _text(value: str) -> str:
    if "\x00" in value:
        # PostgreSQL's text cannot hold it: no stored value can match.
        raise PydanticCustomError("query", "must not contain a NUL character")
    return value


def _time(value: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise PydanticCustomError("query", "must be an ISO 8601 time with a zone") from None
    if parsed.tzinfo is None:
        raise PydanticCustomError("query", "must be an ISO 8601 time with a zone")
    try:
        # Compared in UTC: a time at the edge of year 1 or 9999 may have none.
        parsed.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("query", "is out of the range of times") from None
    return parsed


def _whole(low: int, high: int) -> Callable[[object], int]:
    """A whole number from `low` to `high`, written in ASCII digits only."""

    def read(value: object) -> int:
        number = whole_number(str(value))
        if number is None or not low <= number <= high:
            raise PydanticCustomError(
                "query", "must be a whole number from {low} to {high}", {"low": low, "high": high}
            )
        return number

    return read


QueryText = Annotated[str, AfterValidator(_text)]
QueryTime = Annotated[datetime, BeforeValidator(_time)]
Limit = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole(1, 1000))]
HandlerId = Annotated[int, Field(ge=0, le=2**62), BeforeValidator(_whole(0, 2**62))]
# A row id to page from (the console's lists).
Position = Annotated[int, Field(ge=1, le=2**62), BeforeValidator(_whole(1, 2**62))]
Overlap = Annotated[int, Field(ge=0, le=9_999_999), BeforeValidator(_whole(0, 9_999_999))]


class PreviewQuery(Query):
    quote: Literal["true", "false"] | None = Field(
        None, description="true: ask CALLR's sms.get_quote too (needs `to` and the API login)"
    )


class RotateQuery(Query):
    overlap: Overlap = Field(86_400, description="seconds the old secret keeps signing")


_SINCE = "from this time (inclusive)"
_UNTIL = "to this time (exclusive)"
_CURSOR = "next_cursor of the previous page"
_LIMIT = "items a page"


class MessageFilters(Query):
    """What chooses messages: a page's (MessagesQuery) and an export's alike."""

    direction: Literal["outbound", "inbound"] | None = None
    status: list[StatusName] = Field([], description="repeatable")
    user_data: QueryText | None = None
    from_: QueryText | None = Field(None, alias="from")
    to: QueryText | None = None
    number: QueryText | None = Field(
        None,
        description="a phone number or its start, sent from or to (not with from or to)",
        # Checked by the route, which words its own error (receiver.api.queries).
        json_schema_extra={"pattern": "^[+ ]?[0-9 ().-]{1,40}$"},
    )
    network: QueryText | None = Field(None, description="MCC+MNC")
    since: QueryTime | None = Field(None, description=_SINCE)
    until: QueryTime | None = Field(None, description=_UNTIL)


class MessagesQuery(MessageFilters):
    limit: Limit = Field(100, description=_LIMIT)
    cursor: QueryText | None = Field(None, description=_CURSOR)


class MessagesExportQuery(MessageFilters):
    format: Literal["csv", "ndjson"] = Field(
        "csv", description="csv (a header row, then one row an SMS) or ndjson (one object a line)"
    )


class EventsQuery(Query):
    type: QueryText | None = Field(None, description="event type")
    state: EventStateName | None = None
    since: QueryTime | None = Field(None, description=_SINCE)
    until: QueryTime | None = Field(None, description=_UNTIL)
    limit: Limit = Field(100, description=_LIMIT)
    cursor: QueryText | None = Field(None, description=_CURSOR)


class ForwardsQuery(Query):
    state: ForwardStateName | None = None
    handler: HandlerId | None = Field(None, description="handler id")
    since: QueryTime | None = Field(None, description=_SINCE)
    until: QueryTime | None = Field(None, description=_UNTIL)
    limit: Limit = Field(100, description=_LIMIT)
    cursor: QueryText | None = Field(None, description=_CURSOR)


class StatsQuery(Query):
    since: QueryTime | None = Field(None, description=_SINCE + " (default: a day before until)")
    until: QueryTime | None = Field(None, description=_UNTIL + " (default: now)")
    group_by: Literal["network", "user_data", "hour", "day"] | None = None


def allowed(query: type[Query]) -> set[str]:
    """The names a route's query takes (its model's aliases)."""
    return {field.alias or name for name, field in query.model_fields.items()}
