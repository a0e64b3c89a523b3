"""The counters and histograms every stage keeps: what each process sees.

Requests, acknowledgement latency, batches, forwards, CALLR API calls, kept by
prometheus-client; with several uvicorn workers they live in files under
`PROMETHEUS_MULTIPROC_DIR`, which `receiver serve` sets, and a scrape of any worker
sums them all. `GET /metrics` itself, with the figures it reads from the database,
is receiver.api.metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.metrics import MetricWrapperBase


def children(metric: MetricWrapperBase) -> Callable[..., Any]:
    """`metric.labels`, each set of label values looked up once: for the counters of every
    webhook request, whose labels take few values (labels() checks and locks each time,
    half the cost of the request's counters)."""
    return functools.cache(metric.labels)


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
    "Batches taken by a standby writer while the first writer's batch ran over 5 ms "
    "(its commit slowed by other work, a lock wait, or the database behind).",
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
    "Requests to CALLR's API, by call (webhooks.subscribe, GET /sms, GET /sms/<hash>,"
    " sms.send, POST /v2.0/sms) and outcome (ok, not_found, throttled, server_error,"
    " timeout, unreachable, unauthorized, error, not_json, wrong_shape; for sends: accepted,"
    " rejected, not_sent, lost).",
    ["method", "outcome"],
)


def count_callr_call(call: str, outcome: str) -> None:
    """One try of a call to CALLR's API and how it ended (CallrApi's `observe`)."""
    CALLR_API.labels(call, outcome).inc()


UNKNOWN_SUBSCRIPTIONS = Counter(
    "receiver_callr_unknown_subscriptions",
    "Webhook subscriptions (hook_hash, sid) seen on events that `receiver callr subscribe`"
    " did not make; counted once per subscription and process.",
)
RECONCILED = Counter(
    "receiver_reconciled_sms",
    "Outbound SMS asked of CALLR by reconcile, by outcome (changed, unchanged, unknown,"
    " failed: an error about that SMS, counted as a check).",
    ["outcome"],
)
SENDS = Counter(
    "receiver_sends",
    "Steps of sends through the receiver, by outcome: accepted, rejected, not_sent (tried"
    " again), lost (an answer lost, then looked for), found (a lost one found at CALLR),"
    " absent (a lost one CALLR does not have: sent again), unknown (left to an admin).",
    ["outcome"],
)
POOL = Gauge(
    "receiver_db_pool_connections",
    "Database connections of this service, by pool (writer: the answer path; background:"
    " the projector and the dispatcher; api) and state (busy, idle).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
READ_REPLICA_LAG = Gauge(
    "receiver_read_replica_lag_seconds",
    "How far RECEIVER_READ_DATABASE_URL's standby replays behind the primary, as last"
    " checked (-1: it does not answer; 0 when no replica is set).",
    multiprocess_mode="max",
)
CONSOLE_SIGN_INS = Counter(
    "receiver_console_sign_ins",
    "Console sign-ins, by outcome: ok, refused (a token that opens nothing), throttled"
    " (429: too many failures from the address, or from all, in the last minute).",
    ["outcome"],
)
