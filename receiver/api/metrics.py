"""`GET /metrics` in Prometheus's text format.

Two kinds of figures:
- what each process sees: the counters and histograms of receiver.metrics;
- what the database holds (messages by current status, anomalies, forwards by state,
  the projection's backlog and whether it is stalled, whether the database answers):
  read at scrape time on the dashboard pool, at most every few seconds. With the
  database away the scrape still answers, with `receiver_database_up 0`.

The endpoint is open unless `RECEIVER_METRICS_TOKEN` is set; then it needs
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from receiver.db.engine import UNAVAILABLE_ERRORS, Pool, Record
from receiver.forwarding.watch import Silence, silence, troubled_handlers
from receiver.http import error_response
from receiver.metrics import POOL, READ_REPLICA_LAG
from receiver.projection.backlog import Backlog, backlog

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

    def __init__(
        self, stall_after: timedelta, silent_after: timedelta = timedelta(minutes=30)
    ) -> None:
        self.stall_after = stall_after
        self.silent_after = silent_after
        self.read_at = 0.0
        self.up = True
        self.messages: list[Record] = []
        self.forwards: list[Record] = []
        self.backlog = Backlog(0, None)
        self.handlers: list[Record] = []
        self.silence = Silence(False, None, None, 0)

    async def refresh(self, pool: Pool) -> None:
        """Read the figures again when the last read is older than a few seconds.

        With the database away, the last figures read are kept and `up` is False.
        """
        if time.monotonic() - self.read_at < _DATABASE_TTL:
            return
        try:
            async with pool.acquire() as conn:
                self.messages = await conn.fetch(_MESSAGES)
                self.forwards = await conn.fetch(_FORWARDS)
                self.backlog = await backlog(conn)
                self.handlers = await troubled_handlers(conn)
                self.silence = await silence(conn, self.silent_after)
        except UNAVAILABLE_ERRORS:
            self.up = False
        else:
            self.up = True
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
        now = datetime.now(UTC)
        lag.add_metric([], self.backlog.lag_seconds(now))
        stalled = GaugeMetricFamily(
            "receiver_projection_stalled_seconds",
            "How long events have waited with no projector batch committing, once that is"
            " RECEIVER_PROJECTION_STALL_AFTER or longer; 0 otherwise.",
        )
        since = self.backlog.stalled_since(self.stall_after, now)
        stalled.add_metric([], (now - since).total_seconds() if since else 0.0)
        up = GaugeMetricFamily(
            "receiver_database_up",
            "1 when the last read of the database's figures succeeded, 0 when it was away.",
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        handlers = GaugeMetricFamily(
            "receiver_handlers",
            "Handlers in trouble: failing (no success since a failure) or disabled.",
            labels=["state"],
        )
        waiting = GaugeMetricFamily(
            "receiver_handler_forwards_waiting",
            "Forwards waiting for each failing or disabled handler.",
            labels=["handler_id", "state"],
        )
        counts = {"failing": 0, "disabled": 0}
        for h in self.handlers:
            state = "disabled" if not h["enabled"] else "failing"
            counts[state] += 1
            waiting.add_metric([str(h["id"]), state], h["waiting"])
        for state, n in counts.items():
            handlers.add_metric([state], n)
        silent = GaugeMetricFamily(
            "receiver_webhooks_silent_seconds",
            "How long an SMS CALLR accepted has waited with no delivery report since, once"
            " that is RECEIVER_WEBHOOKS_SILENT_AFTER or longer; 0 otherwise.",
        )
        since = self.silence.since
        silent.add_metric([], (now - since).total_seconds() if since else 0.0)
        yield from (messages, anomalies, forwards, pending, lag, stalled, up)
        yield from (handlers, waiting, silent)


def observe_pool(name: str, pool: Pool) -> None:
    size, idle = pool.get_size(), pool.get_idle_size()
    POOL.labels(name, "busy").set(size - idle)
    POOL.labels(name, "idle").set(idle)


class MetricsEndpoint:
    """The `/metrics` route: this process's figures, or every worker's, and the database's."""

    def __init__(
        self,
        token: str | None,
        *,
        stall_after: timedelta,
        silent_after: timedelta = timedelta(minutes=30),
    ) -> None:
        self.token = token
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = REGISTRY
        # A registry of this app's own: several apps in one process (tests) each
        # read their own database.
        self.database = DatabaseFigures(stall_after, silent_after)
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
        replica = request.state.reads.state
        if replica is not None:
            lag = replica.lag_seconds
            READ_REPLICA_LAG.set(-1 if lag is None else lag)
        text = generate_latest(self.registry) + generate_latest(self.database_registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)
