"""Statistics and the service's status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    Field,
)

from receiver.api.models.base import (
    Answer,
)

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


class ReadReplica(Answer):
    lag_seconds: float | None = Field(description="how far its replay is behind the primary")
    used: bool = Field(description="the read pages read there now")
    reason: str | None = Field(description="why not, when not: its lag, or it does not answer")


class ServiceStatus(Answer):
    projection: Projection
    handlers: HandlersHealth
    webhooks: WebhooksHealth
    read_replica: ReadReplica | None = Field(
        description="RECEIVER_READ_DATABASE_URL's standby; null when none is set"
    )
    schema_: str | None = Field(alias="schema", description="the database's schema revision")
    schema_head: str = Field(description="the schema revision this release was written for")
    schema_compatible: bool = Field(
        description="this release runs on the database's schema: its own head, or a newer"
        " revision whose migrations recorded that it does"
    )
    version: str = Field(description="this release of the receiver")
