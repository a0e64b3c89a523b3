from __future__ import annotations

import stat
from pathlib import Path

import pytest

from receiver.ingest.auth import TOKEN_FILE, resolve_webhook_auth
from receiver.settings import SettingsError, load_settings


def test_defaults_are_usable() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.callr_hmac_algorithm == "sha256"
    assert not settings.webhook_auth_configured


def test_secrets_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_CALLR_HMAC_SECRETS", "old , new,")
    monkeypatch.setenv("RECEIVER_CALLR_HMAC_ALGORITHM", "SHA512")
    settings = load_settings()
    assert settings.callr_hmac_secrets == ("old", "new")
    assert settings.callr_hmac_algorithm == "sha512"


def test_every_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_CALLR_HMAC_ALGORITHM", "sha3")
    monkeypatch.setenv("RECEIVER_MAX_BODY_BYTES", "lots")
    monkeypatch.setenv("RECEIVER_CALLR_BASIC_AUTH", "nopassword")
    monkeypatch.setenv("RECEIVER_CALLR_URL_TOKEN", "short")
    monkeypatch.setenv("RECEIVER_DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("invalid configuration (5 problem(s)):")
    for name in (
        "RECEIVER_CALLR_HMAC_ALGORITHM",
        "RECEIVER_MAX_BODY_BYTES",
        "RECEIVER_CALLR_BASIC_AUTH: Value error, must be user:password",
        "RECEIVER_CALLR_URL_TOKEN: Value error, must be 16 to 256 characters",
        "RECEIVER_DATABASE_URL: Value error, must be a postgresql:// URL",
    ):
        assert name in message


def test_an_embedded_database_gets_a_private_url_token_once(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    first = resolve_webhook_auth(settings, embedded=True)
    second = resolve_webhook_auth(settings, embedded=True)
    assert first.callr_url_token is not None
    assert len(first.callr_url_token) >= 32
    assert second.callr_url_token == first.callr_url_token
    mode = (tmp_path / TOKEN_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_an_external_database_without_authentication_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url="postgresql://db/receiver")
    with pytest.raises(SettingsError) as raised:
        resolve_webhook_auth(settings, embedded=False)
    for name in (
        "RECEIVER_CALLR_HMAC_SECRETS",
        "RECEIVER_CALLR_URL_TOKEN",
        "RECEIVER_CALLR_BASIC_AUTH",
        "RECEIVER_ALLOW_UNAUTHENTICATED",
    ):
        assert name in str(raised.value)
    assert not (tmp_path / TOKEN_FILE).exists()


def test_unauthenticated_is_allowed_only_when_asked(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, database_url="postgresql://db/receiver", allow_unauthenticated=True
    )
    resolved = resolve_webhook_auth(settings, embedded=False)
    assert resolved.callr_url_token is None
    assert not resolved.webhook_auth_configured


def test_configured_authentication_is_kept_as_it_is(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, callr_hmac_secrets="s3cret")
    assert resolve_webhook_auth(settings, embedded=True) == settings
    assert not (tmp_path / TOKEN_FILE).exists()


@pytest.mark.parametrize("name", ["RECEIVER_API_TOKENS", "RECEIVER_ADMIN_TOKENS"])
def test_a_token_shorter_than_20_characters_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "a-long-enough-token-0123,short-token")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert f"{name}: Value error, 1 token(s) shorter than 20 characters" in str(refused.value)
    monkeypatch.setenv(name, "a-long-enough-token-0123,another-long-token-0123")
    assert load_settings()


def test_a_short_metrics_token_is_refused_and_an_empty_one_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECEIVER_METRICS_TOKEN", "scrape")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "RECEIVER_METRICS_TOKEN: Value error, shorter than 20 characters" in str(refused.value)
    monkeypatch.setenv("RECEIVER_METRICS_TOKEN", "")
    assert load_settings().metrics_token is None


def test_a_direct_url_needs_the_pooler_it_stands_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_DIRECT_DATABASE_URL", "postgresql://receiver@db:5432/receiver")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "RECEIVER_DIRECT_DATABASE_URL is the server behind the pooler" in str(raised.value)
    monkeypatch.setenv("RECEIVER_DATABASE_URL", "postgresql://receiver@pgbouncer:6432/receiver")
    settings = load_settings()
    assert settings.pooled
    assert settings.session_database_url == "postgresql://receiver@db:5432/receiver"
