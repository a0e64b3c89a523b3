"""deploy/'s Caddy and nginx configurations, run for real in front of `receiver serve`.

All on loopback: CALLR is played by a client bound to 127.0.0.2, the proxy listens
with TLS on 127.0.0.1 and forwards to uvicorn, which trusts forwarded headers from
127.0.0.1 only. CI installs both proxies (scripts/system-packages); elsewhere a
missing one skips its test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from receiver.status import Status
from testkit.callr_events import lifecycle, v2_event
from testkit.support import fetch, signed_headers
from tests.test_cli import free_port, wait_ready

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET = "tls-proxy-test-secret"
CALLR = "127.0.0.2"
STRANGER = "127.0.0.3"
# The network the console, the API and /metrics are opened to through the proxy.
OFFICE = "127.0.0.4"


def program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: CI runs scripts/system-packages first")
        pytest.skip(f"{name} is not installed (scripts/system-packages installs it)")
    return found


@dataclass
class Upstream:
    port: int
    log: Path


@pytest.fixture
def upstream(database_url: str, tmp_path: Path) -> Iterator[Upstream]:
    """`receiver serve` as the deploy files run it: trusting forwarded headers from 127.0.0.1."""
    port = free_port()
    log = tmp_path / "receiver.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "receiver",
                "serve",
                "--port",
                str(port),
                "--forwarded-allow-ips",
                "127.0.0.1",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                "RECEIVER_DATABASE_URL": database_url,
                "RECEIVER_CALLR_HMAC_SECRETS": SECRET,
                "RECEIVER_DISPATCHER": "false",
                "RECEIVER_LOG_FORMAT": "json",
            },
        )
        try:
            wait_ready(port, process)
            yield Upstream(port, log)
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def proxy(command: list[str], folder: Path, env: dict[str, str]) -> Iterator[None]:
    """Run a proxy until the block ends; its output goes to proxy.log."""
    with (folder / "proxy.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), (folder / "proxy.log").read_text()


def wait_for_port(port: int, what: str, folder: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port}: {(folder / 'proxy.log').read_text()}")


LOGGED_TOKEN = "url-token-that-must-never-be-logged-0123"


def raw_get(port: int, ca: Path, path: str, address: str = CALLR) -> tuple[int, str]:
    """GET `path` byte for byte from `address` (httpx would remove its dot segments)."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(
            ("127.0.0.1", port), timeout=15, source_address=(address, 0)
        ) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def as_callr(port: int, ca: Path, address: str = CALLR) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca))
    transport = httpx.HTTPTransport(local_address=address, verify=context)
    return httpx.Client(base_url=f"https://127.0.0.1:{port}", transport=transport, timeout=15)


def check_proxy(port: int, ca: Path, upstream: Upstream, database_url: str) -> None:
    """What the deployment promises, through the proxy and around it."""
    body = v2_event("tls-1", "tlsproxy01", lifecycle(Status.CREATED, Status.SENT))
    with as_callr(port, ca) as client:
        # A client's own X-Forwarded-For must not pass the proxy.
        spoofed = {**signed_headers(body, SECRET), "x-forwarded-for": "203.0.113.9"}
        stored = client.post("/webhooks/callr", content=body, headers=spoofed)
        unsigned = client.post("/webhooks/callr", content=body)
        too_large = client.post(
            "/webhooks/callr", content=b"x" * (2 << 20), headers=signed_headers(b"x", SECRET)
        )
        # Only the webhook path and health are open to the internet.
        closed = {
            path: client.get(path).status_code
            for path in ("/metrics", "/console", "/console/login", "/api/v1/status", "/")
        }
        health = client.get("/healthz")
        # Dot segments, plain or encoded, never pass the allow rule (nor reach an API
        # route to answer 401: a token oracle).
        dotted = {
            path: raw_get(port, ca, path)
            for path in (
                "/api/v1/messages/x/../../../../webhooks/callr",
                "/console/messages/x/../../../webhooks/callr",
                "/api/v1/messages/x/%2e%2e/%2e%2e/%2e%2e/%2e%2e/webhooks/callr",
                "/api/v1/messages/x/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fwebhooks/callr",
                "/webhooks/callr/../api/v1/status",
                "/webhooks/callr/./../metrics",
            )
        }
        # A URL token in the path: the access log hides it.
        client.post(f"/webhooks/callr/{LOGGED_TOKEN}", content=body)
    assert stored.status_code == 200, stored.text
    for path, (status, text) in dotted.items():
        assert status in (400, 404), (path, status, text)
        assert "token" not in text, path
    assert stored.json() == {"result": "stored", "event_id": "tls-1"}
    assert unsigned.status_code == 401
    assert too_large.status_code == 413
    assert closed == dict.fromkeys(closed, 404)
    assert health.status_code == 200
    # From the network the console was opened to, it answers.
    with as_callr(port, ca, OFFICE) as office:
        assert office.get("/console/login").status_code == 200
        assert office.get("/metrics").status_code == 200
        assert office.get("/api/v1/status").status_code == 401  # no API token here

    # Straight to uvicorn from another address: its forwarded headers are not trusted.
    other = v2_event("tls-2", "tlsproxy02", lifecycle(Status.CREATED, Status.SENT))
    transport = httpx.HTTPTransport(local_address=STRANGER)
    with httpx.Client(transport=transport, timeout=15) as direct:
        response = direct.post(
            f"http://127.0.0.1:{upstream.port}/webhooks/callr",
            content=other,
            headers={**signed_headers(other, SECRET), "x-forwarded-for": "198.51.100.7"},
        )
    assert response.status_code == 200, response.text

    rows = asyncio.run(
        fetch(database_url, "SELECT event_id, remote_addr FROM deliveries ORDER BY event_id")
    )
    assert [(r["event_id"], r["remote_addr"]) for r in rows] == [
        ("tls-1", CALLR),
        ("tls-2", STRANGER),
    ]
    log = upstream.log.read_text()
    assert LOGGED_TOKEN not in log
    proxy_log = (upstream.log.parent / "proxy.log").read_text()
    assert "/webhooks/callr/***" in proxy_log, proxy_log[-2000:]
    assert LOGGED_TOKEN not in proxy_log
    assert f'"client":"{CALLR}"' in log
    assert "203.0.113.9" not in log
    assert "198.51.100.7" not in log


def test_caddy_terminates_tls_in_front_of_uvicorn(
    upstream: Upstream, database_url: str, tmp_path: Path
) -> None:
    caddy = program("caddy")
    port, http_port = free_port(), free_port()
    config = tmp_path / "Caddyfile"
    # deploy/caddy/receiver.caddy as it is; the site around it uses Caddy's own CA
    # instead of a public one.
    config.write_text(
        f"""{{
	admin off
	skip_install_trust
	storage file_system {tmp_path / "caddy"}
	http_port {http_port}
	https_port {port}
}}

https://127.0.0.1:{port} {{
	tls internal
	import {DEPLOY / "caddy" / "receiver.caddy"}
}}
"""
    )
    env = {
        **os.environ,
        "RECEIVER_UPSTREAM": f"127.0.0.1:{upstream.port}",
        "RECEIVER_CONSOLE_NETWORKS": f"{OFFICE}/32",
        "HOME": str(tmp_path),
    }
    with proxy([caddy, "run", "--config", str(config), "--adapter", "caddyfile"], tmp_path, env):
        wait_for_port(port, "caddy", tmp_path)
        ca = tmp_path / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        # Caddy listens before its certificate is issued: wait for a handshake.
        deadline = time.monotonic() + 30
        while True:
            try:
                with as_callr(port, ca) as client:
                    client.get("/healthz").raise_for_status()
                break
            except (OSError, httpx.HTTPError):
                assert time.monotonic() < deadline, (tmp_path / "proxy.log").read_text()
                time.sleep(0.2)
        check_proxy(port, ca, upstream, database_url)


def test_nginx_terminates_tls_in_front_of_uvicorn(
    upstream: Upstream, database_url: str, tmp_path: Path
) -> None:
    nginx = program("nginx")
    openssl = program("openssl")
    port = free_port()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    template = string.Template((DEPLOY / "nginx" / "receiver.conf.template").read_text())
    # Only the template's own variables: nginx's ($host, $remote_addr) stay as they are.
    site = template.safe_substitute(
        RECEIVER_DOMAIN="127.0.0.1",
        RECEIVER_UPSTREAM=f"127.0.0.1:{upstream.port}",
        TLS_CERTIFICATE=str(cert),
        TLS_CERTIFICATE_KEY=str(key),
        LISTEN=f"127.0.0.1:{port}",
        CONSOLE_NETWORK=f"{OFFICE}/32",
    )
    (tmp_path / "receiver.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"""
daemon off;
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "nginx-error.log"} warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path / "receiver.conf"};
}}
"""
    )
    with proxy([nginx, "-c", str(config), "-p", str(tmp_path)], tmp_path, dict(os.environ)):
        wait_for_port(port, "nginx", tmp_path)
        check_proxy(port, cert, upstream, database_url)
