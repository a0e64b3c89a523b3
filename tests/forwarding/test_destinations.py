"""Where forwards may go: handler URLs refused at registration and again before each forward."""

from __future__ import annotations

import asyncio
import ipaddress

import asyncpg
import pytest

from receiver.app import create_app
from receiver.forwarding.destinations import DestinationRefused, Destinations
from receiver.forwarding.handlers import HandlerError, NewHandler, add_handler
from testkit.callr_events import mo_event
from testkit.handler_server import HandlerServer
from testkit.support import fetch, running, until_projected
from tests.conftest import SettingsFactory
from tests.forwarding.conftest import FAST

ADMIN = "destinations-admin-token-0123"
AUTH = {"authorization": f"Bearer {ADMIN}"}
DATABASE = "postgresql://receiver@10.1.2.3:6543/receiver"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
        ("http://[fe80::1]:8080/", "fe80::1 is link-local"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is unspecified"),
        ("http://[::]:8080/", ":: is unspecified"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254 is link-local"),
        ("http://10.1.2.3:6543/", "10.1.2.3:6543 is the receiver's own database"),
        ("http://user:password@10.0.0.5/h", "must not carry credentials"),
        ("http://token@10.0.0.5/h", "must not carry credentials"),
    ],
)
def test_a_url_forwards_may_not_go_to_is_refused(url: str, reason: str) -> None:
    with pytest.raises(DestinationRefused) as refused:
        Destinations.of((), DATABASE).check(url)
    assert reason in str(refused.value)


# Every IPv6 form of each refused IPv4 address, and the metadata services beyond
# link-local: the class, swept.
_REFUSED_V4 = ["169.254.169.254", "0.1.2.3", "10.1.2.3", "100.100.100.200"]


def _ipv6_forms(v4: str) -> list[str]:
    n = int(ipaddress.IPv4Address(v4))
    high, low = n >> 16, n & 0xFFFF
    return [
        f"::ffff:{v4}",  # mapped
        f"64:ff9b::{high:x}:{low:x}",  # NAT64, well-known prefix
        f"64:ff9b:1::{high:x}:{low:x}",  # NAT64, local-use prefix
        f"2002:{high:x}:{low:x}::1",  # 6to4
        f"::{v4}",  # IPv4-compatible
    ]


@pytest.mark.parametrize(
    "address",
    [
        "fd00:ec2::254",
        "100.100.100.200",
        *(form for v4 in _REFUSED_V4 for form in _ipv6_forms(v4)),
    ],
)
def test_metadata_services_and_ipv6_forms_of_refused_addresses_are_refused(
    address: str,
) -> None:
    port = 6543 if "10.1.2.3" in address or "a01:203" in address else 80
    url = f"http://[{address}]:{port}/h" if ":" in address else f"http://{address}:{port}/h"
    with pytest.raises(DestinationRefused):
        Destinations.of((), DATABASE).check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8080/replies",  # private addresses are what internal handlers use
        "http://192.168.1.10/h",
        "http://127.0.0.1:9000/h",
        "https://replies.internal.example/h",
        "http://10.1.2.3:8080/",  # the database's host, another port
    ],
)
def test_internal_handlers_stay_allowed(url: str) -> None:
    Destinations.of((), DATABASE).check(url)


def test_the_database_on_loopback_is_refused_on_any_loopback_address() -> None:
    rules = Destinations.of((), "postgresql://postgres@127.0.0.1:5432/postgres")
    assert rules.refusal(ipaddress.ip_address("127.0.0.2"), 5432) is not None
    assert rules.refusal(ipaddress.ip_address("::1"), 5432) is not None
    assert rules.refusal(ipaddress.ip_address("127.0.0.1"), 5433) is None
    # A database on a Unix socket has no address to refuse.
    assert Destinations.of((), "postgresql://postgres@/db?host=/tmp").database == ()


def test_allowed_networks_narrow_further() -> None:
    rules = Destinations.of(("10.20.0.0/16",), None)
    rules.check("http://10.20.3.4/h")
    with pytest.raises(DestinationRefused, match="outside RECEIVER_HANDLER_ALLOWED_NETWORKS"):
        rules.check("http://10.30.3.4/h")


async def test_a_name_that_resolves_to_a_refused_address_is_refused_at_registration(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        new = NewHandler(user_data="shop", default=False, url="http://localhost:8080/h")
        narrow = Destinations.of(("10.0.0.0/8",), None)
        with pytest.raises(HandlerError, match="outside RECEIVER_HANDLER_ALLOWED_NETWORKS"):
            await add_handler(conn, new, narrow)
    finally:
        await conn.close()
    assert await fetch(database_url, "SELECT 1 FROM handlers") == []


@pytest.mark.parametrize(
    "host", ["a" * 64 + ".example", "é" * 70 + ".example", "replies..internal"]
)
async def test_a_host_name_dns_cannot_carry_is_a_400(
    make_settings: SettingsFactory, host: str
) -> None:
    async with running(create_app(make_settings(admin_tokens=ADMIN))) as client:
        answer = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"user_data": "shop", "url": f"http://{host}/h"}
        )
    assert answer.status_code == 400, answer.text
    assert "url's host" in answer.json()["error"]


async def test_the_api_refuses_a_url_with_credentials_naming_the_field(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings(admin_tokens=ADMIN))) as client:
        answer = await client.post(
            "/api/v1/handlers",
            headers=AUTH,
            json={"user_data": "shop", "url": "http://alice:s3cret@10.0.0.5/h"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("url must not carry credentials")
    assert "s3cret" not in answer.text


async def test_an_older_handler_with_credentials_never_shows_them(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # Registered before this release's rule, straight into the table.
    await fetch(
        database_url,
        "INSERT INTO handlers (match, prefix, is_default, url, timeout, replies, statuses,"
        " terminal_only) VALUES ('old', false, false, 'http://alice:s3cret@10.0.0.5/h', 5,"
        " true, false, false)",
    )
    async with running(create_app(make_settings(admin_tokens=ADMIN))) as client:
        listed = await client.get("/api/v1/handlers", headers=AUTH)
    (handler,) = listed.json()["items"]
    assert handler["url"] == "http://***@10.0.0.5/h"
    assert "s3cret" not in listed.text


async def test_a_forward_whose_address_is_refused_when_sent_says_why(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    # Registered under rules that allow loopback; sent by a process whose rules allow
    # only another network: the check before sending refuses it.
    conn = await asyncpg.connect(database_url)
    try:
        await add_handler(conn, NewHandler(user_data="shop", default=False, url=handler.url("/h")))
    finally:
        await conn.close()
    settings = make_settings(
        handler_allowed_networks="10.20.0.0/16", forward_max_attempts=1, **FAST
    )
    async with running(create_app(settings)) as client:
        mo = mo_event("mo-refused", "REFUSED1", sender="+33600000001", user_data="shop")
        await client.post(f"/webhooks/callr/{settings.callr_url_token}", content=mo)
        await until_projected(client)
        for _ in range(100):
            (forward,) = await fetch(database_url, "SELECT state, last_error FROM forwards")
            if forward["state"] == "dead":
                break
            await asyncio.sleep(0.1)
    assert forward["state"] == "dead"
    assert "127.0.0.1 is outside RECEIVER_HANDLER_ALLOWED_NETWORKS" in forward["last_error"]
    (attempt,) = await fetch(database_url, "SELECT status_code, error FROM forward_attempts")
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused: the handler's address 127.0.0.1")
    assert handler.received == []


def test_every_database_the_settings_name_is_refused(make_settings: SettingsFactory) -> None:
    """The pooler, the server behind it and the read replica: each is the receiver's own."""
    settings = make_settings(
        database_url="postgresql://receiver@10.1.2.3:6432/receiver",
        direct_database_url="postgresql://receiver@10.1.2.4:5432/receiver",
        read_database_url="postgresql://receiver@10.1.2.5:5432/receiver",
    )
    allowed = Destinations.of((), *settings.database_urls)
    for address in ("10.1.2.3:6432", "10.1.2.4:5432", "10.1.2.5:5432"):
        with pytest.raises(DestinationRefused) as refused:
            allowed.check(f"http://{address}/replies")
        assert f"{address} is the receiver's own database" in str(refused.value)
    allowed.check("http://10.1.2.4:8080/replies")
