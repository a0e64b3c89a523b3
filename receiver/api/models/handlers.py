"""Handlers as answered, changed and registered; registrations of v2 sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
)
from pydantic.config import JsonDict

from receiver.api.models.base import (
    Answer,
    Body,
)
from receiver.callr.sms import MAX_NUMBER, MAX_USER_DATA

# ------------------------------------------------------------------ handlers

HandlerEvents = Literal["replies", "status"]


class Handler(Answer):
    id: int
    name: str | None = Field(None, description="what people call it (shown instead of #id)")
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


# receiver.forwarding.handlers checks the same: printable, not blank at either end, no #.
_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
_NAME = f"^[^#\\s{_CONTROL}]([^{_CONTROL}]*[^\\s{_CONTROL}])?$"
_NO_NUL_AND_NOT_ONLY_STAR = "^[^\\u0000]*[^*\\u0000][^\\u0000]*$"
_URL = "^https?://[^/?#\\s\\u0000-\\u001f\\u007f-\\u009f][^\\s\\u0000-\\u001f\\u007f-\\u009f]*$"
# A pattern, not a secret:
_SECRET = "^(whsec_)?([A-Za-z0-9+/]{4}){8,}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # noqa: S105


def _or_null(constraints: JsonDict) -> Callable[[JsonDict], None]:
    """`constraints` on an optional field's value, where JSON Schema reads them: in the
    branch of its `anyOf` that is not null (beside it they would refuse the null the
    field takes, and OpenAPI validators refuse the schema)."""

    def extra(schema: JsonDict) -> None:
        options = schema.get("anyOf", [schema])
        for option in options if isinstance(options, list) else []:
            if isinstance(option, dict) and option.get("type") != "null":
                option.update(constraints)

    return extra


class HandlerChanges(Body):
    """What PATCH changes: the fields given, a null setting a policy field (or the secret,
    the notice URL) back to none. A new handler takes the same fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(
        None,
        description="what people call it, unique in any case; null: none (shown as #id)",
        json_schema_extra=_or_null({"minLength": 1, "maxLength": 64, "pattern": _NAME}),
    )
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
