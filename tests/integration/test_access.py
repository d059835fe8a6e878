"""Who may see and do what: tokens, account states, other users' tasks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from exporter.auth import tokens
from exporter.auth.passwords import hash_password
from exporter.auth.tokens import identity_from_token, issue_token
from exporter.errors import Unauthorized
from tests.conftest import SECRET, account_id
from tests.integration.test_sessions import sign_in
from tests.support import ApiUser


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer not-a-jwt",
        "Bearer " + jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, "x" * 40, "HS256"),
        "Bearer " + jwt.encode({"sub": "1", "exp": int(time.time()) - 60}, SECRET, "HS256"),
        "Bearer " + jwt.encode({"sub": "1"}, SECRET, "HS256"),
        "Bearer " + jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, SECRET, "HS256"),
        "Bearer " + jwt.encode({"sub": "999999", "exp": int(time.time()) + 60}, SECRET, "HS256"),
    ],
    ids=[
        "missing",
        "empty",
        "basic",
        "garbage",
        "wrong-key",
        "expired",
        "no-exp",
        "bad-sub",
        "unknown",
    ],
)
async def test_requests_without_a_valid_token_for_a_known_account_get_401_json(
    client: TestClient[Any, Any], authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    for method, path in (("GET", "/api/export-tasks"), ("POST", "/api/export-tasks")):
        response = await client.request(method, path, headers=headers, json={"type": "role"})
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"


def test_a_token_whose_check_is_remembered_is_still_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = issue_token(SECRET, 7, ttl_s=60)
    assert identity_from_token(SECRET, token).account_id == 7
    assert identity_from_token(SECRET, token).account_id == 7  # from the remembered check

    expiry = time.time() + 60
    monkeypatch.setattr(tokens.time, "time", lambda: expiry)

    with pytest.raises(Unauthorized, match="token expired"):
        identity_from_token(SECRET, token)


INSPECTOR = {"username": "inspector", "password": "inspector-password"}


async def signed_in_inspector(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], credential: str
) -> tuple[int, dict[str, str]]:
    """An active account with the admin's role, and the headers that send its bearer token or,
    with the client's cookie, its session's CSRF value."""
    inspector_id = int(
        await db.fetchval(
            "INSERT INTO accounts (username, status, password_hash, role_id)"
            " SELECT $1, 'active', $2, role_id FROM accounts WHERE username = 'admin'"
            " RETURNING id",
            INSPECTOR["username"],
            hash_password(INSPECTOR["password"]),
        )
    )
    if credential == "token":
        return inspector_id, {"Authorization": f"Bearer {issue_token(SECRET, inspector_id)}"}
    return inspector_id, {"X-CSRF-Token": await sign_in(client, INSPECTOR)}


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("credential", ["token", "cookie"])
@pytest.mark.parametrize("state", ["disabled", "locked"])
async def test_an_account_no_longer_active_is_refused_by_every_endpoint_with_its_old_credentials(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], state: str, credential: str
) -> None:
    inspector_id, headers = await signed_in_inspector(client, db, credential)
    user = ApiUser(client, "")
    user.headers = headers
    task = await user.finished((await user.create("role", "csv"))["id"])
    assert task["status"] == "completed"

    await db.execute("UPDATE accounts SET status = $1 WHERE id = $2", state, inspector_id)

    task_path = f"/api/export-tasks/{task['id']}"
    for method, path in [
        ("GET", "/api/export-tasks"),
        ("GET", task_path),
        ("GET", f"{task_path}/download"),
        ("GET", "/api/export-tasks/stream"),
        ("GET", "/api/accounts"),
        ("GET", "/api/roles"),
        ("GET", "/api/export-types"),
        ("POST", "/api/export-tasks"),
        ("POST", f"{task_path}/cancel"),
        ("POST", f"{task_path}/retry"),
        ("DELETE", task_path),
        ("DELETE", "/api/session"),
    ]:
        body = {"type": "role", "format": "csv", "params": {}} if method == "POST" else None
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status == 403, (method, path)
        error = (await response.json())["error"]
        assert (error["code"], error["message"]) == ("account_inactive", f"account is {state}")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


PUBLIC = {("POST", "/api/session"), ("GET", "/api/openapi.json")}


async def test_no_api_route_serves_an_account_no_longer_active(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    # Every route the app has, so that one added later without the check fails here.
    inspector_id, headers = await signed_in_inspector(client, db, "token")
    await db.execute("UPDATE accounts SET status = 'locked' WHERE id = $1", inspector_id)
    routes = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    checked = sorted(
        (method, path) for method, path in routes - PUBLIC if method not in ("HEAD", "OPTIONS")
    )

    refused = []
    for method, path in checked:
        url = path.replace("{task_id}", str(uuid.uuid4())).replace("{type}", "account")
        response = await client.request(method, url, headers=headers, json={})
        code = None
        if response.status == 403:  # else the body may be an open event stream
            code = (await response.json())["error"]["code"]
        response.close()
        refused.append((method, path, response.status, code))

    assert {("GET", "/api/accounts"), ("GET", "/api/export-tasks/stream")} <= set(checked)
    assert refused == [(method, path, 403, "account_inactive") for method, path in checked]


@pytest.mark.parametrize("path", ["/tasks", "/accounts", "/roles"])
async def test_the_pages_send_an_account_no_longer_active_to_sign_in(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], path: str
) -> None:
    inspector_id, _ = await signed_in_inspector(client, db, "cookie")
    assert (await client.get(path, allow_redirects=False)).status == 200

    await db.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", inspector_id)

    page = await client.get(path, allow_redirects=False)
    login = await client.get("/login", allow_redirects=False)
    assert page.status == 302
    location = URL(page.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", path)
    assert login.status == 200


async def test_a_token_from_an_admin_backend_with_only_sub_and_exp_is_accepted(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    claims = {"sub": str(await account_id(db, "admin")), "exp": int(time.time()) + 60}
    headers = {"Authorization": "Bearer " + jwt.encode(claims, SECRET, "HS256")}

    listed = await client.get("/api/export-tasks", headers=headers)
    created = await client.post(
        "/api/export-tasks", headers=headers, json={"type": "role", "format": "csv", "params": {}}
    )

    assert (listed.status, created.status) == (200, 202)


async def test_another_users_task_is_404_on_get_and_download_exactly_like_a_missing_one(
    admin: ApiUser, other_user: ApiUser
) -> None:
    task = await admin.create("role", "csv")

    foreign = await other_user.get(f"/api/export-tasks/{task['id']}")
    missing = await other_user.get(f"/api/export-tasks/{uuid.uuid4()}")
    foreign_download, _, _ = await other_user.download(task["id"])

    assert foreign == missing
    assert foreign[0] == 404
    assert foreign_download == 404


async def test_a_task_id_that_is_not_a_uuid_is_404(admin: ApiUser) -> None:
    status, body = await admin.get("/api/export-tasks/12345")
    download_status, _, _ = await admin.download("../../etc/passwd")

    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert download_status == 404


async def test_download_before_completion_is_409(admin: ApiUser) -> None:
    task = await admin.create("role", "xlsx")  # no worker runs in this test

    status, body, _ = await admin.download(task["id"])

    assert status == 409
    error = json.loads(body)["error"]
    assert error["code"] == "task_not_ready"
    assert error["message"] == "the export is pending; only a completed export has a file"


async def test_the_list_shows_only_the_callers_tasks_newest_first_with_filters_and_pages(
    admin: ApiUser, other_user: ApiUser
) -> None:
    mine = [
        await admin.create("role", "csv"),
        await admin.create("account", "xlsx", status="active"),
        await admin.create("account", "csv"),
    ]
    await other_user.create("role", "csv")

    status, page = await admin.get("/api/export-tasks?page_size=2")
    _, second = await admin.get("/api/export-tasks?page_size=2&page=2")
    _, roles = await admin.get("/api/export-tasks?type=role")
    _, failed = await admin.get("/api/export-tasks?status=failed")

    assert status == 200
    assert page["total"] == 3
    assert [t["id"] for t in page["items"] + second["items"]] == [t["id"] for t in reversed(mine)]
    assert [t["id"] for t in roles["items"]] == [mine[0]["id"]]
    assert failed == {"items": [], "total": 0, "page": 1, "page_size": 20}
    assert all(not {"file_path", "file_key"} & set(task) for task in page["items"])


async def test_health_readiness_and_openapi_need_no_token(client: TestClient[Any, Any]) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    spec = await client.get("/api/openapi.json")

    assert health.status == 200
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"postgres": "ok", "redis": "ok"}
    document = await spec.json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) >= {
        "/api/export-tasks",
        "/api/export-tasks/{task_id}",
        "/api/export-tasks/{task_id}/download",
        "/api/export-tasks/{task_id}/cancel",
        "/api/export-tasks/{task_id}/retry",
        "/api/export-tasks/stream",
        "/api/export-types",
        "/api/accounts",
        "/api/roles",
        "/api/session",
    }
    assert set(document["paths"]["/api/export-tasks/{task_id}"]) == {"get", "delete"}
    assert "AccountParams" in document["components"]["schemas"]
    assert "CreateTaskRequest" in document["components"]["schemas"]


async def test_export_types_list_the_registered_types_with_their_params_schema(
    admin: ApiUser,
) -> None:
    status, body = await admin.get("/api/export-types")

    assert status == 200
    types = {item["name"]: item for item in body["items"]}
    assert {"account", "role"} <= set(types)
    account = types["account"]
    assert account["title"] == "账号列表"
    assert account["formats"] == ["xlsx", "csv"]
    assert [c["label"] for c in account["columns"]][:3] == ["ID", "用户名", "昵称"]
    assert set(account["params_schema"]["properties"]) == {
        "keyword",
        "status",
        "role_id",
        "created_from",
        "created_to",
    }
    assert account["params_schema"]["additionalProperties"] is False


async def test_the_token_command_issues_a_token_the_api_accepts(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    token = issue_token(SECRET, await account_id(db, "admin"), ttl_s=60)

    response = await client.get("/api/export-tasks", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 200
