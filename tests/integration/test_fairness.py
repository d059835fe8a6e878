"""One client must not slow the others: aborted bodies, sign-in floods, slow clients, kept files."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.integration.test_sessions import ADMIN
from tests.support import ApiUser, trickle, wait_until
from tests.workers import running_worker

# The application's connections to the test's database, as PostgreSQL sees them.
POOL_BACKENDS = """
SELECT array_agg(pid ORDER BY pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


@dataclass(frozen=True)
class Served:
    """The API on a port of its own, and the aiohttp server behind it."""

    host: str
    port: int
    server: web.Server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    """The API served the way `exporter serve` serves it.

    aiohttp's TestServer cancels a handler whose client has gone; run_app, which serves
    production, lets the handler run on and its reads of the body fail instead.
    """
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    assert runner.server is not None
    try:
        yield Served(host, port, runner.server)
    finally:
        await runner.cleanup()


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    async with serving(settings) as api:
        yield api


@pytest.fixture
async def admin_headers(db: asyncpg.Connection[Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, await account_id(db, 'admin'))}"}


async def _abort_body(served: Served, head: bytes, body: bytes) -> None:
    """Send a request head and part of its body; close once the server is handling it."""
    handled = served.server.requests_count
    _, writer = await asyncio.open_connection(served.host, served.port)
    writer.write(head + body)
    await writer.drain()

    async def handling() -> bool:
        return served.server.requests_count > handled

    await wait_until(handling, what="the server to take the request")
    writer.close()
    await writer.wait_closed()


async def test_a_client_that_aborts_its_body_does_not_look_like_a_database_outage(
    served: Served,
    admin_headers: dict[str, str],
    db: asyncpg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with aiohttp.ClientSession(served.url, headers=admin_headers) as session:
        async with session.get("/api/export-tasks") as response:
            assert response.status == 200
        backends = await db.fetchval(POOL_BACKENDS)
        caplog.set_level(logging.INFO)
        head = (
            b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )

        for _ in range(5):
            await _abort_body(served, head, b'{"username":')
        async with session.get("/api/export-tasks") as response:
            assert response.status == 200

    # The pool kept its connections (it may have opened one more: an audit row is written by a
    # task of its own beside the next request).
    assert set(backends) <= set(await db.fetchval(POOL_BACKENDS))
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


async def test_a_create_is_refused_once_the_accounts_kept_files_reach_their_cap(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    capped = settings.model_copy(update={"max_kept_bytes_per_user": 1})
    async with (
        TestClient(TestServer(create_app(capped))) as client,
        running_worker(capped),
    ):
        admin = ApiUser(client, issue_token(SECRET, await account_id(db, "admin")))
        kept = await admin.finished((await admin.create("role", "csv"))["id"])
        assert kept["status"] == "completed"

        refused_status, refused = await admin.post_task(
            {"type": "account", "format": "csv", "params": {}}
        )
        await admin.client.delete(f"/api/export-tasks/{kept['id']}", headers=admin.headers)
        accepted_status, _ = await admin.post_task(
            {"type": "account", "format": "csv", "params": {}}
        )

    assert refused_status == 409
    assert refused["error"]["code"] == "kept_bytes_exceeded"
    assert refused["error"]["message"] == (
        f"your finished exports keep {kept['file_size']} bytes of files; "
        "the limit is 1 bytes: delete some to export again"
    )
    assert accepted_status == 202


async def test_a_request_head_that_trickles_in_is_cut_off_after_the_header_timeout(
    settings: Settings,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    async with serving(settings.model_copy(update={"header_timeout_s": 1.0})) as api:
        reader, writer = await asyncio.open_connection(api.host, api.port)
        started = time.monotonic()
        trickling = asyncio.create_task(trickle(writer, head, 0.05))
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed without an answer
        finally:
            trickling.cancel()
            writer.close()
        elapsed_s = time.monotonic() - started

    assert 1.0 <= elapsed_s < 4.0  # the machine may be busy; without the timeouts, never


async def test_a_body_that_trickles_in_gets_408_after_the_body_timeout(
    settings: Settings,
) -> None:
    head = (
        b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n"
    )
    async with serving(settings.model_copy(update={"body_timeout_s": 1.0})) as api:
        reader, writer = await asyncio.open_connection(api.host, api.port)
        writer.write(head)
        started = time.monotonic()
        trickling = asyncio.create_task(trickle(writer, b"{" + b" " * 198 + b"}", 0.05))
        try:
            async with asyncio.timeout(5):
                answer_head = await reader.readuntil(b"\r\n\r\n")
                elapsed_s = time.monotonic() - started
                length = re.search(rb"Content-Length: (\d+)", answer_head)
                assert length is not None
                body = json.loads(await reader.readexactly(int(length[1])))
        finally:
            trickling.cancel()
            writer.close()

    assert answer_head.startswith(b"HTTP/1.1 408 ")
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["message"] == "the request body did not arrive within 1 s"
    assert 1.0 <= elapsed_s < 4.0  # the machine may be busy; without the timeouts, never


def _wrong(username: str) -> dict[str, str]:
    return {"username": username, "password": "not-the-password"}


async def test_sign_in_pauses_in_every_api_process_and_says_when_it_ends(
    settings: Settings, client: TestClient[Any, Any]
) -> None:
    for _ in range(10):
        response = await client.post("/api/session", json=_wrong("admin"))
        assert response.status == 401

    async with TestClient(TestServer(create_app(settings))) as another_process:
        paused = await another_process.post("/api/session", json=ADMIN)
        error = (await paused.json())["error"]

    assert paused.status == 429
    assert error["message"] == "too many wrong passwords; try again within 15 minutes"
    assert 15 * 60 - 30 <= int(paused.headers["Retry-After"]) <= 15 * 60


async def test_sign_in_attempts_from_one_address_are_limited_across_usernames(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"sign_ins_per_address": 3})
    async with TestClient(TestServer(create_app(limited))) as client:
        refused = [
            (await client.post("/api/session", json=_wrong(f"made-up-{n}"))).status
            for n in range(3)
        ]
        paused = await client.post("/api/session", json=_wrong("made-up-3"))
        error = (await paused.json())["error"]
        also_paused = await client.post("/api/session", json=ADMIN)

    assert refused == [401, 401, 401]
    assert paused.status == 429
    assert error["message"] == (
        "too many failed sign-ins from this address; try again within 15 minutes"
    )
    assert also_paused.status == 429


async def test_refused_attempts_count_nowhere_so_a_paused_address_cannot_pause_a_username(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"sign_ins_per_address": 3, "sign_ins_per_username": 3})
    async with TestClient(TestServer(create_app(limited))) as client:
        for n in range(3):
            await client.post("/api/session", json=_wrong(f"made-up-{n}"))
        refused = [(await client.post("/api/session", json=ADMIN)).status for _ in range(5)]
        # Another client address: Linux answers on all of 127.0.0.0/8.
        elsewhere = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=elsewhere) as session:
            async with session.post(client.make_url("/api/session"), json=ADMIN) as response:
                signed_in = response.status

    assert refused == [429] * 5
    assert signed_in == 200


async def test_a_flood_of_failed_sign_ins_does_not_stall_downloads(
    client: TestClient[Any, Any], admin: ApiUser, worker: Any
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    server = client.server.handler
    taken = server.requests_count

    flood = [
        asyncio.create_task(client.post("/api/session", json=_wrong(f"made-up-{n}")))
        for n in range(60)
    ]

    async def all_taken() -> bool:
        return server.requests_count >= taken + 60

    await wait_until(all_taken, what="the server to take every sign-in")
    started = time.monotonic()
    status, content, _ = await admin.download(task["id"])
    download_s = time.monotonic() - started
    statuses = {response.status for response in await asyncio.gather(*flood)}

    assert status == 200
    assert len(content) == task["file_size"]
    assert download_s < 2.0, f"the download took {download_s:.1f} s"
    assert statuses == {401, 429}


async def test_an_unknown_username_takes_as_long_to_refuse_as_a_wrong_password(
    client: TestClient[Any, Any],
) -> None:
    async def refusal_s(credentials: dict[str, str]) -> float:
        started = time.monotonic()
        response = await client.post("/api/session", json=credentials)
        assert response.status == 401
        return time.monotonic() - started

    known = [await refusal_s(_wrong("admin")) for _ in range(5)]
    unknown = [await refusal_s(_wrong(f"nobody-{n}")) for n in range(5)]

    # Without the stand-in hash an unknown username is refused a hundred times faster.
    assert statistics.median(unknown) > statistics.median(known) / 2


async def test_without_redis_sign_in_is_503_and_the_pool_keeps_its_connections(
    settings: Settings, db: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    redis_down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with TestClient(TestServer(create_app(redis_down))) as client:
        await client.get("/readyz")  # the pool connects
        backends = await db.fetchval(POOL_BACKENDS)
        response = await client.post("/api/session", json=ADMIN)
        error = (await response.json())["error"]
        await client.get("/readyz")  # an expired pool would connect again here
        after = await db.fetchval(POOL_BACKENDS)

    assert backends
    # Counting attempts is what keeps guessing slow: without the counts, no guesses at all.
    assert response.status == 503
    assert error["code"] == "service_unavailable"
    assert error["message"].startswith("sign-in is unavailable: ")
    assert after == backends
    assert "database unavailable" not in caplog.text
