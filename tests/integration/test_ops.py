"""The operators' API: workers recording themselves, every account's tasks, and cancel or retry of
another account's task, each behind its permission."""

from __future__ import annotations

import os
import socket
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.auth.tokens import issue_token
from exporter.db import create_pool
from exporter.tasks.workers import WorkerIdentity, WorkerRegistry
from settings import Settings
from tests.conftest import SECRET, add_account
from tests.imports import form, import_task, imported, stored_files
from tests.integration.test_permissions import assert_forbidden
from tests.support import ApiUser, wait_until
from tests.workers import running_worker


async def operator(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], *perms: str
) -> ApiUser:
    user_id = await add_account(db, f"operator-{'-'.join(perms) or 'none'}", list(perms))
    return ApiUser(client, issue_token(SECRET, user_id))


async def post(user: ApiUser, path: str) -> tuple[int, Any]:
    response = await user.client.post(path, headers=user.headers)
    return response.status, await response.json()


async def test_a_worker_records_itself_its_current_task_and_its_clean_stop(
    settings: Settings, client: TestClient[Any, Any], db: asyncpg.Connection[Any], admin: ApiUser
) -> None:
    ops = await operator(client, db, "ops:read")
    async with running_worker(settings):
        slow = await admin.create("test_slow", "csv", rows=20_000)

        async def holding_it() -> dict[str, Any] | None:
            status, body = await ops.get("/api/ops/workers")
            assert status == 200, body
            held = [w for w in body["items"] if slow["id"] in w["current_tasks"]]
            return held[0] if held and held[0]["rows_per_s"] > 0 else None

        worker = await wait_until(holding_it, what="the worker to report the slow task")
        assert worker["host"] == socket.gethostname() and worker["pid"] == os.getpid()
        assert worker["stale"] is False
        task_worker = await db.fetchval("SELECT worker_id FROM tasks WHERE id = $1", slow["id"])
        assert worker["id"] == task_worker
        cancelled = await admin.client.post(
            f"/api/export-tasks/{slow['id']}/cancel", headers=admin.headers
        )
        assert cancelled.status == 200
        await admin.finished(slow["id"])
    stopped = await db.fetchval("SELECT stopped_at FROM workers WHERE id = $1", worker["id"])
    assert stopped is not None
    status, body = await ops.get("/api/ops/workers")
    assert (status, body["items"]) == (200, [])


async def test_a_silent_worker_is_shown_stale_and_its_row_pruned_later(
    settings: Settings, client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    ops = await operator(client, db, "ops:read")
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        gone = WorkerRegistry(pool, WorkerIdentity("gone:1:abc", "gone", 1, "q"), 1.0)
        await gone.beat(12.5)
        await db.execute("UPDATE workers SET heartbeat_at = now() - interval '4 seconds'")
        status, body = await ops.get("/api/ops/workers")
        # Four beats missed, but under the 5 s floor: busy, not dead.
        assert [w["stale"] for w in body["items"]] == [False]
        await db.execute("UPDATE workers SET heartbeat_at = now() - interval '6 seconds'")
        status, body = await ops.get("/api/ops/workers")
        assert status == 200
        assert [(w["id"], w["stale"], w["rows_per_s"]) for w in body["items"]] == [
            ("gone:1:abc", True, 12.5)
        ]
        assert await gone.prune(older_than_s=3600) == 0
        assert await gone.prune(older_than_s=5) == 1
        assert await db.fetchval("SELECT count(*) FROM workers") == 0
    finally:
        await pool.close()


@pytest.mark.usefixtures("worker")
async def test_the_summary_counts_every_accounts_tasks_and_shows_the_failed_with_their_codes(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], admin: ApiUser, other_user: ApiUser
) -> None:
    ops = await operator(client, db, "ops:read")
    failed = await other_user.finished((await other_user.create("test_raises", "csv"))["id"])
    done = await admin.finished((await admin.create("account", "csv"))["id"])
    assert (failed["status"], done["status"]) == ("failed", "completed")

    status, body = await ops.get("/api/ops/summary")
    assert status == 200, body
    counts = {(c["kind"], c["status"]): c["count"] for c in body["counts"]}
    assert counts == {("export", "failed"): 1, ("export", "completed"): 1}
    assert body["queue"]["waiting"] == 0
    assert [(t["id"], t["owner"], t["error_code"]) for t in body["failed"]] == [
        (failed["id"], "other", failed["error_code"])
    ]
    assert failed["error_code"] is not None
    assert {t["id"] for t in body["slowest"]} == {failed["id"], done["id"]}
    assert len(body["workers"]) == 1

    status, page = await ops.get("/api/ops/tasks?status=failed&kind=export")
    assert (status, page["total"], [t["id"] for t in page["items"]]) == (200, 1, [failed["id"]])
    status, page = await ops.get("/api/ops/tasks?page=5")
    assert (status, page["total"], page["items"]) == (200, 2, [])
    status, problem = await ops.get("/api/ops/tasks?kind=report")
    assert status == 422
    assert [d["field"] for d in problem["error"]["details"]] == ["kind"]


async def test_an_account_without_ops_read_is_refused_every_ops_endpoint(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], admin: ApiUser
) -> None:
    nobody = await operator(client, db, "account:read")
    task = await admin.create("account", "csv")
    for path in ("/api/ops/summary", "/api/ops/workers", "/api/ops/tasks"):
        assert_forbidden(*await nobody.get(path), "ops:read")
    assert_forbidden(
        *await post(nobody, f"/api/ops/tasks/{task['id']}/cancel"), "ops:read", "ops:write"
    )


async def test_ops_read_alone_may_not_cancel_or_retry_another_accounts_task(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], admin: ApiUser
) -> None:
    reader = await operator(client, db, "ops:read")
    task = await admin.create("account", "csv")
    for action in ("cancel", "retry"):
        assert_forbidden(*await post(reader, f"/api/ops/tasks/{task['id']}/{action}"), "ops:write")
    assert (await admin.task(task["id"]))["status"] == "pending"  # no worker: still waiting


async def test_ops_write_cancels_and_retries_another_accounts_tasks_as_their_owner(
    settings: Settings, client: TestClient[Any, Any], db: asyncpg.Connection[Any], admin: ApiUser
) -> None:
    writer = await operator(client, db, "ops:read", "ops:write")
    pending = await admin.create("account", "csv")
    status, cancelled = await post(writer, f"/api/ops/tasks/{pending['id']}/cancel")
    assert (status, cancelled["status"], cancelled["owner"]) == (200, "cancelled", "admin")
    status, again = await post(writer, f"/api/ops/tasks/{pending['id']}/cancel")
    assert (status, again["error"]["code"]) == (409, "invalid_state")

    status, retried = await post(writer, f"/api/ops/tasks/{pending['id']}/retry")
    assert status == 202, retried
    owner = await db.fetchval("SELECT created_by_id FROM tasks WHERE id = $1", retried["id"])
    assert owner == await db.fetchval("SELECT id FROM accounts WHERE username = 'admin'")
    async with running_worker(settings):
        assert (await admin.finished(retried["id"]))["status"] == "completed"

    missing = "00000000-0000-0000-0000-000000000000"
    status, body = await post(writer, f"/api/ops/tasks/{missing}/cancel")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_ops_write_retries_another_accounts_import_with_a_copy_of_its_upload(
    client: TestClient[Any, Any],
    db: asyncpg.Connection[Any],
    admin: ApiUser,
    settings: Settings,
) -> None:
    writer = await operator(client, db, "ops:read", "ops:write")
    task = await imported(admin, form(mode="apply"))
    status, cancelled = await post(writer, f"/api/ops/tasks/{task['id']}/cancel")
    assert (status, cancelled["kind"], cancelled["status"]) == (200, "import", "cancelled")

    status, retried = await post(writer, f"/api/ops/tasks/{task['id']}/retry")
    assert (status, retried["kind"], retried["owner"]) == (202, "import", "admin")
    new = await import_task(admin, retried["id"])
    assert (new["mode"], new["file_name"]) == ("apply", "accounts.csv")
    assert sorted(stored_files(settings)) == sorted(
        [f"{task['id']}.upload.csv", f"{retried['id']}.upload.csv"]
    )
