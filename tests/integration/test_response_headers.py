"""What answers give away: no server banner, nothing personal cacheable, no PyJWT text, and the
client's address and scheme believed only from trusted proxies."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.api.proxies import ClientAccessLogger
from exporter.ops.app import create_app
from settings import Settings
from tests.conftest import SECRET
from tests.support import ApiUser, wait_until

ADMIN = {"username": "admin", "password": "admin-password"}
# Through two proxies: the client's own claim, then the address the outer proxy saw.
FORWARDED = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"}


async def test_no_answer_names_the_server_software(client: TestClient[Any, Any]) -> None:
    for path in ("/healthz", "/api/export-tasks", "/login", "/no-such-page", "/api/openapi.json"):
        response = await client.get(path, allow_redirects=False)

        assert "Server" not in response.headers, path


@pytest.mark.usefixtures("worker")
async def test_personal_answers_are_never_stored_by_a_cache(
    client: TestClient[Any, Any], admin: ApiUser
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    paths = [
        "/api/accounts",
        "/api/roles",
        "/api/export-tasks",
        f"/api/export-tasks/{task['id']}",
        f"/api/export-tasks/{task['id']}/download",
        "/api/export-tasks/stream",
        "/api/export-types",
    ]
    for path in paths:
        async with client.get(path, headers=admin.headers) as response:
            assert response.status == 200, path
            assert "no-store" in response.headers["Cache-Control"], path
    created = await client.post(
        "/api/export-tasks", json={"type": "account", "params": {}}, headers=admin.headers
    )
    signed_in = await client.post("/api/session", json=ADMIN)
    page = await client.get("/tasks")

    for response in (created, signed_in, page):
        assert response.status in (200, 202), response.url
        assert "no-store" in response.headers["Cache-Control"], response.url


async def test_static_files_stay_cacheable(client: TestClient[Any, Any]) -> None:
    response = await client.get("/static/app.js")

    assert response.status == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")


def _token(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, "HS256")


# Made when the tests are collected, which may be many minutes before this one runs.
A_DAY_FROM_NOW = int(time.time()) + 24 * 3600


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        _token({"sub": "1", "exp": A_DAY_FROM_NOW}, "x" * 40),
        _token({"sub": "1"}),
        _token({"sub": "admin", "exp": A_DAY_FROM_NOW}),
    ],
    ids=["garbage", "wrong-key", "no-exp", "bad-sub"],
)
async def test_a_bad_token_is_told_invalid_token_and_only_the_log_says_why(
    client: TestClient[Any, Any], token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.api")

    response = await client.get("/api/export-tasks", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 401
    assert (await response.json())["error"] == {
        "code": "unauthorized",
        "message": "invalid token",
        "params": {},
        "details": [],
    }
    assert any(
        record.levelno == logging.DEBUG and record.getMessage().startswith("invalid token: ")
        for record in caplog.records
    )


@asynccontextmanager
async def logging_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the app served with the access log of `exporter serve`."""
    server = TestServer(create_app(settings))
    await server.start_server(access_log_class=ClientAccessLogger)
    async with TestClient(server) as test_client:
        yield test_client


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The app with the loopback address trusted as its reverse proxy."""
    trusting = settings.model_copy(update={"trusted_proxies": (ip_network("127.0.0.1"),)})
    async with logging_client(trusting) as test_client:
        yield test_client


async def _access_line(caplog: pytest.LogCaptureFixture, path: str) -> str:
    async def logged() -> str | None:
        lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
        return next((line for line in lines if f'"POST {path} ' in line), None)

    return await wait_until(logged, what=f"the access log line of {path}")


async def test_behind_a_trusted_proxy_the_cookie_is_secure_and_the_client_is_the_forwarded_one(
    behind_proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")

    response = await behind_proxy.post("/api/session", json=ADMIN, headers=FORWARDED)

    assert response.status == 200
    assert "Secure" in response.headers["Set-Cookie"]
    assert (await _access_line(caplog, "/api/session")).startswith('203.0.113.7 "POST')


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with logging_client(settings) as direct:
        response = await direct.post("/api/session", json=ADMIN, headers=FORWARDED)

        assert response.status == 200
        assert "Secure" not in response.headers["Set-Cookie"]
        assert (await _access_line(caplog, "/api/session")).startswith('127.0.0.1 "POST')
