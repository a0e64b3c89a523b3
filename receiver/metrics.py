"""`GET /metrics` in Prometheus's text format.

Two kinds of figures:
- what each process sees (requests, acknowledgement latency, batches, forwards):
  counters and histograms of prometheus-client; with several uvicorn workers they
  live in files under `PROMETHEUS_MULTIPROC_DIR`, which `receiver serve` sets, and a
  scrape of any worker sums them all;
- what the database holds (messages by current status, anomalies, forwards by state,
  the projection's backlog): read at scrape time on the dashboard pool, at most
  every few seconds.

The endpoint is open unless `RECEIVER_METRICS_TOKEN` is set; then it needs
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from receiver.http import error_response
from receiver.projection.backlog import Backlog, backlog

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

WEBHOOKS = Counter(
    "receiver_webhook_requests",
    "Webhook requests answered, by result (stored, unhandled, duplicate, invalid, "
    "unauthorized, too_large, unavailable, ...) and event type.",
    ["result", "type"],
)
ACK_SECONDS = Histogram(
    "receiver_webhook_ack_seconds",
    "From a webhook request's arrival to its answer (after the commit for a 2xx).",
    buckets=_LATENCY_BUCKETS,
)
DELIVERIES = Counter(
    "receiver_deliveries",
    "Deliveries received, by kind: new (a first event), duplicate (an event already "
    "stored), retry (try above 0), conflict (same id, other content).",
    ["kind"],
)
BATCH_SIZE = Histogram(
    "receiver_batch_size",
    "Webhook events per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS = Histogram(
    "receiver_batch_commit_seconds",
    "Time to store one batch of webhook events and commit it (the answer path).",
    buckets=_LATENCY_BUCKETS,
)
STANDBY_BATCHES = Counter(
    "receiver_standby_batches",
    "Batches taken by a standby writer while the first writer's batch ran over 20 ms "
    "(it waited for a lock, or the database fell behind).",
)
PROJECTED = Counter(
    "receiver_projected_events",
    "Stored events the projector applied to the message records (and forwards).",
)
PROJECTOR_BATCH_SIZE = Histogram(
    "receiver_projector_batch_size",
    "Events per projector transaction.",
    buckets=(1, 4, 16, 64, 256, 1024, 2048, 4096, 10000),
)
PROJECTOR_BATCH_SECONDS = Histogram(
    "receiver_projector_batch_seconds",
    "Time to claim, project, route and commit one projector batch.",
    buckets=_LATENCY_BUCKETS,
)
PROJECTION_FAILED = Counter(
    "receiver_projection_failed_events",
    "Events the projector could not apply (the database refused a value): kept as invalid.",
)
OUT_OF_ORDER = Counter(
    "receiver_out_of_order_reports",
    "Status reports older than what the message record already showed when they arrived.",
)
FORWARDS_DONE = Counter("receiver_forwards_delivered", "Forwards a handler acknowledged.")
FORWARDS_DEAD = Counter("receiver_forwards_dead", "Forwards given up after the last attempt.")
FORWARD_ATTEMPTS = Counter(
    "receiver_forward_attempts", "Forward attempts, by outcome (ok, failed).", ["outcome"]
)
FORWARD_SECONDS = Histogram(
    "receiver_forward_latency_seconds",
    "From an MO's arrival to its handler's acknowledgement.",
    buckets=(*_LATENCY_BUCKETS, 30, 60, 300, 900, 3600, 21600),
)
CALLR_API = Counter(
    "receiver_callr_api_requests",
    "Requests to CALLR's API, by call (webhooks.subscribe, GET /sms, GET /sms/<hash>) and"
    " outcome (ok, not_found, throttled, server_error, timeout, unreachable, unauthorized,"
    " error, not_json, wrong_shape).",
    ["method", "outcome"],
)
UNKNOWN_SUBSCRIPTIONS = Counter(
    "receiver_callr_unknown_subscriptions",
    "Webhook subscriptions (hook_hash, sid) seen on events that `receiver callr subscribe`"
    " did not make; counted once per subscription and process.",
)
RECONCILED = Counter(
    "receiver_reconciled_sms",
    "Outbound SMS asked of CALLR by reconcile, by outcome (changed, unchanged, unknown).",
    ["outcome"],
)
POOL = Gauge(
    "receiver_db_pool_connections",
    "Database connections of this service, by pool (writer: the answer path; background:"
    " the projector and the dispatcher; api) and state (busy, idle).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)

# Kept short: every status of every message of the last day is counted per scrape.
_DATABASE_TTL = 5.0
_MESSAGES = """
SELECT direction, status::text AS status, count(*) AS n,
    count(*) FILTER (WHERE anomaly) AS anomalies
FROM messages WHERE created_at >= now() - interval '1 day'
GROUP BY 1, 2
"""
# Done forwards are counted by the dispatchers: the table holds every one ever made.
_FORWARDS = "SELECT state, count(*) AS n FROM forwards WHERE state <> 'done' GROUP BY state"


class DatabaseFigures(Collector):
    """The gauges read from the database, as of the last `refresh`."""

    def __init__(self) -> None:
        self.read_at = 0.0
        self.messages: list[Any] = []
        self.forwards: list[Any] = []
        self.backlog = Backlog(0, None)

    async def refresh(self, pool: Any) -> None:
        if time.monotonic() - self.read_at < _DATABASE_TTL:
            return
        async with pool.acquire() as conn:
            self.messages = await conn.fetch(_MESSAGES)
            self.forwards = await conn.fetch(_FORWARDS)
            self.backlog = await backlog(conn)
        self.read_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "receiver_messages_last_day",
            "Messages created in the last 24 hours, by direction and current status.",
            labels=["direction", "status"],
        )
        anomalies = GaugeMetricFamily(
            "receiver_anomalies_last_day",
            "Messages created in the last 24 hours whose reports contradict each other.",
        )
        for row in self.messages:
            messages.add_metric([row["direction"], row["status"]], row["n"])
        anomalies.add_metric([], sum(row["anomalies"] for row in self.messages))
        forwards = GaugeMetricFamily(
            "receiver_forwards", "Forwards not yet delivered, by state.", labels=["state"]
        )
        for row in self.forwards:
            forwards.add_metric([row["state"]], row["n"])
        pending = GaugeMetricFamily(
            "receiver_projection_pending",
            "Stored events not yet applied to the message records by the projector.",
        )
        pending.add_metric([], self.backlog.pending)
        lag = GaugeMetricFamily(
            "receiver_projection_lag_seconds",
            "Age of the oldest event waiting for the projector (0 when none waits).",
        )
        lag.add_metric([], self.backlog.lag_seconds())
        yield from (messages, anomalies, forwards, pending, lag)


def observe_pool(name: str, pool: Any) -> None:
    size, idle = pool.get_size(), pool.get_idle_size()
    POOL.labels(name, "busy").set(size - idle)
    POOL.labels(name, "idle").set(idle)


class MetricsEndpoint:
    """The `/metrics` route: this process's figures, or every worker's, and the database's."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = REGISTRY
        # A registry of this app's own: several apps in one process (tests) each
        # read their own database.
        self.database = DatabaseFigures()
        self.database_registry = CollectorRegistry()
        self.database_registry.register(self.database)

    async def metrics(self, request: Request) -> Response:
        if self.token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return error_response(401, "a valid bearer token is required")
        await self.database.refresh(request.state.api_pool)
        observe_pool("writer", request.state.writer_pool)
        observe_pool("background", request.state.pool)
        observe_pool("api", request.state.api_pool)
        text = generate_latest(self.registry) + generate_latest(self.database_registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)
