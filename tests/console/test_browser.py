"""The console in a real Chromium (the distribution's chromium and chromium-driver).

The receiver runs behind a real uvicorn on loopback, a real handler server takes the
forwards, and Selenium drives the browser in a thread so the servers keep answering.
Screenshots of the main pages go to the test's folder, and to
`CONSOLE_SCREENSHOTS` when it is set (docs/console/ holds the current ones).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, mt_event, v1_event
from testkit.fake_callr import fake_callr
from testkit.handler_server import HandlerServer, handler_server, wait_for
from testkit.support import fetch, serving, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

READ = "browser-read-token-0123"
ADMIN = "browser-admin-token-0123"
MT_ID = "4a4f3b0a5d2e4f60718293a4b5c6d7e8"
MO_ID = "5b5f3b0a5d2e4f60718293a4b5c6d7e9"
OTHER_ID = "6c6f3b0a5d2e4f60718293a4b5c6d7e0"
CUSTOMER = "+33687654321"

T = TypeVar("T")
# What Chromium says of a node of a page that a navigation replaced.
_REPLACED = ("does not belong to the document", "stale element")


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: CI runs scripts/system-packages first")
        pytest.skip(f"{name} is not installed (scripts/system-packages installs it)")
    return found


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, chromedriver = _program("chromium"), _program("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    # Selenium looks for nothing on the network: the driver and the browser are given.
    os.environ["SE_OFFLINE"] = "true"
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


class Browser:
    """The driver, used from a thread so that the servers of the test loop keep answering."""

    def __init__(self, driver: WebDriver, base: str, shots: list[Path]) -> None:
        self.driver, self.base, self.shots = driver, base, shots

    async def run(self, action: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(action, *args)

    async def steady(self, action: Callable[[], T]) -> T:
        """`action` on the page as it shows now: tried again while a navigation replaces it.

        On a loaded machine Chromium may still be settling the page it just loaded: an
        element is found in a document it then replaces ("does not belong to the
        document", "stale element"). Reading or clicking it never reached the page, so
        it is safe to look again in the document that replaced it.
        """

        def act() -> T:
            for attempt in range(20):
                try:
                    WebDriverWait(self.driver, 10).until(
                        lambda d: d.execute_script("return document.readyState") == "complete"
                    )
                    return action()
                except WebDriverException as error:
                    if attempt == 19 or not any(text in str(error) for text in _REPLACED):
                        raise
                    time.sleep(0.1)
            raise AssertionError("unreachable")

        return await self.run(act)

    async def go(self, path: str) -> None:
        await self.run(self.driver.get, self.base + path)
        await self.steady(lambda: None)

    async def fill(self, css: str, text: str) -> None:
        def fill() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)

        await self.steady(fill)

    async def click(self, css: str) -> None:
        await self.steady(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def submit(self, css: str) -> None:
        """Click `css` and wait until the page it leads to has replaced this one."""

        def click() -> Any:
            page = self.driver.find_element(By.TAG_NAME, "html")
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            return page

        page = await self.steady(click)

        def replaced(driver: WebDriver) -> bool:
            # Chromium says a replaced page's node is stale, or that it "does not belong
            # to the document" (selenium's staleness_of knows only the first).
            try:
                page.is_enabled()
            except WebDriverException as error:
                if any(text in str(error) for text in _REPLACED):
                    return True
                raise
            return False

        await self.run(lambda: WebDriverWait(self.driver, 10).until(replaced))
        await self.steady(lambda: None)

    async def text(self, css: str = "body") -> str:
        return await self.steady(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text)

    async def count(self, css: str) -> int:
        return await self.steady(lambda: len(self.driver.find_elements(By.CSS_SELECTOR, css)))

    async def path(self) -> str:
        url = await self.steady(lambda: self.driver.current_url)
        return str(url).removeprefix(self.base)

    async def sign_in(self, token: str) -> None:
        await self.go("/console/login")
        await self.fill("#token", token)
        await self.submit("form[action='/console/login'] button")

    async def screenshot(self, name: str, width: int = 1280) -> None:
        """The whole page (up to 3000 px high) at `width` CSS pixels, as a PNG."""

        def take() -> None:
            cdp = self.driver.execute_cdp_cmd
            cdp(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
            )
            try:
                size = cdp("Page.getLayoutMetrics", {})["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], 3000)}
                shot = cdp(
                    "Page.captureScreenshot",
                    {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
                )
            finally:
                cdp("Emulation.clearDeviceMetricsOverride", {})
            for folder in self.shots:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

        await self.run(take)


@pytest.fixture
async def handler() -> AsyncIterator[HandlerServer]:
    async with handler_server() as server:
        yield server


@pytest.fixture
async def site(
    make_settings: SettingsFactory, driver: WebDriver, tmp_path: Path, database_url: str
) -> AsyncIterator[Browser]:
    settings = make_settings(
        api_tokens=READ,
        admin_tokens=ADMIN,
        default_region="FR",
        forward_max_attempts=1,
        forward_backoff_base=0.05,
        dispatch_poll_interval=0.2,
    )
    shots = [tmp_path / "screenshots"]
    if os.environ.get("CONSOLE_SCREENSHOTS"):
        shots.append(Path(os.environ["CONSOLE_SCREENSHOTS"]))
    async with serving(create_app(settings)) as base:
        await asyncio.to_thread(driver.delete_all_cookies)
        yield Browser(driver, base, shots)


async def post(base: str, path: str, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(path, content=body)
    assert response.status_code == 200, response.text


async def traffic(browser: Browser, database_url: str, handler: HandlerServer) -> None:
    """An MT with its user_data, a handler for it that fails once, and a reply to the MT."""
    async with httpx.AsyncClient(base_url=browser.base) as client:
        created = await client.post(
            "/api/v1/handlers",
            headers={"authorization": f"Bearer {ADMIN}"},
            json={"user_data": "booking-*", "url": handler.url("/replies")},
        )
    assert created.status_code == 201, created.text
    handler.scripts["/replies"] = lambda n: (500 if n == 0 else 200, 0.0)
    webhook = f"/webhooks/callr/{TEST_URL_TOKEN}"
    await post(
        browser.base,
        webhook,
        mt_event("mt-b1", MT_ID, to=CUSTOMER, sender="+33644630010", user_data="booking-9"),
    )
    await until_projected(database_url)
    await post(browser.base, webhook, mo_event("mo-b1", MO_ID, sender=CUSTOMER, text="Yes, 9am"))
    # Someone else's SMS, which a search by the customer's number must leave out.
    await post(browser.base, webhook, mt_event("mt-b2", OTHER_ID, to="+447700900123"))
    await until_projected(database_url)
    async with httpx.AsyncClient(base_url=browser.base) as client:
        invalid = await client.post(webhook, content=b'{"truncated": ')
    assert invalid.status_code == 400  # refused, and kept as an invalid event


async def test_support_finds_an_sms_and_reads_its_timeline(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    await traffic(site, database_url, handler)
    await site.sign_in(ADMIN)
    assert (await site.path()) == "/console"
    assert "Webhooks a minute, by result" in await site.text()
    await site.screenshot("overview")

    await site.go("/console/messages")
    assert await site.count("table.messages tbody tr") == 3
    for typed in (CUSTOMER, CUSTOMER[:7]):
        await site.go("/console/messages")
        await site.fill("#q", typed)
        await site.submit("form[role='search'] button")
        assert await site.count("table.messages tbody tr") == 2, typed
    await site.screenshot("messages")
    await site.screenshot("messages-phone", width=390)

    await site.submit(f"a[href='/console/messages/{MT_ID}']")
    timeline = await site.text("ol.timeline")
    assert "created → sent" in timeline
    assert "reported by mt-b1" in timeline
    assert "booking-9" in await site.text("dl.facts")
    replies = await site.text("section[aria-labelledby='replies']")
    assert "routed by recent_mt" in replies
    await site.screenshot("message")


async def test_a_dead_forward_is_sent_again_and_delivered(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    await traffic(site, database_url, handler)
    await wait_for(lambda: len(handler.on("/replies")) == 1)
    await site.sign_in(ADMIN)
    await site.go("/console/forwards?state=dead")
    await wait_for_text(site, "dead", css="table", reload=True)
    await site.screenshot("forwards")
    await site.click("input[name='forward']")
    await site.submit("form[action='/console/forwards/retry'] button[type='submit']")
    assert "1 forward(s) queued to be sent again." in await site.text(".notice")
    await wait_for(lambda: len(handler.on("/replies")) == 2)
    assert handler.on("/replies")[1].json["mo"]["id"] == MO_ID.lower()
    await site.go(f"/console/messages/{MO_ID}")
    await wait_for_text(site, "done", css="#forwards ~ article .state", reload=True)
    attempts = await site.text("article.forward table")
    assert "500" in attempts
    assert "200" in attempts

    await site.go("/console/handlers")
    assert "1 done" in await site.text("table")
    await site.screenshot("handlers")
    await site.go("/console/events?kind=invalid")
    assert "body is not valid JSON" in await site.text("table")
    await site.screenshot("events")


async def test_a_read_token_sees_no_admin_controls_and_is_refused(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    await traffic(site, database_url, handler)
    await site.sign_in(READ)
    assert "read only" in await site.text("header")
    await site.go("/console/handlers")
    assert await site.count("form[action='/console/handlers']") == 0
    assert await site.count("form[action$='/disable']") == 0
    await site.go("/console/forwards")
    assert await site.count("input[name='forward']") == 0
    # The form posted anyway, with this session's own CSRF token.
    await site.run(
        site.driver.execute_script,
        """
        const form = document.createElement("form");
        form.method = "post"; form.action = "/console/handlers";
        for (const [name, value] of [["csrf", document.querySelector("input[name=csrf]").value],
                                     ["default", "1"], ["url", "http://127.0.0.1:9/"]]) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value; form.append(input);
        }
        document.body.append(form); form.submit();
        """,
    )
    await wait_for_text(site, "changes need an admin token")
    async with httpx.AsyncClient(base_url=site.base) as client:
        listed = await client.get("/api/v1/handlers", headers={"authorization": f"Bearer {READ}"})
    assert [h["user_data"] for h in listed.json()["items"]] == ["booking-*"]


async def test_a_form_without_its_csrf_token_is_refused(site: Browser) -> None:
    await site.sign_in(ADMIN)
    await site.go("/console/handlers")
    await site.fill("#user_data", "team-a")
    await site.fill("#url", "http://127.0.0.1:9/team-a")
    await site.run(
        site.driver.execute_script,
        "document.querySelector(\"form[action='/console/handlers'] input[name=csrf]\").remove()",
    )
    await site.submit("form[action='/console/handlers'] button[type='submit']")
    assert "CSRF token is missing or old" in await site.text()
    await site.go("/console/handlers")
    assert "team-a" not in await site.text()


async def test_signing_out_sends_every_page_to_the_sign_in(site: Browser) -> None:
    await site.sign_in(READ)
    await site.submit("form[action='/console/logout'] button")
    assert (await site.path()).startswith("/console/login")
    assert "Signed out." in await site.text()
    for path in ("/console", "/console/messages", "/console/handlers"):
        await site.go(path)
        assert (await site.path()).startswith("/console/login?next="), path
    await site.screenshot("login")


async def wait_for_text(
    site: Browser, expected: str, *, css: str = "body", reload: bool = False, seconds: float = 10
) -> None:
    """Wait until the page (reloaded each time when `reload`) shows `expected`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            if expected in await site.text(css):
                return
        except Exception:  # noqa: S110 (the element may not be there yet)
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{expected!r} not shown within {seconds} s: {await site.text()}")
        await asyncio.sleep(0.2)
        if reload:
            await site.run(site.driver.refresh)


async def test_a_token_made_by_the_command_reads_and_revoked_opens_nothing(
    site: Browser, database_url: str
) -> None:
    env = {**os.environ, "RECEIVER_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "receiver", "tokens"]
    made = await asyncio.to_thread(
        subprocess.run,
        [*command, "add", "--scope", "read", "--name", "support-desk"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    await site.sign_in(made.stdout.strip())
    assert (await site.path()) == "/console"
    assert "read only" in await site.text("header")
    assert await site.count("a[href='/console/tokens']") == 0
    await site.go("/console/handlers")
    assert await site.count("form[action='/console/handlers']") == 0

    await asyncio.to_thread(
        subprocess.run, [*command, "revoke", "support-desk"], env=env, check=True, timeout=60
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not (await site.path()).startswith("/console/login"):
        assert loop.time() < deadline, "the revoked token's session still opened pages"
        await asyncio.sleep(0.5)
        await site.go("/console/messages")


async def test_replies_waiting_are_delivered_once_a_handler_is_added_from_the_overview(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    webhook = f"/webhooks/callr/{TEST_URL_TOKEN}"
    await post(site.base, webhook, mt_event("mt-w", MT_ID, to=CUSTOMER, user_data="shop-7"))
    await until_projected(database_url)
    await post(site.base, webhook, mo_event("mo-w", MO_ID, sender=CUSTOMER, text="Still open?"))
    await until_projected(database_url)
    await site.sign_in(ADMIN)
    waiting = await site.text("section[aria-labelledby='waiting']")
    assert "shop-7" in waiting
    await site.screenshot("overview-waiting")
    await site.submit("a[href='/console/handlers?user_data=shop-7#add']")
    assert (
        await site.run(
            lambda: site.driver.find_element(By.CSS_SELECTOR, "#user_data").get_attribute("value")
        )
        == "shop-7"
    )
    await site.fill("#url", handler.url("/shop"))
    await site.submit("form[action='/console/handlers'] button[type='submit']")
    await wait_for(lambda: len(handler.on("/shop")) == 1, seconds=15)
    assert handler.on("/shop")[0].json["mo"]["id"] == MO_ID.lower()
    await site.go("/console")
    assert await site.count("section[aria-labelledby='waiting']") == 0


async def test_a_timeline_tells_apart_events_that_share_16_characters(
    site: Browser, database_url: str
) -> None:
    shared = "942214623649723405HGNS"
    steps = lifecycle(Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED)
    webhook = f"/webhooks/callr/{TEST_URL_TOKEN}"
    for n in range(3):
        await post(site.base, webhook, v1_event(f"{shared}-{n}", OTHER_ID, steps[: n + 2]))
    await until_projected(database_url)
    await site.sign_in(READ)
    await site.go(f"/console/messages/{OTHER_ID}")
    await wait_for_text(site, f"{shared}-2", css="ol.timeline", reload=True)
    timeline = await site.text("ol.timeline")
    for n in range(3):
        assert f"reported by {shared}-{n}, which arrived" in timeline


async def test_a_national_number_finds_the_sms_and_says_how_it_was_read(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    await traffic(site, database_url, handler)
    await site.sign_in(READ)
    await site.go("/console/messages")
    await site.fill("#q", "06 87 65 43 21")  # CUSTOMER, as it is written in France
    await site.submit("form[role='search'] button")
    assert await site.count("table.messages tbody tr") == 2
    assert "Read as a number of FR: +33687654321." in await site.text()


async def test_on_call_finds_an_unknown_send_and_an_admin_settles_it(
    make_settings: SettingsFactory, driver: WebDriver, tmp_path: Path
) -> None:
    async with fake_callr() as callr:
        # The answer cut and CALLR's list out of reach: nothing can tell whether CALLR
        # made the SMS.
        callr.faults = ["drop"]
        callr.searches_fail = True
        settings = make_settings(
            api_tokens=READ,
            admin_tokens=ADMIN,
            send_lookup_after=timedelta(seconds=0.5),
            send_unknown_after=timedelta(seconds=1.5),
            **callr.v2_settings(),
        )
        shots = [tmp_path / "screenshots"]
        if os.environ.get("CONSOLE_SCREENSHOTS"):
            shots.append(Path(os.environ["CONSOLE_SCREENSHOTS"]))
        async with serving(create_app(settings)) as base:
            await asyncio.to_thread(driver.delete_all_cookies)
            site = Browser(driver, base, shots)
            auth = {"authorization": f"Bearer {ADMIN}"}
            async with httpx.AsyncClient(base_url=base, headers=auth) as client:
                sent = await client.post(
                    "/api/v1/sms", json={"to": CUSTOMER, "text": "Rappel RDV", "user_data": "rdv"}
                )
                assert sent.status_code == 202, sent.text
                send_id = sent.json()["id"]
            await site.sign_in(ADMIN)
            await site.go("/console")
            unknown = "a[href='/console/sends?state=unknown']"
            await wait_for_text(site, "1", css=unknown, reload=True, seconds=20)
            await site.submit(unknown)
            await site.submit(f"a[href='/console/sends/{send_id}']")
            assert "never sent again by itself" in await site.text("main")
            await site.screenshot("send")
            await site.click("input[name='state'][value='queued']")
            await site.submit("form[action$='/settle'] button[type='submit']")
            assert "Send settled." in await site.text(".notice")
            await wait_for_text(site, "accepted", css="#send-state", reload=True, seconds=20)
    # Sent again on the admin's word: the SMS of the cut answer and this one.
    assert len(callr.created) == 2


async def test_on_call_sees_a_failing_handler_and_fixes_its_url_from_the_console(
    site: Browser, database_url: str, handler: HandlerServer
) -> None:
    # A handler moved to a new path answers 404 at the old one: the reply waits,
    # retried, the overview says the handler is failing; an admin edits its URL in
    # place and the reply arrives, once.
    handler.scripts["/old"] = lambda n: (404, 0.0)
    async with httpx.AsyncClient(base_url=site.base) as client:
        created = await client.post(
            "/api/v1/handlers",
            headers={"authorization": f"Bearer {ADMIN}"},
            json={"user_data": "shop-*", "url": handler.url("/old"), "attempts": 50},
        )
    assert created.status_code == 201, created.text
    handler_id = created.json()["id"]
    webhook = f"/webhooks/callr/{TEST_URL_TOKEN}"
    await post(site.base, webhook, mo_event("mo-fix", MO_ID, sender=CUSTOMER, user_data="shop-7"))
    await until_projected(database_url)
    await wait_for(lambda: len(handler.on("/old")) >= 1, seconds=15)
    await site.sign_in(ADMIN)
    troubled = await site.text("section[aria-labelledby='troubled']")
    assert "failing" in troubled
    assert "shop-*" in troubled
    await site.screenshot("overview-troubled")
    await site.go("/console/handlers")
    await site.click(f"#handler-{handler_id} details summary")
    await site.fill(f"#url-{handler_id}", handler.url("/new"))
    await site.screenshot("handler-edit")
    await site.submit(f"form[action='/console/handlers/{handler_id}/update'] button")
    assert "Handler updated" in await site.text("p.notice")
    await wait_for(lambda: len(handler.on("/new")) == 1, seconds=30)
    assert handler.on("/new")[0].json["mo"]["id"] == MO_ID.lower()
    (forward,) = await fetch(database_url, "SELECT state, handler_id FROM forwards")
    assert (forward["state"], forward["handler_id"]) == ("done", handler_id)
