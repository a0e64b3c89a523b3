"""Sending through the receiver: previews, sends, settling; the status callbacks posted
to handlers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
)

from receiver.api.models.base import (
    Answer,
    Body,
    SendStateName,
    StatusName,
)
from receiver.callr.gsm import MAX_TEXT

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
