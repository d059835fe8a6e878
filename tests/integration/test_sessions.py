"""Signing in to the pages: the session cookie, what it allows, and CSRF on what it changes."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from yarl import URL

from exporter.auth.account_repository import AccountRepository
from exporter.auth.passwords import hash_password
from exporter.auth.tokens import issue_token
from exporter.db import create_pool
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.integration.test_faults import free_port
from tests.processes import settings_env, start_exporter, wait_for_api

ADMIN = {"username": "admin", "password": "admin-password"}
NEW_TASK = {"type": "role", "format": "csv", "params": {}}


async def sign_in(client: TestClient[Any, Any], credentials: dict[str, str]) -> str:
    """Sign in; the client's cookie jar keeps the cookie. Returns the CSRF value."""
    response = await client.post("/api/session", json=credentials)
    assert response.status == 200, await response.text()
    csrf_token: str = (await response.json())["csrf_token"]
    return csrf_token


def set_cookie(response_headers: Any) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response_headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


async def test_signing_in_sets_an_httponly_samesite_cookie_naming_the_account(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    response = await client.post("/api/session", json=ADMIN)

    assert response.status == 200
    body = await response.json()
    admin_id = await account_id(db, "admin")
    assert body["account"] == {"id": admin_id, "username": "admin"}
    session = set_cookie(response.headers)["exporter_session"]
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert session["path"] == "/"
    assert not session["secure"]  # plain http here; https requests get Secure
    claims = jwt.decode(session.value, SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(admin_id)
    assert claims["csrf"] == body["csrf_token"]
    session_row = await db.fetchrow("SELECT id, account_id FROM sessions")
    assert session_row is not None
    assert (str(session_row["id"]), session_row["account_id"]) == (claims["sid"], admin_id)
    assert claims["exp"] > time.time()
    assert await db.fetchval("SELECT last_login_at FROM accounts WHERE id = $1", admin_id)


async def test_the_cookie_alone_reads_the_api(client: TestClient[Any, Any]) -> None:
    await sign_in(client, ADMIN)

    response = await client.get("/api/export-tasks")

    assert response.status == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "nobody", "password": "admin-password"},
        {"username": "user0000001", "password": "anything"},  # seeded without a password
    ],
    ids=["wrong-password", "unknown-user", "no-password-set"],
)
async def test_bad_credentials_are_401_naming_the_password_and_set_no_cookie(
    client: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    response = await client.post("/api/session", json=credentials)

    assert response.status == 401
    error = (await response.json())["error"]
    assert error["code"] == "unauthorized"
    assert error["message"] == "wrong username or password"
    assert [d["field"] for d in error["details"]] == ["password"]
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("state", ["disabled", "locked"])
async def test_a_disabled_or_locked_account_cannot_sign_in(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], state: str
) -> None:
    await db.execute(
        "INSERT INTO accounts (username, status, password_hash) VALUES ($1, $2, $3)",
        state,
        state,
        hash_password("secret-password"),
    )

    response = await client.post(
        "/api/session", json={"username": state, "password": "secret-password"}
    )

    assert response.status == 403
    assert (await response.json())["error"]["code"] == "account_inactive"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"username": "admin"}, "password"), ({**ADMIN, "remember": True}, "remember")],
)
async def test_a_malformed_sign_in_is_422_naming_the_field(
    client: TestClient[Any, Any], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/session", json=body)

    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == [field]


async def test_sign_in_takes_only_json_so_a_cross_site_form_cannot_post_it(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post(
        "/api/session",
        data='{"username": "admin", "password": "admin-password"}',
        headers={"Content-Type": "text/plain"},
    )

    assert response.status == 415
    assert (await response.json())["error"]["message"] == "Content-Type must be application/json"
    assert "Set-Cookie" not in response.headers


async def test_a_cookie_request_that_changes_something_needs_the_csrf_header(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    csrf_token = await sign_in(client, ADMIN)
    body = {"type": "role", "format": "csv", "params": {}}

    missing = await client.post("/api/export-tasks", json=body)
    wrong = await client.post("/api/export-tasks", json=body, headers={"X-CSRF-Token": "guess"})
    right = await client.post("/api/export-tasks", json=body, headers={"X-CSRF-Token": csrf_token})

    for refused in (missing, wrong):
        assert refused.status == 403
        error = (await refused.json())["error"]
        assert error["code"] == "forbidden"
        assert [d["field"] for d in error["details"]] == ["X-CSRF-Token"]
    assert right.status == 202
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1
    task_id = (await right.json())["id"]
    no_header_delete = await client.delete(f"/api/export-tasks/{task_id}")
    assert no_header_delete.status == 403
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_a_bearer_token_in_the_cookie_is_no_session(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    # It names no session row, so signing out could not end it (nor one from before sessions).
    token = issue_token(SECRET, await account_id(db, "admin"))
    cookies = {"exporter_session": token}
    body = {"type": "role", "format": "csv", "params": {}}

    read = await client.get("/api/export-tasks", cookies=cookies)
    write = await client.post(
        "/api/export-tasks", json=body, cookies=cookies, headers={"X-CSRF-Token": ""}
    )
    page = await client.get("/tasks", cookies=cookies, allow_redirects=False)

    assert (read.status, write.status, page.status) == (401, 401, 302)


async def test_bearer_requests_need_no_csrf_header_even_with_a_cookie_present(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    await sign_in(client, ADMIN)
    token = issue_token(SECRET, await account_id(db, "admin"))

    response = await client.post(
        "/api/export-tasks",
        json={"type": "role", "format": "csv", "params": {}},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status == 202


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        jwt.encode({"sub": "1", "exp": int(time.time()) - 60, "csrf": "x"}, SECRET, "HS256"),
        jwt.encode({"sub": "1", "exp": int(time.time()) + 60, "csrf": "x"}, "k" * 40, "HS256"),
    ],
    ids=["garbage", "expired", "wrong-key"],
)
async def test_an_invalid_session_cookie_is_401(client: TestClient[Any, Any], cookie: str) -> None:
    response = await client.get("/api/export-tasks", cookies={"exporter_session": cookie})

    assert response.status == 401


async def test_signing_out_clears_the_cookie(client: TestClient[Any, Any]) -> None:
    csrf_token = await sign_in(client, ADMIN)

    refused = await client.delete("/api/session")
    response = await client.delete("/api/session", headers={"X-CSRF-Token": csrf_token})
    after = await client.get("/api/export-tasks")

    assert refused.status == 403
    assert response.status == 204
    assert set_cookie(response.headers)["exporter_session"].value == ""
    assert after.status == 401


async def signed_in_cookie(client: TestClient[Any, Any], credentials: dict[str, str]) -> Cookies:
    """Sign in; the session cookie's value and the CSRF value, sent by hand, not by the jar."""
    response = await client.post("/api/session", json=credentials)
    assert response.status == 200, await response.text()
    client.session.cookie_jar.clear()
    csrf_token: str = (await response.json())["csrf_token"]
    return Cookies(set_cookie(response.headers)["exporter_session"].value, csrf_token)


@dataclass(frozen=True)
class Cookies:
    session: str
    csrf_token: str

    async def request(
        self,
        client: TestClient[Any, Any] | aiohttp.ClientSession,
        method: str,
        path: str,
        **kwargs: Any,
    ) -> ClientResponse:
        """The request a browser holding this cookie makes (CSRF header and all)."""
        headers = {"Cookie": f"exporter_session={self.session}", "X-CSRF-Token": self.csrf_token}
        return await client.request(method, path, headers=headers, allow_redirects=False, **kwargs)


async def test_signing_out_ends_the_session_so_its_old_cookie_is_refused(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    old = await signed_in_cookie(client, ADMIN)
    assert (await old.request(client, "GET", "/api/export-tasks")).status == 200

    signed_out = await old.request(client, "DELETE", "/api/session")

    listed = await old.request(client, "GET", "/api/export-tasks")
    created = await old.request(client, "POST", "/api/export-tasks", json=NEW_TASK)
    page = await old.request(client, "GET", "/tasks")
    assert signed_out.status == 204
    assert (listed.status, created.status) == (401, 401)
    assert (await listed.json())["error"]["message"] == "the session has ended; sign in again"
    assert page.status == 302
    assert URL(page.headers["Location"]).path == "/login"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


@pytest.fixture
async def other_api_process(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[aiohttp.ClientSession]:
    """`exporter serve` in a process of its own on the test's database, and a client of it."""
    port = free_port()
    env = {**os.environ, **settings_env(settings, port=port, api_processes=1)}
    process = start_exporter("serve", env, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as other:
            await wait_for_api(other)
            yield other
    finally:
        process.kill()
        process.wait()


async def test_a_session_ended_in_one_api_process_is_refused_by_every_other(
    client: TestClient[Any, Any], other_api_process: aiohttp.ClientSession
) -> None:
    processes = (client, other_api_process)
    old = await signed_in_cookie(client, ADMIN)
    before = [await old.request(c, "GET", "/api/export-tasks") for c in processes]

    signed_out = await old.request(other_api_process, "DELETE", "/api/session")

    after = [await old.request(c, "GET", "/api/export-tasks") for c in processes]
    assert signed_out.status == 204
    assert [r.status for r in before] == [200, 200]
    assert [r.status for r in after] == [401, 401]


async def test_disabling_an_account_ends_its_sessions_and_enabling_it_brings_none_back(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    old = await signed_in_cookie(client, ADMIN)
    admin_id = await account_id(db, "admin")

    # As an admin backend would, straight in the database.
    await db.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", admin_id)
    sessions_left = await db.fetchval("SELECT count(*) FROM sessions")
    while_disabled = await old.request(client, "GET", "/api/export-tasks")
    await db.execute("UPDATE accounts SET status = 'active' WHERE id = $1", admin_id)
    enabled_again = await old.request(client, "GET", "/api/export-tasks")

    assert sessions_left == 0
    assert while_disabled.status == 403
    assert (await while_disabled.json())["error"]["code"] == "account_inactive"
    assert enabled_again.status == 401
    fresh = await signed_in_cookie(client, ADMIN)
    assert (await fresh.request(client, "GET", "/api/export-tasks")).status == 200


async def test_changing_the_password_ends_every_session_of_that_account_only(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    await db.execute(
        "INSERT INTO accounts (username, password_hash) VALUES ('bystander', $1)",
        hash_password("bystander-password"),
    )
    laptop = await signed_in_cookie(client, ADMIN)
    phone = await signed_in_cookie(client, ADMIN)
    bystander = await signed_in_cookie(
        client, {"username": "bystander", "password": "bystander-password"}
    )
    admin_id = await account_id(db, "admin")
    bearer = {"Authorization": f"Bearer {issue_token(SECRET, admin_id)}"}

    await db.execute(
        "UPDATE accounts SET password_hash = $1 WHERE id = $2", hash_password("new"), admin_id
    )

    for ended in (laptop, phone):
        assert (await ended.request(client, "GET", "/api/export-tasks")).status == 401
    assert (await bystander.request(client, "GET", "/api/export-tasks")).status == 200
    # A bearer token is no session: it lasts until it expires or the account stops being active.
    assert (await client.get("/api/export-tasks", headers=bearer)).status == 200


async def test_an_expired_session_is_refused_and_the_next_sign_in_removes_it(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    old = await signed_in_cookie(client, ADMIN)
    await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")

    refused = await old.request(client, "GET", "/api/export-tasks")
    await signed_in_cookie(client, ADMIN)

    assert refused.status == 401
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE expires_at <= now()") == 0
    assert await db.fetchval("SELECT count(*) FROM sessions") == 1


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE accounts SET status = 'locked' WHERE id = $1",
        "UPDATE accounts SET password_hash = 'another' WHERE id = $1",
    ],
    ids=["locked", "new-password"],
)
async def test_no_session_starts_for_an_account_changed_while_its_password_was_checked(
    database_url: str, db: asyncpg.Connection[Any], change: str
) -> None:
    admin_id = await account_id(db, "admin")
    checked_hash = await db.fetchval("SELECT password_hash FROM accounts WHERE id = $1", admin_id)
    await db.execute(change, admin_id)
    pool = await create_pool(database_url)
    try:
        session_id = await AccountRepository(pool).start_session(admin_id, checked_hash, ttl_s=60)
    finally:
        await pool.close()

    assert session_id is None
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_after_ten_wrong_passwords_sign_in_pauses_for_that_username_and_address(
    client: TestClient[Any, Any],
) -> None:
    for _ in range(10):
        response = await client.post("/api/session", json={**ADMIN, "password": "guess"})
        assert response.status == 401

    paused = await client.post("/api/session", json=ADMIN)
    other = await client.post("/api/session", json={"username": "nobody", "password": "x"})

    assert paused.status == 429
    error = (await paused.json())["error"]
    assert error["code"] == "too_many_sign_ins"
    assert error["message"] == "too many wrong passwords; try again within 15 minutes"
    assert "Set-Cookie" not in paused.headers
    assert other.status == 401


async def test_signing_in_clears_earlier_wrong_passwords(client: TestClient[Any, Any]) -> None:
    for _ in range(9):
        await client.post("/api/session", json={**ADMIN, "password": "guess"})
    await sign_in(client, ADMIN)

    for _ in range(9):
        await client.post("/api/session", json={**ADMIN, "password": "guess"})

    await sign_in(client, ADMIN)
