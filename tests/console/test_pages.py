"""The console over real HTTP requests through the app: sign-in, scopes, CSRF, every page."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from receiver.app import create_app
from receiver.console.mask import Mask
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, mt_event, v1_event
from testkit.support import console_sign_in, fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

READ = "console-read-token-0123"
ADMIN = "console-admin-token-0123"
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
MT_ID = "1c1f3b0a5d2e4f60718293a4b5c6d7e8"


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await console_sign_in(client, token)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(api_tokens=READ, admin_tokens=ADMIN, dispatcher=False)
    async with running(create_app(settings)) as client:
        mt = mt_event("mt-1", MT_ID, to="+33612345678", user_data="booking-7")
        mo = mo_event("mo-1", "2d2f3b0a5d2e4f60718293a4b5c6d7e9", sender="+33612345678")
        for body in (mt, mo, b"{not json"):
            await client.post(WEBHOOK, content=body)
        await until_projected(client)
        yield client


async def test_pages_need_a_session_and_send_no_store(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/messages", "/console/handlers", "/console/forwards"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
    login = await client.get("/console/login")
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]


async def test_a_wrong_token_opens_nothing(client: httpx.AsyncClient) -> None:
    for token in ("wrong", TEST_URL_TOKEN, ""):
        response = await sign_in(client, token)
        assert response.status_code == 401
        assert "opens nothing" in response.text
        assert "receiver_console=" not in response.headers.get("set-cookie", "")


async def test_the_session_cookie_is_strict_httponly_and_expiring(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, READ)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age=43200" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie  # plain http here; see the next test for https
    assert READ not in response.headers["set-cookie"]


async def test_the_cookie_is_secure_over_https(make_settings: SettingsFactory) -> None:
    settings = make_settings(api_tokens=READ, dispatcher=False)
    async with running(create_app(settings)) as client:
        client.base_url = httpx.URL("https://receiver.test")
        response = await sign_in(client, READ)
    assert "secure" in response.headers["set-cookie"].lower()


async def test_every_page_answers_after_sign_in(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ)
    for path in (
        "/console",
        "/console?window=day",
        "/console/messages",
        f"/console/messages/{MT_ID}",
        "/console/events",
        "/console/events?kind=unhandled",
        "/console/events?kind=conflict",
        "/console/events/mt-1",
        "/console/forwards",
        "/console/forwards?state=dead",
        "/console/handlers",
    ):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["cache-control"] == "no-store"
        assert "Sign out" in response.text


async def test_search_by_number_its_start_id_and_user_data(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ)
    whole = await client.get("/console/messages", params={"q": "+33612345678"})
    start = await client.get("/console/messages", params={"q": "+33 6123"})
    other = await client.get("/console/messages", params={"q": "+4477"})
    links = re.compile(r'href="/console/messages/(?!export)')
    assert len(links.findall(whole.text)) == len(links.findall(start.text)) == 2
    assert "No message matches" in other.text
    by_id = await client.get("/console/messages", params={"q": MT_ID.upper()})
    assert by_id.status_code == 303
    assert by_id.headers["location"] == f"/console/messages/{MT_ID}"
    by_user_data = await client.get("/console/messages", params={"q": "booking-7"})
    assert MT_ID[:12] in by_user_data.text
    assert "showing the messages whose user_data" in by_user_data.text


async def test_a_message_page_shows_its_timeline_and_raw_events(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, READ)
    page = await client.get(f"/console/messages/{MT_ID}")
    assert "created → <strong>sent</strong>" in page.text
    assert 'reported by <a href="#event-mt-1"' in page.text
    assert "booking-7" in page.text
    assert "sms.mt.status_update" in page.text
    assert "+33612345678" in page.text


async def test_a_read_session_sees_no_admin_controls_and_gets_403(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await sign_in(client, READ)
    page = await client.get("/console/handlers")
    assert "Add a handler" not in page.text
    refused = await client.post(
        "/console/handlers",
        data={"csrf": csrf_of(page), "user_data": "x", "url": "http://127.0.0.1:9/"},
    )
    assert refused.status_code == 403
    assert "admin token" in refused.text
    listed = await client.get("/api/v1/handlers", headers={"authorization": f"Bearer {READ}"})
    assert listed.json()["items"] == []


async def test_a_form_without_its_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN)
    page = await client.get("/console/handlers")
    for form in (
        {"user_data": "x", "url": "http://127.0.0.1:9/"},
        {"csrf": "not-the-token", "user_data": "x", "url": "http://127.0.0.1:9/"},
    ):
        refused = await client.post("/console/handlers", data=form)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    added = await client.post(
        "/console/handlers",
        data={"csrf": csrf_of(page), "user_data": "x", "url": "http://127.0.0.1:9/"},
    )
    assert added.status_code == 303
    listed = await client.get("/api/v1/handlers", headers={"authorization": f"Bearer {READ}"})
    assert [h["user_data"] for h in listed.json()["items"]] == ["x"]


async def test_adding_a_handler_validates_as_the_api_does(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN)
    csrf = csrf_of(await client.get("/console/handlers"))
    bad = await client.post(
        "/console/handlers", data={"csrf": csrf, "user_data": "x", "url": "ftp://nowhere"}
    )
    assert bad.status_code == 400
    assert "url must be an http:// or https:// URL" in bad.text
    # What was typed is kept in the form.
    assert 'value="ftp://nowhere"' in bad.text


async def test_handlers_are_disabled_enabled_and_removed(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN)
    csrf = csrf_of(await client.get("/console/handlers"))
    await client.post(
        "/console/handlers", data={"csrf": csrf, "default": "1", "url": "http://127.0.0.1:9/"}
    )
    api = {"authorization": f"Bearer {ADMIN}"}
    (handler,) = (await client.get("/api/v1/handlers", headers=api)).json()["items"]
    base = f"/console/handlers/{handler['id']}"
    await client.post(f"{base}/disable", data={"csrf": csrf})
    assert not (await client.get("/api/v1/handlers", headers=api)).json()["items"][0]["enabled"]
    await client.post(f"{base}/enable", data={"csrf": csrf})
    assert (await client.get("/api/v1/handlers", headers=api)).json()["items"][0]["enabled"]
    removed = await client.post(f"{base}/remove", data={"csrf": csrf})
    assert removed.headers["location"] == "/console/handlers?notice=removed"
    assert (await client.get("/api/v1/handlers", headers=api)).json()["items"] == []
    missing = await client.post(f"{base}/remove", data={"csrf": csrf})
    assert missing.status_code == 404


async def test_a_handler_is_edited_in_place_and_a_masked_url_is_kept(
    client: httpx.AsyncClient, database_url: str
) -> None:
    # Registered with credentials in its URL before they were refused: the form shows
    # them masked, and saving the form as shown keeps the real URL.
    await fetch(
        database_url,
        "INSERT INTO handlers (match, prefix, is_default, url, timeout, replies, statuses,"
        " terminal_only) VALUES ('shop', false, false, 'http://al:s3cret@127.0.0.1:9/h', 5,"
        " true, false, false)",
    )
    await sign_in(client, ADMIN)
    page = await client.get("/console/handlers")
    (handler_id,) = [
        r["id"] for r in await fetch(database_url, "SELECT id FROM handlers WHERE match = 'shop'")
    ]
    assert "s3cret" not in page.text
    saved = await client.post(
        f"/console/handlers/{handler_id}/update",
        data={
            "csrf": csrf_of(page),
            "url": "http://***@127.0.0.1:9/h",
            "timeout": "5",
            "final_statuses": "400, 422",
            "max_in_flight": "2",
            "rate": "",
            "attempts": "6",
            "first_retry": "15",
            "notify_url": "http://127.0.0.1:9/team",
        },
    )
    bad = await client.post(
        f"/console/handlers/{handler_id}/update",
        data={"csrf": csrf_of(page), "max_in_flight": "many"},
    )
    refused = await client.post(
        f"/console/handlers/{handler_id}/update",
        data={"csrf": csrf_of(page), "attempts": "0"},
    )
    (row,) = await fetch(
        database_url,
        "SELECT url, final_statuses, max_in_flight, rate, attempts, first_retry, notify_url"
        " FROM handlers WHERE id = $1",
        handler_id,
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/console/handlers?notice=updated#handler-{handler_id}"
    assert dict(row) == {
        "url": "http://al:s3cret@127.0.0.1:9/h",
        "final_statuses": [400, 422],
        "max_in_flight": 2,
        "rate": None,
        "attempts": 6,
        "first_retry": 15.0,
        "notify_url": "http://127.0.0.1:9/team",
    }
    assert bad.status_code == 400
    assert "max_in_flight" in bad.text
    assert refused.status_code == 400
    assert "attempts must be 1 to 100" in refused.text


async def test_signing_out_ends_the_session(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ)
    page = await client.get("/console")
    out = await client.post("/console/logout", data={"csrf": csrf_of(page)})
    assert out.status_code == 303
    assert (await client.get("/console")).status_code == 303


async def test_a_removed_token_ends_its_sessions(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings(api_tokens=READ))) as client:
        await sign_in(client, READ)
        cookies = client.cookies
    async with running(create_app(make_settings(api_tokens="another-read-token-0123"))) as client:
        client.cookies = cookies
        assert (await client.get("/console")).status_code == 303


async def test_without_tokens_the_console_is_closed(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        page = await client.get("/console/login")
        attempt = await sign_in(client, "")
    assert "The console is closed" in page.text
    assert attempt.status_code == 401


async def test_sign_in_goes_only_to_console_pages(client: httpx.AsyncClient) -> None:
    for target, expected in (
        ("/console/handlers", "/console/handlers"),
        ("https://elsewhere.example/", "/console"),
        ("//elsewhere.example/console", "/console"),
        ("/console//elsewhere.example", "/console"),
    ):
        response = await console_sign_in(client, READ, target)
        assert response.headers["location"] == expected


async def test_masking_keeps_numbers_and_text_off_the_page(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(api_tokens=READ, console_mask="numbers,text", dispatcher=False)
    async with running(create_app(settings)) as client:
        body = mo_event("mo-9", "3d2f3b0a5d2e4f60718293a4b5c6d7e0", sender="+33699887766")
        await client.post(WEBHOOK, content=body)
        await until_projected(client)
        await sign_in(client, READ)
        page = await client.get("/console/messages/3d2f3b0a5d2e4f60718293a4b5c6d7e0")
        listing = await client.get("/console/messages", params={"q": "+3369988"})
    for html in (page.text, listing.text):
        assert "+33699887766" not in html
        assert "+336" + "•" * 6 + "66" in html
    assert '"YES"' not in page.text
    assert "[hidden: 3 characters]" in page.text


async def test_export_csv_is_the_search_shown_every_page_of_it(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ)
    for q in ("+33 6123", "booking-7", ""):
        listing = await client.get("/console/messages", params={"q": q, "direction": "outbound"})
        link = re.search(r'href="(/console/messages/export\?[^"]*)"', listing.text)
        assert link is not None, listing.text
        exported = await client.get(link.group(1).replace("&amp;", "&"))
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        listed = re.findall(r'href="/console/messages/([0-9a-z]{8,})"', listing.text)
        rows = list(csv.DictReader(io.StringIO(exported.text, newline="")))
        assert [row["id"] for row in rows] == listed == [MT_ID], q
    # No session, no file.
    client.cookies.clear()
    assert (await client.get("/console/messages/export")).status_code in (302, 303)


async def test_export_csv_masks_as_the_page_does(make_settings: SettingsFactory) -> None:
    settings = make_settings(api_tokens=READ, console_mask="numbers,text", dispatcher=False)
    async with running(create_app(settings)) as client:
        body = mo_event("mo-9", "3d2f3b0a5d2e4f60718293a4b5c6d7e0", sender="+33699887766")
        await client.post(WEBHOOK, content=body)
        await until_projected(client)
        await sign_in(client, READ)
        exported = await client.get("/console/messages/export", params={"q": "+3369988"})
    (row,) = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    assert row["from"] == "+336" + "•" * 6 + "66"
    assert row["text"] == "[hidden: 3 characters]"
    assert "+33699887766" not in exported.text


async def test_a_bad_filter_is_a_clear_400(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ)
    response = await client.get("/console/messages", params={"status": "nonsense"})
    assert response.status_code == 400
    assert "status must be one of" in response.text


async def test_the_overview_counts_webhooks_by_result(client: httpx.AsyncClient) -> None:
    # The fixture stored an MT and an MO and kept one invalid body; now a second try of
    # the MT (a duplicate) and a request with the wrong URL token (refused).
    again = mt_event("mt-1", MT_ID, to="+33612345678", user_data="booking-7")
    retried = again.replace(b'"try": 0', b'"try": 1')
    assert retried != again
    assert (await client.post(WEBHOOK, content=retried)).json()["result"] == "duplicate"
    refused = await client.post("/webhooks/callr/not-the-token-at-all", content=again)
    assert refused.status_code == 404
    await sign_in(client, READ)
    for window in ("hour", "day"):
        page = await client.get("/console", params={"window": window})
        html = page.text[page.text.index('<ul class="legend">') :]
        legend = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html[: html.index("</ul>")]))
        assert "stored: 2" in legend
        assert "duplicate: 1" in legend
        assert "invalid: 1" in legend
        assert "unhandled: 0" in legend
        assert int(re.search(r"refused: (\d+)", legend).group(1)) >= 1  # type: ignore[union-attr]


# Numbers as people write them, and what of each may stay visible.
NUMBERS = [
    "+33612345678",
    "+33 6 12 34 56 78",
    "+33-6-12-34-56-78",
    "+33.6.12.34.56.78",
    "(+33) 6 12 34 56 78",
    "06 12 34 56 78",
    "0612345678",
    "0033612345678",
    "Tel33612345678",
    "tel:+33612345678",
    "+1 (646) 982-0800",
    "+44 7890 123456",
    "06/12/34/56/78",
    "call me at 0612345678 or 0698765432 please",
    "123456",
    # Anything but a letter between the digits: every dash and minus sign, underscore,
    # comma, middle dot, invisible characters, runs of spaces, star, colon...
    *(f"06{sep}12{sep}34{sep}56{sep}78" for sep in "\u2010\u2011\u2012\u2013\u2212"),
    "06_12_34_56_78",
    "06,12,34,56,78",
    "06\u00b712\u00b734\u00b756\u00b778",
    "0\u200b6\u200b1\u200b2\u200b3\u200b4\u200b5\u200b6\u200b7\u200b8",
    "06\u00ad12\u00ad34\u00ad56\u00ad78",
    "06\u206012\u206034\u206056\u206078",
    "06    12    34    56    78",
    "06*12*34*56*78",
    "06:12:34:56:78",
    "0612-34-56-78",
    "33612345678.0",
    "+33\u00a06\u00a012\u00a034\u00a056\u00a078",
]


@pytest.mark.parametrize("written", NUMBERS)
def test_numbers_are_masked_however_they_are_written(written: str) -> None:
    masked = Mask(["numbers"]).number(written)
    assert masked is not None
    for run in re.findall(r"\d[\W_\d]*\d", written):
        digits = [c for c in run if c.isdigit()]
        if len(digits) < 6:
            continue
        assert run not in masked, masked
    # Never more digits shown than hidden.
    assert sum(c.isdigit() for c in masked) <= masked.count("•"), masked


def test_dates_and_short_numbers_are_left_alone() -> None:
    mask = Mask(["numbers"])
    for value in (
        "2026-03-02T16:56:04Z",
        "2026-03-02 16:56:04",
        "2026-03-02T16:56:04+01:00",
        "16:56:04",
        "4.50",
        "try 3",
        "12345",
        "teamA-123 and 456",
    ):
        assert mask.number(value) == value


def test_a_raw_body_is_masked_under_any_key_json_or_not() -> None:
    mask = Mask(["numbers", "text"])
    body = orjson.dumps(
        {
            "payload": {
                "contact": {"mobile": "+33 6 12 34 56 78", "note": "rappeler le 0612345678"},
                "extra": [{"callback": 33612345678}, {"float": 33698765432.0}],
                "body": {"text": "hello from 0612345678"},
                "created": "2026-03-02T16:56:04Z",
            }
        }
    ).decode()
    shown = mask.body(body)
    assert shown is not None
    for secret in ("12 34 56", "12345678", "hello", "33612345678", "98765432"):
        assert secret not in shown
    assert "2026-03-02T16:56:04Z" in shown
    assert "[hidden: 21 characters]" in shown
    not_json = "from=+33612345678&text=hello"
    assert "hello" not in (mask.body(not_json) or "")
    assert Mask(["numbers"]).body(not_json) == "from=+336••••••78&text=hello"
    assert Mask(["numbers"]).number("+33 6 12 34 56 78") == "+33 6 •• •• •• 78"


async def test_replies_waiting_for_a_handler_say_for_which_user_data_and_get_one(
    client: httpx.AsyncClient, database_url: str
) -> None:
    # The fixture's MO answers an MT sent with user_data booking-7; no handler yet.
    await sign_in(client, ADMIN)
    overview = await client.get("/console")
    waiting = overview.text[overview.text.index('id="waiting"') :]
    assert "<code>booking-7</code>" in waiting
    assert 'href="/console/handlers?user_data=booking-7#add"' in waiting
    forwards = await client.get("/console/forwards", params={"state": "unrouted"})
    assert "waiting for a handler for <code>booking-7</code>" in forwards.text
    # An admin, but nothing on the page can be sent again: no box, no button.
    assert "Send the selected again" not in forwards.text
    assert 'type="checkbox" name="forward"' not in forwards.text
    reply = await client.get("/console/messages/2d2f3b0a5d2e4f60718293a4b5c6d7e9")
    assert "Waiting for a handler for <code>booking-7</code>" in reply.text
    assert "routed by <strong>unrouted" not in reply.text.lower()

    form = await client.get("/console/handlers", params={"user_data": "booking-7"})
    assert 'value="booking-7"' in form.text
    added = await client.post(
        "/console/handlers",
        data={"csrf": csrf_of(form), "user_data": "booking-7", "url": "http://127.0.0.1:9/h"},
    )
    assert added.status_code == 303
    (forward,) = await fetch(database_url, "SELECT state, handler_id FROM forwards")
    assert forward["state"] == "pending"
    assert forward["handler_id"] is not None
    after = await client.get("/console")
    assert 'id="waiting"' not in after.text


async def test_a_timeline_shows_each_steps_event_whole_when_it_arrived_and_the_gaps(
    make_settings: SettingsFactory,
) -> None:
    # Event ids that share their first 16 characters, as CALLR's own do.
    shared = "942214623649723405HGNS"
    steps = lifecycle(Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED)
    bodies = [
        v1_event(f"{shared}-{n}", "TIMELINE1", steps[: n + 2], with_history=True) for n in range(3)
    ]
    settings = make_settings(api_tokens=READ, dispatcher=False)
    async with running(create_app(settings)) as client:
        for body in bodies:
            assert (await client.post(WEBHOOK, content=body)).status_code == 200
        mo = mo_event("mo-timeline", "TIMELINE2", sender="+33611112222")
        assert (await client.post(WEBHOOK, content=mo)).status_code == 200
        await until_projected(client)
        await sign_in(client, READ)
        page = (await client.get("/console/messages/timeline1")).text
        inbound = (await client.get("/console/messages/timeline2")).text
    timeline = page[page.index('id="timeline"') : page.index('id="forwards"')]
    for n in range(3):
        assert f">{shared}-{n}</a>, which arrived " in timeline
    assert timeline.count("after the step before") == 2
    assert "2.0 s after the step before" in timeline
    inbound_timeline = inbound[inbound.index('id="timeline"') :]
    assert "<strong>received</strong>" in inbound_timeline


async def test_the_overview_links_its_counts_and_dates_its_chart_and_lists_show_texts(
    client: httpx.AsyncClient,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await client.post(WEBHOOK, content=mt_event("mt-now", "NOW1", to="+33600000005", at=now))
    await client.post(
        WEBHOOK, content=mo_event("mo-now", "NOW2", sender="+33600000005", at=now, text="OK")
    )
    await until_projected(client)
    await sign_in(client, READ)
    overview = (await client.get("/console", params={"window": "day"})).text
    assert re.search(
        r'href="/console/messages\?direction=outbound&amp;status=sent&amp;since=[0-9T:-]+"',
        overview,
    )
    assert re.search(
        r'href="/console/messages\?direction=inbound&amp;since=[0-9T:-]+">1<', overview
    )
    # The axis of the last day says the date where it starts.
    assert re.search(r">\d\d [A-Z][a-z]{2} \d\d:\d\d</text>", overview)
    listing = (await client.get("/console/messages")).text
    assert '<th scope="col">created (UTC)</th>' in listing
    assert '<td class="excerpt">OK</td>' in listing  # the MO's text


async def test_the_sends_pages_mask_as_the_others_do(make_settings: SettingsFactory) -> None:
    from testkit.fake_callr import fake_callr

    async with fake_callr() as callr:
        settings = make_settings(
            api_tokens=READ,
            admin_tokens=ADMIN,
            console_mask="numbers,text",
            dispatcher=False,
            # v2: a number as the sender (v1 takes a short code or a name).
            **callr.v2_settings(),
        )
        async with running(create_app(settings)) as client:
            sent = await client.post(
                "/api/v1/sms",
                json={
                    "to": "+33699887766",
                    "from": "+3370011223",
                    "text": "code 482913",
                    "user_data": "client-0612345678",
                },
                headers={
                    "authorization": f"Bearer {ADMIN}",
                    "idempotency-key": "otp-+33699887766-482913",
                },
            )
            assert sent.status_code == 202, sent.text
            await sign_in(client, READ)
            pages = [
                await client.get("/console/sends"),
                await client.get(f"/console/sends/{sent.json()['id']}"),
            ]
    for page in pages:
        assert page.status_code == 200
        for secret in ("99887766", "0612345678", "482913", "70011223"):
            assert secret not in page.text, secret
    assert "[hidden: 11 characters]" in pages[1].text


async def test_an_mo_is_received_and_the_sends_page_says_sending_is_off(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, READ)
    mo = await client.get("/console/messages/2d2f3b0a5d2e4f60718293a4b5c6d7e9")
    mt = await client.get(f"/console/messages/{MT_ID}")
    sends = await client.get("/console/sends")
    header = re.search(r"<h1>.*?</h1>", mo.text, re.DOTALL)
    assert header is not None
    assert ">received</span>" in header.group(0)
    mt_header = re.search(r"<h1>.*?</h1>", mt.text, re.DOTALL)
    assert mt_header is not None
    assert "received" not in mt_header.group(0)
    assert "Sending is not configured" in sends.text
    assert "RECEIVER_CALLR_API_KEY" in sends.text


async def test_the_sends_page_says_nothing_of_sending_when_it_is_on(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        api_tokens=READ, callr_api_login="login", callr_api_password="password", sender=False
    )
    async with running(create_app(settings)) as client:
        await sign_in(client, READ)
        sends = await client.get("/console/sends")
    assert sends.status_code == 200
    assert "Sending is not configured" not in sends.text


async def test_a_message_says_why_no_callback_went_and_which_reports_changed_nothing(
    client: httpx.AsyncClient,
) -> None:
    # A late report of a step the SMS is past: stored, applied, and it changes nothing.
    late = v1_event("mt-late", MT_ID.upper(), lifecycle(Status.CREATED), user_data="booking-7")
    assert (await client.post(WEBHOOK, content=late)).status_code == 200
    await until_projected(client)
    # A handler for its status news, added after its last change.
    added = await client.post(
        "/api/v1/handlers",
        headers={"authorization": f"Bearer {ADMIN}"},
        json={"user_data": "booking-*", "url": "http://127.0.0.1:9/s", "events": ["status"]},
    )
    assert added.status_code == 201, added.text
    await sign_in(client, READ)
    page = await client.get(f"/console/messages/{MT_ID}")
    assert f"handler #{added.json()['id']} takes the status news of" in page.text
    assert "after this SMS's last change" in page.text
    late_event = page.text.split('id="event-mt-late"', 1)[1].split("</article>", 1)[0]
    assert "It changed nothing" in late_event
    first_event = page.text.split('id="event-mt-1"', 1)[1].split("</article>", 1)[0]
    assert "It changed nothing" not in first_event
