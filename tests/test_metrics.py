"""`/metrics`: what an operator's Prometheus scrapes, from one process and from several."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, v1_event, v2_event
from testkit.support import example, running, until_projected, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.test_cli import free_port, wait_ready

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, S, D = Status.CREATED, Status.SENT, Status.DELIVERED


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_deliveries_batches_and_database_figures(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings(dispatcher=False))
    async with running(app) as client:
        # Counters are per process: read them here, and the database's figures once, after.
        before = generate_latest(REGISTRY).decode()
        mt = "sms.mt.status_update"
        body = example("v1-sms.mt.status_update")
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        sent = [
            body,
            body,  # a repeat
            with_fields(body, try_=2),  # a retry
            v2_event("m-1", "metr0001", lifecycle(C, S, D, start=now)),
            # An older report after a newer one: out of order.
            v1_event("m-2", "metr0001", lifecycle(C, S, start=now)),
            v2_event("m-3", "metr0002", lifecycle(C, S, start=BASE_TIME)),
            b"{not json",
        ]
        for one in sent:
            await client.post(WEBHOOK, content=one)
        await client.post("/webhooks/callr/wrong-token", content=body)
        # A 2xx promises the events stored, not projected: the figures below are the
        # projector's (under load it may still be at work).
        await until_projected(client)
        response = await client.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("receiver_webhook_requests_total", result="stored", type=mt) == 2
    assert delta("receiver_webhook_requests_total", result="duplicate", type=mt) == 2
    assert delta("receiver_webhook_requests_total", result="invalid", type="other") == 1
    assert delta("receiver_webhook_requests_total", result="unknown_url", type="none") == 1
    assert delta("receiver_deliveries_total", kind="new") == 5
    assert delta("receiver_deliveries_total", kind="duplicate") == 2
    assert delta("receiver_deliveries_total", kind="retry") == 1
    assert delta("receiver_out_of_order_reports_total") == 1
    assert delta("receiver_webhook_ack_seconds_count") == 7
    assert delta("receiver_batch_size_sum") == 7
    # From the database: only the message created in the last day.
    assert value(after, "receiver_messages_last_day", direction="outbound", status="delivered") == 1
    assert value(after, "receiver_messages_last_day", direction="outbound", status="sent") == 0
    pools = {labels for name, labels in samples(after) if name == "receiver_db_pool_connections"}
    assert pools == {
        (("pool", p), ("state", s))
        for p in ("writer", "background", "api")
        for s in ("busy", "idle")
    }
    # Every pool has opened connections by now: the batches, the projector, the
    # database figures.
    for pool in ("writer", "background", "api"):
        opened = sum(
            value(after, "receiver_db_pool_connections", pool=pool, state=state)
            for state in ("busy", "idle")
        )
        assert opened >= 1, pool


async def test_a_metrics_token_is_required_when_set(make_settings: SettingsFactory) -> None:
    async with running(
        create_app(make_settings(metrics_token="scrape-me-0123456789abc"))
    ) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await client.get(
            "/metrics", headers={"authorization": "Bearer scrape-me-0123456789abc"}
        )
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json() == {"error": "a valid bearer token is required"}
    assert "receiver_webhook_requests_total" in right.text


def test_several_workers_report_their_sum(database_url: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "RECEIVER_DATABASE_URL": database_url,
            "RECEIVER_CALLR_URL_TOKEN": TEST_URL_TOKEN,
            "RECEIVER_DISPATCHER": "false",
        },
    )
    try:
        wait_ready(port, process)
        base = f"http://127.0.0.1:{port}"
        sent = 60
        # A new connection each time, so that both workers take some.
        for n in range(sent):
            body = v2_event(f"w-{n}", f"work{n:04d}", lifecycle(C, S))
            assert httpx.post(base + WEBHOOK, content=body, timeout=10).status_code == 200
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    counted = {
        value(
            text, "receiver_webhook_requests_total", result="stored", type="v2.sms.outbound.updated"
        )
        for text in scrapes
    }
    assert counted == {sent}
