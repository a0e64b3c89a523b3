"""One team's send token and another's: keys, reads and senders never cross.

An idempotency key belongs to the token that used it; a send is read by read and
admin tokens and by the send token that made it or whose prefix covers it (404 to
any other); a token held to senders sends from no other (403 naming `from`). Both
kinds of token: the environment's and the database's (`receiver tokens add`).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from receiver.api.tokens import TokenError, add_token, list_tokens
from receiver.app import create_app
from receiver.db.engine import create_pool
from testkit.fake_callr import FakeCallr
from testkit.support import running
from tests.conftest import SettingsFactory
from tests.test_cli import receiver_command

ENV_A = "send-token-teamA-0123456789"
ENV_B = "send-token-teamB-0123456789"
READ = "read-token-teams-0123456789"
ADMIN = "admin-token-teams-0123456789"
TO = "+33612345678"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def post(
    client: httpx.AsyncClient, token: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = bearer(token) | ({"idempotency-key": key} if key else {})
    return await client.post("/api/v1/sms", json=body, headers=headers)


async def _kept_tokens(url: str) -> tuple[str, str]:
    """Two database tokens: team A's, held to a prefix and a sender; team B's, to a prefix."""
    pool = await create_pool(url, size=1, command_timeout=10)
    try:
        async with pool.acquire() as conn:
            a = await add_token(
                conn, "team-a", "send", user_data_prefix="teamA-", senders=["TeamA", "36100"]
            )
            b = await add_token(conn, "team-b", "send", user_data_prefix="teamB-")
            listed = {token.name: token for token in await list_tokens(conn)}
    finally:
        await pool.close()
    assert listed["team-a"].user_data_prefix == "teamA-"
    assert listed["team-a"].senders == ["TeamA", "36100"]
    return a, b


@pytest.mark.parametrize("kind", ["environment", "database"])
async def test_keys_and_sends_are_each_teams_own(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, kind: str
) -> None:
    settings = make_settings(
        api_tokens=READ,
        admin_tokens=ADMIN,
        send_tokens=f"{ENV_A}=teamA-,{ENV_B}=teamB-",
        dispatcher=False,
        **callr.settings(),
    )
    if kind == "database":
        team_a, team_b = await _kept_tokens(database_url)
        sender_a = {"from": "TeamA"}
    else:
        team_a, team_b = ENV_A, ENV_B
        sender_a = {}
    otp = {"to": TO, "text": "Your code is 482913", "user_data": "teamB-otp"}
    async with running(create_app(settings)) as client:
        b_send = await post(client, team_b, otp, key="otp-alice-login-1")
        assert b_send.status_code == 202, b_send.text
        b_id = b_send.json()["id"]
        # Team A uses the same key with another body: its own send, not a 409 with B's id.
        a_body = {"to": TO, "text": "hello", "user_data": "teamA-1", **sender_a}
        a_send = await post(client, team_a, a_body, key="otp-alice-login-1")
        assert a_send.status_code == 202, a_send.text
        assert a_send.json()["id"] != b_id
        # ...and again: the same send (its key is its own).
        again = await post(client, team_a, a_body, key="otp-alice-login-1")
        assert (again.status_code, again.json()["id"]) == (200, a_send.json()["id"])
        # B's key is B's: its retry finds its send, a new body under it is a 409 with B's id.
        b_again = await post(client, team_b, otp, key="otp-alice-login-1")
        assert (b_again.status_code, b_again.json()["id"]) == (200, b_id)
        b_other = await post(client, team_b, {**otp, "text": "other"}, key="otp-alice-login-1")
        assert (b_other.status_code, b_other.json()["id"]) == (409, b_id)
        # Reads: A's token does not see B's send (nor its OTP); B's, admin and read do.
        hidden = await client.get(f"/api/v1/sms/{b_id}", headers=bearer(team_a))
        assert hidden.status_code == 404
        assert "482913" not in hidden.text
        assert TO not in hidden.text
        for token in (team_b, READ, ADMIN):
            seen = await client.get(f"/api/v1/sms/{b_id}", headers=bearer(token))
            assert seen.status_code == 200, (token, seen.text)
            assert seen.json()["text"] == otp["text"]


async def test_a_token_held_to_senders_sends_from_no_other(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr
) -> None:
    team_a, _ = await _kept_tokens(database_url)
    settings = make_settings(dispatcher=False, **callr.settings())
    body = {"to": TO, "text": "hello", "user_data": "teamA-1"}
    async with running(create_app(settings)) as client:
        for sender in ("TeamB", "36111", None):
            asked = body | ({"from": sender} if sender else {})
            refused = await post(client, team_a, asked)
            assert refused.status_code == 403, refused.text
            assert refused.json()["parameter"] == "from"
        for sender in ("TeamA", "36100"):
            assert (await post(client, team_a, body | {"from": sender})).status_code == 202
        wrong_prefix = await post(client, team_a, body | {"from": "TeamA", "user_data": "teamB"})
        assert wrong_prefix.status_code == 400
        assert wrong_prefix.json()["parameter"] == "user_data"


@pytest.mark.parametrize(
    ("scope", "prefix", "senders", "said"),
    [
        ("send", "teamA", (), "delimiter"),
        ("read", "teamA-", (), "send tokens only"),
        ("admin", None, ("TeamA",), "send tokens only"),
        ("send", "teamA-", ("not a sender!",), "sender"),
        ("send", "", (), "1 to"),
    ],
)
async def test_limits_that_could_not_hold_are_refused(
    database_url: str, scope: str, prefix: str | None, senders: tuple[str, ...], said: str
) -> None:
    pool = await create_pool(database_url, size=1, command_timeout=10)
    try:
        async with pool.acquire() as conn:
            with pytest.raises(TokenError, match=said):
                await add_token(conn, "n", scope, user_data_prefix=prefix, senders=senders)
    finally:
        await pool.close()


def test_tokens_add_takes_a_prefix_and_senders(database_url: str) -> None:
    env = {"RECEIVER_DATABASE_URL": database_url}
    made = receiver_command(
        "tokens",
        "add",
        "--scope",
        "send",
        "--name",
        "billing",
        "--user-data-prefix",
        "billing-",
        "--sender",
        "Billing",
        "--sender",
        "36100",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    listed = receiver_command("tokens", "list", env=env)
    assert "user_data 'billing-'..." in listed.stdout
    assert "from 'Billing', '36100'" in listed.stdout
    refused = receiver_command(
        "tokens", "add", "--scope", "send", "--name", "x", "--user-data-prefix", "x", env=env
    )
    assert refused.returncode == 2
    assert "delimiter" in refused.stderr
