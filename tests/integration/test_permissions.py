"""Role permissions: who may see a type's list, who may export it, and what needs only ownership."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.auth.tokens import issue_token
from exporter.exports.columns import Column
from exporter.exports.registry import ExportParams, export_handler, registry
from exporter.exports.row_query import RowQuery
from exporter.web.i18n import catalog
from tests.conftest import SECRET, add_account, set_permissions
from tests.integration.test_sessions import sign_in
from tests.integration.test_task_stream import open_stream
from tests.support import ApiUser

NewUser = Callable[[Sequence[str] | None], Awaitable[ApiUser]]
DEMO_PASSWORD = "admin-password"  # the demo accounts share the admin's password


@pytest.fixture
def user_with(client: TestClient[Any, Any], db: asyncpg.Connection[Any]) -> NewUser:
    """A new account whose role grants exactly the given permissions (None: no role at all)."""
    made = 0

    async def new_user(permissions: Sequence[str] | None) -> ApiUser:
        nonlocal made
        made += 1
        user_id = await add_account(db, f"member{made}", permissions)
        return ApiUser(client, issue_token(SECRET, user_id))

    return new_user


def assert_forbidden(status: int, body: Any, *missing: str) -> None:
    assert status == 403, body
    error = body["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == [
        {
            "field": "permission",
            "message": name,
            "code": "missing_permission",
            "params": {"permission": name},
        }
        for name in missing
    ]
    assert error["params"] == {"permission": ", ".join(missing)}
    assert all(name in error["message"] for name in missing)


async def test_a_role_with_only_role_rights_may_list_roles_but_not_see_or_export_accounts(
    user_with: NewUser, db: asyncpg.Connection[Any]
) -> None:
    user = await user_with(["role:read", "role:write"])

    assert_forbidden(*await user.get("/api/accounts"), "account:read")
    assert_forbidden(
        *await user.post_task({"type": "account", "format": "xlsx", "params": {}}),
        "account:read",
        "export:create",
    )
    # Refused before its params are even read: no hint about the filters either.
    assert_forbidden(
        *await user.post_task({"type": "account", "format": "csv", "params": {"bogus": 1}}),
        "account:read",
        "export:create",
    )
    status, roles = await user.get("/api/roles")
    assert status == 200
    assert roles["total"] == await db.fetchval("SELECT count(*) FROM roles")
    assert_forbidden(
        *await user.post_task({"type": "role", "format": "csv", "params": {}}), "export:create"
    )
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_account_read_without_export_create_may_list_accounts_but_not_export_them(
    user_with: NewUser, db: asyncpg.Connection[Any]
) -> None:
    user = await user_with(["account:read"])

    status, accounts = await user.get("/api/accounts?status=active")
    assert status == 200
    assert accounts["total"] == await db.fetchval(
        "SELECT count(*) FROM accounts WHERE status = 'active'"
    )
    assert_forbidden(
        *await user.post_task({"type": "account", "format": "csv", "params": {}}), "export:create"
    )
    assert_forbidden(*await user.get("/api/roles"), "role:read")
    status, types = await user.get("/api/export-types")
    assert status == 200
    assert [item["name"] for item in types["items"]] == ["account"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_every_permission_lets_an_account_list_and_export_every_type(
    user_with: NewUser,
) -> None:
    user = await user_with(["*"])

    assert (await user.get("/api/accounts"))[0] == 200
    assert (await user.get("/api/roles"))[0] == 200
    assert (await user.create("account", "csv", status="active"))["status"] == "pending"
    assert (await user.create("role", "xlsx"))["status"] == "pending"
    status, types = await user.get("/api/export-types")
    assert status == 200
    assert [item["name"] for item in types["items"]] == [handler.name for handler in registry]


async def test_an_account_without_a_role_may_do_nothing_but_see_its_own_tasks(
    user_with: NewUser, db: asyncpg.Connection[Any]
) -> None:
    user = await user_with(None)

    assert_forbidden(*await user.get("/api/accounts"), "account:read")
    assert_forbidden(*await user.get("/api/roles"), "role:read")
    assert_forbidden(
        *await user.post_task({"type": "role", "format": "csv", "params": {}}),
        "role:read",
        "export:create",
    )
    assert await user.get("/api/export-types") == (200, {"items": []})
    status, tasks = await user.get("/api/export-tasks")
    assert (status, tasks["items"], tasks["total"]) == (200, [], 0)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_handler_declares_the_permission_its_type_needs(user_with: NewUser) -> None:
    assert registry.get("role").permission == "role:read"  # the default: "<type>:read"
    assert registry.get("test_raises").permission == "ops:read"  # declared by the handler

    by_name = await user_with(["test_raises:read", "export:create"])
    declared = await user_with(["ops:read", "export:create"])

    assert_forbidden(
        *await by_name.post_task({"type": "test_raises", "format": "csv", "params": {}}),
        "ops:read",
    )
    assert (await declared.create("test_raises", "csv"))["type"] == "test_raises"


def test_an_empty_permission_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="empty permission"):

        @export_handler(
            "test_empty_permission",
            title="t",
            params=ExportParams,
            columns=[Column("ID", "1")],
            permission=" ",
        )
        def rows(params: ExportParams) -> RowQuery:
            return RowQuery("accounts", order_by="id")

    assert "test_empty_permission" not in registry


@pytest.mark.usefixtures("worker")
async def test_own_tasks_need_only_ownership_once_the_role_lost_every_permission(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    user = ApiUser(client, issue_token(SECRET, await add_account(db, "former", ["*"])))
    done = await user.finished((await user.create("role", "csv"))["id"])
    running = await user.create("test_slow", "csv", rows=250_000)
    stream = await open_stream(user)
    await set_permissions(db, "former")

    assert_forbidden(*await user.get("/api/roles"), "role:read")
    status, page = await user.get("/api/export-tasks")
    assert status == 200
    assert {task["id"] for task in page["items"]} == {done["id"], running["id"]}
    assert (await user.task(done["id"]))["status"] == "completed"
    status, content, _ = await user.download(done["id"])
    assert status == 200 and content
    cancel = await client.post(f"/api/export-tasks/{running['id']}/cancel", headers=user.headers)
    assert cancel.status == 200, await cancel.text()
    assert (await stream.next_task())["id"] == running["id"]
    assert (await user.finished(running["id"]))["status"] == "cancelled"
    again = await open_stream(user)
    again.response.close()
    delete = await client.delete(f"/api/export-tasks/{done['id']}", headers=user.headers)
    assert delete.status == 204
    stream.response.close()


@pytest.mark.usefixtures("worker")
async def test_a_retry_is_a_new_export_and_needs_the_permissions_to_create_it(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    user = ApiUser(client, issue_token(SECRET, await add_account(db, "retrier", ["*"])))
    failed = await user.finished((await user.create("test_raises", "csv"))["id"])
    assert failed["status"] == "failed"
    retry = f"/api/export-tasks/{failed['id']}/retry"

    await set_permissions(db, "retrier", "ops:read")
    refused = await client.post(retry, headers=user.headers)
    assert_forbidden(refused.status, await refused.json(), "export:create")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1

    await set_permissions(db, "retrier", "ops:read", "export:create")
    accepted = await client.post(retry, headers=user.headers)
    assert accepted.status == 202, await accepted.text()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_a_page_the_role_may_not_see_is_a_403_page_in_the_visitors_language(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], language: str
) -> None:
    await add_account(db, "roles-only", ["role:read", "role:write"], password="pw-roles-only")
    await sign_in(client, {"username": "roles-only", "password": "pw-roles-only"})
    messages = catalog(language)

    response = await client.get("/accounts", cookies={"lang": language})

    assert response.status == 403
    html = await response.text()
    assert messages["forbidden.heading"] in html
    assert messages["forbidden.message"].format(permission="account:read") in html
    allowed = await client.get("/roles", cookies={"lang": language})
    assert allowed.status == 200


async def test_the_pages_link_and_offer_only_what_the_role_allows(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "reader", ["account:read"], password="pw-reader")
    await sign_in(client, {"username": "reader", "password": "pw-reader"})

    accounts = await (await client.get("/accounts")).text()
    tasks = await (await client.get("/tasks")).text()

    for html in (accounts, tasks):
        assert 'href="/accounts"' in html
        assert 'href="/tasks"' in html
        assert 'href="/roles"' not in html
    assert 'id="export-button"' not in accounts
    assert 'name="role_id"' not in accounts  # its options are the roles, which it may not read
    assert 'name="status"' in accounts


@pytest.mark.parametrize(
    ("username", "lists", "exports"),
    [
        ("admin", {"account": 200, "role": 200}, {"account": 202, "role": 202}),
        ("auditor", {"account": 200, "role": 403}, {"account": 403, "role": 403}),
        ("rolemanager", {"account": 403, "role": 200}, {"account": 403, "role": 202}),
    ],
)
async def test_the_demo_seed_has_an_admin_who_may_do_all_and_accounts_with_partial_rights(
    client: TestClient[Any, Any],
    username: str,
    lists: dict[str, int],
    exports: dict[str, int],
) -> None:
    csrf_token = await sign_in(client, {"username": username, "password": DEMO_PASSWORD})

    for type_name, expected in lists.items():
        response = await client.get(f"/api/{type_name}s")
        assert response.status == expected, type_name
    for type_name, expected in exports.items():
        response = await client.post(
            "/api/export-tasks",
            json={"type": type_name, "format": "csv", "params": {}},
            headers={"X-CSRF-Token": csrf_token},
        )
        assert response.status == expected, (type_name, await response.text())
