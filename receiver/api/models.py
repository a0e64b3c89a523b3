"""The API's contract, typed: every request body, query and answer of /api/v1 as a model.

The OpenAPI description (`receiver.api.openapi`) is generated from these models, and
every answer goes out through its model (`answer`): a field a route adds without
the contract, or a value of the wrong type, fails the route's tests instead of
drifting from the description. Errors keep their shape, `{"error", "parameter"}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response

from receiver.callr.gsm import MAX_TEXT
from receiver.callr.sends import SendState
from receiver.callr.sms import MAX_NUMBER, MAX_USER_DATA
from receiver.db.models import EventState, ForwardState
from receiver.http import JSONResponse, error_response, whole_number
from receiver.status import Status

# The enums' own values: a status, an event's or forward's state, a send's state.
StatusName = Status
EventStateName = EventState
ForwardStateName = ForwardState
SendStateName = SendState


class Answer(BaseModel):
    """An answer of the API: every field declared, nothing else."""

    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """A request body: an unknown field, or a value of another JSON type, is a 400 naming it.

    Strict: JSON's types as they are (no "true" for true, no "10" for 10). The rules
    beyond the shape (a URL's scheme, a secret's form, a number's range) are the
    route's own, with their own messages; the description shows them as well.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class Error(Answer):
    error: str
    parameter: str | None = None
    model_config = ConfigDict(extra="allow")  # some errors name the object (`id`, `sms_id`)


# ------------------------------------------------------------------ messages


class Message(Answer):
    id: str = Field(description="the SMS id, lower case")
    direction: Literal["outbound", "inbound"]
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    text: str | None = None
    user_data: str | None = None
    status: StatusName
    provider_status: str = Field(description="as CALLR spelled it")
    status_at: datetime
    created_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    parts: int | None = None
    cost: str | None = Field(
        None,
        description="v1's b_customer_debit, a decimal as CALLR reported it (CALLR documents"
        " no unit)",
    )
    cost_cents: str | None = Field(
        None, description="v2's cost, a decimal in cents as CALLR documents it"
    )
    network: str | None = Field(None, description="MCC+MNC")
    encoding: str | None = None
    nature: str | None = None
    error: str | None = None
    anomaly: bool = Field(description="the reports of this SMS disagree")


class HistoryStep(Answer):
    before: StatusName
    after: StatusName
    at: datetime
    derived: bool = Field(description="inferred, not reported")
    event_id: str
    reported_at: datetime | None = Field(
        None,
        description="when the event that reported the step (or, derived, the event it was"
        " inferred from) arrived",
    )


class MessageEvent(Answer):
    event_id: str
    type: str | None
    received_at: datetime
    state: EventStateName
    tries: list[int]


class Forward(Answer):
    id: int
    kind: Literal["reply", "status"] = Field(
        description="an inbound SMS, or a change of an outbound SMS's status"
    )
    event_id: str
    sms_id: str
    handler_id: int | None = None
    rule: Literal["user_data", "recent_mt", "default", "unrouted"]
    user_data: str | None = None
    mt_sms_id: str | None = None
    status_before: str | None = Field(None, description="a status change: from")
    status_after: str | None = Field(None, description="a status change: to")
    state: ForwardStateName
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None


class Reconciliation(Answer):
    """What `receiver callr reconcile` last learned of an SMS."""

    checks: int
    checked_at: datetime
    unknown: bool = Field(description="CALLR does not know it (not asked again)")
    answer_status: str | None = None


class MessageDetail(Message):
    history: list[HistoryStep]
    events: list[MessageEvent]
    forwards: list[Forward]
    reconciliation: Reconciliation | None = None


class MessagePage(Answer):
    items: list[Message]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


# -------------------------------------------------------------------- events


class Event(Answer):
    event_id: str
    type: str | None = None
    emitted_at: datetime | None = None
    received_at: datetime
    state: EventStateName
    reason: str | None = None
    sms_id: str | None = None


class Delivery(Answer):
    try_: int | None = Field(alias="try")
    received_at: datetime
    headers: dict[str, str]
    conflict: bool
    subscription: str | None = None
    remote_addr: str | None = None
    body: str | None = Field(None, description="a conflicting delivery's own body, when UTF-8")
    body_base64: str | None = Field(None, description="a conflicting delivery's own body")


class EventDetail(Event):
    subscription: str | None = None
    body: str | None = Field(None, description="the raw body, when it is UTF-8")
    body_base64: str = Field(description="the raw body, always")
    deliveries: list[Delivery]


class EventPage(Answer):
    items: list[Event]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class ForwardPage(Answer):
    items: list[Forward]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class RetriedForward(Answer):
    id: int
    state: str


# ------------------------------------------------------------------ handlers

HandlerEvents = Literal["replies", "status"]


class Handler(Answer):
    id: int
    user_data: str | None = Field(None, description="a final * matches a prefix")
    default: bool
    url: str
    signed: bool
    timeout: float
    enabled: bool
    created_at: datetime
    events: list[HandlerEvents] = Field(description="the news it gets")
    status_filter: str | None = Field(
        None, description="with status: all changes, or terminal ones only"
    )
    final_statuses: list[int] = Field(
        description="answers that end a forward at once; any other but a 2xx is tried again"
    )
    max_in_flight: int | None = Field(
        description="requests in flight to it at once (null: the default)"
    )
    rate: float | None = Field(description="requests a second at most (null: no limit)")
    attempts: int | None = Field(description="attempts of a forward (null: the default, 12)")
    first_retry: float | None = Field(
        description="seconds before the second attempt, doubling after (null: the default, 40)"
    )
    notify_url: str | None = Field(description="where its owners hear of its health")
    disabled_reason: str | None = Field(description="why it is disabled")
    disabled_at: datetime | None
    failing_since: datetime | None = Field(description="its first failure after a success")
    previous_secret_until: datetime | None = Field(
        description="until then the secret before the last rotation signs too"
    )


class NewHandlerAnswer(Handler):
    routed_forwards: int = Field(description="waiting forwards routed to it at once")


class HandlerList(Answer):
    items: list[Handler]


_NO_NUL_AND_NOT_ONLY_STAR = "^[^\\u0000]*[^*\\u0000][^\\u0000]*$"
_URL = "^https?://[^/?#\\s\\u0000-\\u001f\\u007f-\\u009f][^\\s\\u0000-\\u001f\\u007f-\\u009f]*$"
# A pattern, not a secret:
_SECRET = "^(whsec_)?([A-Za-z0-9+/]{4}){8,}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # noqa: S105


def _or_null(constraints: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """`constraints` on an optional field's value, where JSON Schema reads them: in the
    branch of its `anyOf` that is not null (beside it they would refuse the null the
    field takes, and OpenAPI validators refuse the schema)."""

    def extra(schema: dict[str, Any]) -> None:
        for option in schema.get("anyOf", [schema]):
            if option.get("type") != "null":
                option.update(constraints)

    return extra


class HandlerChanges(Body):
    """What PATCH changes: the fields given, a null setting a policy field (or the secret,
    the notice URL) back to none. A new handler takes the same fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = Field(None, json_schema_extra=_or_null({"format": "uri", "pattern": _URL}))
    secret: str | None = Field(
        None,
        description="whsec_ followed by base64 of at least 24 bytes",
        json_schema_extra=_or_null({"pattern": _SECRET}),
    )
    timeout: float | None = Field(
        None, json_schema_extra=_or_null({"exclusiveMinimum": 0, "maximum": 300})
    )
    events: list[str] | None = Field(
        None,
        description="replies (the default): the inbound SMS routed to it; status: each change"
        " of the status of an outbound SMS sent with its user_data",
        json_schema_extra=_or_null(
            {
                "items": {"type": "string", "enum": ["replies", "status"]},
                "minItems": 1,
                "uniqueItems": True,
            }
        ),
    )
    status_filter: str | None = Field(
        None,
        description="with status: every change (all) or only to delivered, failed, expired or"
        " error (terminal)",
        json_schema_extra=_or_null({"enum": ["all", "terminal"]}),
    )
    final_statuses: list[int] | None = Field(
        None,
        description="HTTP statuses (300-599) that end a forward at once; none by default",
        json_schema_extra=_or_null(
            {
                "items": {"type": "integer", "minimum": 300, "maximum": 599},
            }
        ),
    )
    max_in_flight: int | None = Field(
        None, json_schema_extra=_or_null({"minimum": 1, "maximum": 1000})
    )
    rate: float | None = Field(
        None,
        description="requests a second",
        json_schema_extra=_or_null({"exclusiveMinimum": 0, "maximum": 1000}),
    )
    attempts: int | None = Field(None, json_schema_extra=_or_null({"minimum": 1, "maximum": 100}))
    first_retry: float | None = Field(
        None,
        description="seconds",
        json_schema_extra=_or_null({"exclusiveMinimum": 0, "maximum": 86400}),
    )
    notify_url: str | None = Field(
        None,
        description="signed notices of its health: failing, disabled, recovered",
        json_schema_extra=_or_null({"format": "uri", "pattern": _URL}),
    )


class NewHandler(HandlerChanges):
    """Either a user_data value (or prefix) or the default handler, never both or neither."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [
                {"required": ["user_data"], "properties": {"default": {"const": False}}},
                {
                    "required": ["default"],
                    "properties": {"default": {"const": True}},
                    "not": {"required": ["user_data"]},
                },
            ]
        },
    )

    user_data: str | None = Field(
        None,
        description="a value, or a prefix ending in '*'",
        json_schema_extra=_or_null({"pattern": _NO_NUL_AND_NOT_ONLY_STAR}),
    )
    default: bool | None = None
    url: str = Field(json_schema_extra={"format": "uri", "pattern": _URL})


class RotatedSecret(Answer):
    handler: Handler
    secret: str = Field(description="the new secret, shown this once")


# ------------------------------------------------------------- registrations


class RegistrationRequest(Body):
    user_data: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_USER_DATA})
    to: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_NUMBER})
    from_: str | None = Field(None, alias="from", json_schema_extra={"maxLength": MAX_NUMBER})
    created_at: str | None = Field(
        None,
        description="when it was sent, RFC 3339 with its zone (default: now)",
        json_schema_extra={"format": "date-time"},
    )


class Registration(Answer):
    sms_id: str
    event_id: str = Field(description="the registration's event")
    registered: bool = Field(description="false: it was registered already")


# --------------------------------------------------------------------- stats


class Latency(Answer):
    p50: float
    p90: float
    p99: float


class Outcomes(Answer):
    key: Any = Field(None, description="the group's value (network, user_data, hour or day)")
    total: int
    by_status: dict[str, int]
    delivery_rate: float | None = Field(description="delivered / all terminal")
    latency_seconds: Latency | None = Field(description="from sent to delivered")
    anomalies: int


class Stats(Answer):
    since: datetime
    until: datetime
    outbound: Outcomes | None = None
    group_by: str | None = None
    groups: list[Outcomes] | None = None
    mo_received: int
    forwards: dict[str, int]
    deliveries: dict[str, int] | None = None
    anomalies: int


class Projection(Answer):
    pending: int = Field(ge=0, description="stored events not yet applied to the message records")
    lag_seconds: float = Field(ge=0, description="how long the oldest pending event has waited")
    oldest_pending_received_at: datetime | None
    last_batch_at: datetime | None = Field(description="when a projector last committed a batch")
    stalled: bool = Field(
        description="events wait and no batch came for RECEIVER_PROJECTION_STALL_AFTER"
    )
    stalled_since: datetime | None


class TroubledHandler(Answer):
    id: int
    user_data: str | None
    default: bool
    failing_since: datetime | None = Field(description="its first failure after a success")
    disabled_reason: str | None
    disabled_at: datetime | None
    waiting: int = Field(description="forwards waiting for it")


class HandlersHealth(Answer):
    failing: list[TroubledHandler] = Field(description="enabled, no success since failing_since")
    disabled: list[TroubledHandler] = Field(description="disabled: by an admin, a 410, or time")


class WebhooksHealth(Answer):
    silent: bool = Field(
        description="an SMS CALLR accepted RECEIVER_WEBHOOKS_SILENT_AFTER ago or more, and no"
        " delivery report since it was asked for"
    )
    silent_since: datetime | None
    last_report_at: datetime | None = Field(description="the last delivery report's arrival")
    unreported_sends: int = Field(description="SMS accepted since the last report")


class ServiceStatus(Answer):
    projection: Projection
    handlers: HandlersHealth
    webhooks: WebhooksHealth
    schema_: str | None = Field(alias="schema", description="the database's schema revision")
    version: str = Field(description="this release of the receiver")


# ------------------------------------------------------------------- sending

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class SmsPreviewRequest(Body):
    text: Text
    encoding: Literal["gsm", "unicode"] | None = Field(
        None,
        description="forced (CALLR's force_encoding); chosen from the text when absent",
    )
    from_: str | None = Field(
        None,
        alias="from",
        max_length=11,
        description="the sender: with one, CALLR replaces %STOPNUM% by the STOP number",
    )
    to: str | None = Field(
        None,
        description="E.164: with ?quote=true, CALLR's own estimate for this number",
        json_schema_extra={"pattern": "^\\+[1-9][0-9]{6,14}$"},
    )

    @field_validator("to")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
            raise ValueError("to must be a number in E.164 form, such as +33612345678")
        return value


class Quote(Answer):
    parts: int | None = Field(description="CALLR's count of the parts it would bill")
    encoding: Literal["gsm", "unicode"] | None
    cost: str | None = Field(description="as CALLR gives it")
    source: Literal["callr"] = Field(description="CALLR's estimate: sending may differ")


class SmsPreview(Answer):
    parts: int = Field(ge=1)
    encoding: Literal["gsm", "unicode"]
    characters: int
    units: int = Field(description="septets, or UTF-16 code units")
    unit: Literal["septets", "UTF-16 code units"]
    forced_unicode_by: list[str] = Field(
        description="the characters GSM 03.38 lacks, which made the text unicode"
    )
    replaced: list[str] = Field(description="with encoding gsm: the characters CALLR replaces")
    stop_number_length: int | None = Field(
        description="the length %STOPNUM% was counted as (a sender set), else null"
    )
    stop_number_assumed: bool = Field(
        description="that length is the assumed 5 digits: RECEIVER_CALLR_STOP_NUMBER is unset"
    )
    quote: Quote | None = Field(None, description="CALLR's sms.get_quote, with ?quote=true")


class SendRequest(Body):
    """Its rules (E.164, the text's length, CALLR's sender rules, the token's prefix) are
    receiver.sending.requests.read_request's, which `receiver send` shares."""

    to: str = Field(description="E.164", json_schema_extra={"pattern": "^\\+[1-9][0-9]{6,14}$"})
    text: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_TEXT})
    from_: str | None = Field(None, alias="from", description="CALLR's sender rules")
    user_data: str | None = Field(
        None, max_length=255, description="replies route by it (a send token's PREFIX starts it)"
    )
    nature: Literal["alerting", "marketing"] | None = None
    encoding: Literal["gsm", "unicode"] | None = Field(None, description="forced")


class Send(Answer):
    id: str
    state: SendStateName
    sms_id: str | None = Field(description="CALLR's id, once accepted")
    error: str | None = Field(description="CALLR's reason, when rejected")
    reason: str | None = Field(description="why the last step was taken")
    attempts: int
    to: str
    from_: str | None = Field(alias="from")
    text: str
    user_data: str | None
    nature: str | None
    encoding: Literal["gsm", "unicode"] = Field(description="CALLR's once reported, else estimated")
    parts: int = Field(ge=1, description="CALLR's billed parts once reported, else estimated")
    parts_from: Literal["callr", "estimate"] = Field(
        description="where parts and encoding come from"
    )
    estimated_parts: int = Field(ge=1, description="the receiver's count, by CALLR's rules")
    estimated_encoding: Literal["gsm", "unicode"]
    warnings: list[str] = Field(
        description="what to know of a request CALLR takes as it is (a sender and replies,"
        " %STOPNUM%)"
    )
    forced_unicode_by: list[str]
    replaced: list[str]
    api: Literal["v1", "v2"]
    idempotency_key: str | None
    requested_at: datetime
    attempted_at: datetime | None
    decided_at: datetime | None
    updated_at: datetime
    next_at: datetime | None = Field(description="when the sender acts next (queued, submitted)")


class Settle(Body):
    state: Literal["accepted", "rejected", "queued"]
    sms_id: str | None = Field(
        None, max_length=64, pattern="^[A-Za-z0-9]+$", description="with accepted: CALLR's id"
    )
    error: str | None = Field(None, max_length=1000)


# ----------------------------------------------------------- status callbacks


class CallbackChange(Answer):
    before: StatusName | None
    after: StatusName
    at: datetime


class CallbackStep(Answer):
    before: StatusName
    after: StatusName
    at: datetime


class CallbackSms(Answer):
    id: str
    to: str | None = None
    from_: str | None = Field(None, alias="from")
    user_data: str | None = None
    status: StatusName
    provider_status: str | None = None
    status_at: datetime | None = None
    error: str | None = None
    parts: int | None = None
    cost: str | None = None
    cost_cents: str | None = None
    network: str | None = None
    history: list[CallbackStep]


class StatusCallback(Answer):
    """What a handler subscribed to status news receives, once per change of an SMS's
    current status, never backwards, in order per SMS. Headers: webhook-id (the
    callback_id, stable across retries), webhook-timestamp, and webhook-signature when
    the handler has a secret (Standard Webhooks)."""

    type: Literal["sms.status"]
    callback_id: str
    user_data: str | None = Field(description="the SMS's user_data, which routed it")
    change: CallbackChange
    sms: CallbackSms


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


class MessagesQuery(Query):
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
    limit: Limit = Field(100, description=_LIMIT)
    cursor: QueryText | None = Field(None, description=_CURSOR)


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


# ------------------------------------------------------------------- answers


def answer(model: type[Answer], data: Any, status_code: int = 200, **headers: str) -> JSONResponse:
    """`data` sent as the route's `model` says: checked against it, dumped by its aliases."""
    checked = model.model_validate(data)
    return JSONResponse(
        checked.model_dump(by_alias=True, exclude_unset=False),
        status_code=status_code,
        headers=headers or None,
    )


B = TypeVar("B", bound="Body")


async def read_body(model: type[B], request: Request) -> B | Response:
    """The request's JSON body read by `model`, or the 400 that says what is wrong."""
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return error_response(400, f"body is not valid JSON: {error}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        parameter, message = first_problem(error)
        return error_response(400, message, parameter=parameter)


def first_problem(error: ValidationError) -> tuple[str | None, str]:
    """(the field, what is wrong with it) of a body a model refused: its first error."""
    problem = error.errors(include_url=False)[0]
    location = [str(part) for part in problem["loc"]]
    field = location[0] if location else None
    kind = problem["type"]
    if kind == "extra_forbidden":
        return field, f"unknown field(s): {field}"
    if kind == "missing":
        return field, f"{field} is required"
    if kind == "model_type" or field is None:
        return None, "body must be a JSON object"
    where = ".".join(location)
    return field, f"{where}: {problem['msg']}"
