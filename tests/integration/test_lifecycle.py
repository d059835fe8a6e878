"""Cancel, retry, delete, double clicks, idempotency, quotas, retention, history."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker

from exporter.auth.tokens import issue_token
from exporter.db import create_pool
from exporter.ops.app import create_app
from exporter.tasks.kinds import published_name
from exporter.tasks.models import TaskStatus
from exporter.tasks.repository import TaskRepository
from settings import Settings
from tests.conftest import SECRET, add_account
from tests.support import ApiUser, files_in, statuses, wait_until
from tests.workers import drain_queue, running_worker


async def running(user: ApiUser, task_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        task = await user.task(task_id)
        return task if task["status"] == "running" else None

    return await wait_until(probe, what=f"task {task_id} to be running")


@pytest.mark.usefixtures("worker")
async def test_a_completed_task_shows_its_history(admin: ApiUser) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])

    assert statuses(task) == ["pending", "running", "completed"]
    assert [event["attempt"] for event in task["history"]] == [0, 1, 1]


async def test_cancelling_a_pending_task_ends_it_at_once_and_it_never_starts(
    admin: ApiUser, settings: Settings
) -> None:
    task = await admin.create("role", "csv")  # no worker yet

    response = await admin.client.post(
        f"/api/export-tasks/{task['id']}/cancel", headers=admin.headers
    )
    cancelled = await response.json()
    await drain_queue(settings)
    after = await admin.task(task["id"])

    assert response.status == 200
    assert cancelled["status"] == "cancelled"
    assert after["status"] == "cancelled"
    assert after["attempts"] == 0 and after["started_at"] is None
    assert statuses(after) == ["pending", "cancelled"]
    download_status, _, _ = await admin.download(task["id"])
    assert download_status == 409


@pytest.mark.parametrize("file_format", ["xlsx", "csv"])
@pytest.mark.usefixtures("worker")
async def test_cancelling_a_running_task_stops_it_within_a_second_and_removes_its_file(
    admin: ApiUser, settings: Settings, file_format: str
) -> None:
    task = await admin.create("test_slow", file_format, rows=200_000)
    await running(admin, task["id"])

    asked = time.monotonic()
    response = await admin.client.post(
        f"/api/export-tasks/{task['id']}/cancel", headers=admin.headers
    )
    flagged = await response.json()
    finished = await admin.finished(task["id"])
    took_s = time.monotonic() - asked

    assert response.status == 200
    assert flagged["status"] == "running" and flagged["cancel_requested"] is True
    assert finished["status"] == "cancelled"
    assert took_s < 1.5
    assert files_in(settings.storage_dir) == []
    assert statuses(finished) == ["pending", "running", "cancelled"]


@pytest.mark.usefixtures("worker")
async def test_cancelling_or_retrying_in_the_wrong_state_is_409(admin: ApiUser) -> None:
    done = await admin.finished((await admin.create("role", "csv"))["id"])

    cancel = await admin.client.post(
        f"/api/export-tasks/{done['id']}/cancel", headers=admin.headers
    )
    retry = await admin.client.post(f"/api/export-tasks/{done['id']}/retry", headers=admin.headers)

    assert cancel.status == 409
    assert (await cancel.json())["error"]["code"] == "invalid_state"
    assert retry.status == 409


@pytest.mark.usefixtures("worker")
async def test_retry_of_a_failed_task_creates_a_new_task_with_the_same_request(
    admin: ApiUser,
) -> None:
    failed = await admin.finished((await admin.create("test_raises", "csv"))["id"])

    response = await admin.client.post(
        f"/api/export-tasks/{failed['id']}/retry", headers=admin.headers
    )
    again = await response.json()

    assert response.status == 202
    assert again["id"] != failed["id"]
    assert (again["type"], again["format"], again["params"]) == ("test_raises", "csv", {})
    assert response.headers["Location"] == f"/api/export-tasks/{again['id']}"
    assert (await admin.finished(again["id"]))["status"] == "failed"


@pytest.mark.usefixtures("worker")
async def test_delete_removes_the_task_and_its_file(admin: ApiUser, settings: Settings) -> None:
    task = await admin.finished((await admin.create("role", "xlsx"))["id"])
    assert files_in(settings.storage_dir) == [f"{task['id']}.1.xlsx"]

    response = await admin.client.delete(f"/api/export-tasks/{task['id']}", headers=admin.headers)

    assert response.status == 204
    assert files_in(settings.storage_dir) == []
    assert (await admin.get(f"/api/export-tasks/{task['id']}"))[0] == 404
    again = await admin.client.delete(f"/api/export-tasks/{task['id']}", headers=admin.headers)
    assert again.status == 404


@pytest.mark.usefixtures("worker")
async def test_deleting_a_running_task_stops_its_export_and_leaves_nothing(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    task = await admin.create("test_slow", "csv", rows=200_000)
    await running(admin, task["id"])

    response = await admin.client.delete(f"/api/export-tasks/{task['id']}", headers=admin.headers)

    assert response.status == 204

    async def storage_empty() -> bool:
        return files_in(settings.storage_dir) == []

    await wait_until(storage_empty, timeout_s=3, what="the running export's files to go")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE '%pg_sleep%'"
            " AND pid <> pg_backend_pid()"
        )
        == 0
    )


async def test_another_users_task_is_404_for_cancel_retry_and_delete(
    admin: ApiUser, other_user: ApiUser
) -> None:
    task = await admin.create("role", "csv")

    for method, suffix in (("POST", "/cancel"), ("POST", "/retry"), ("DELETE", "")):
        response = await other_user.client.request(
            method, f"/api/export-tasks/{task['id']}{suffix}", headers=other_user.headers
        )
        assert response.status == 404
    assert (await admin.task(task["id"]))["status"] == "pending"


async def test_a_double_click_returns_the_unfinished_task_instead_of_a_second_one(
    admin: ApiUser,
) -> None:
    body = {"type": "account", "format": "xlsx", "params": {"keyword": "张", "status": ""}}

    first_status, first = await admin.post_task(body)
    second_status, second = await admin.post_task(
        {"type": "account", "format": "xlsx", "params": {"keyword": " 张 "}}
    )
    other_format_status, _ = await admin.post_task({**body, "format": "csv"})

    assert (first_status, second_status, other_format_status) == (202, 200, 202)
    assert second["id"] == first["id"]


async def test_an_idempotency_key_returns_the_first_task_and_refuses_another_body(
    admin: ApiUser, client: TestClient[Any, Any]
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "export-42"}
    body = {"type": "role", "format": "csv", "params": {}}

    first = await client.post("/api/export-tasks", json=body, headers=headers)
    await admin.client.post(
        f"/api/export-tasks/{(await first.json())['id']}/cancel", headers=admin.headers
    )
    repeat = await client.post("/api/export-tasks", json=body, headers=headers)
    changed = await client.post(
        "/api/export-tasks", json={**body, "format": "xlsx"}, headers=headers
    )

    assert first.status == 202
    assert repeat.status == 200
    assert (await repeat.json())["id"] == (await first.json())["id"]
    assert changed.status == 422
    assert (await changed.json())["error"]["code"] == "idempotency_key_reused"


async def test_twenty_parallel_posts_from_one_user_get_exactly_the_quota(
    admin: ApiUser, client: TestClient[Any, Any], db: asyncpg.Connection[Any], settings: Settings
) -> None:
    others = []
    for n in range(20):
        user_id = await add_account(db, f"parallel{n}", ["role:read", "export:create"])
        others.append(ApiUser(client, issue_token(SECRET, user_id)))

    results = await asyncio.gather(
        *(
            admin.post_task({"type": "account", "format": "csv", "params": {"keyword": f"k{n}"}})
            for n in range(20)
        ),
        *(user.post_task({"type": "role", "format": "csv", "params": {}}) for user in others),
    )

    mine = [status for status, _ in results[:20]]
    theirs = [status for status, _ in results[20:]]
    assert sorted(mine) == [202] * 3 + [429] * 17
    assert theirs == [202] * 20
    rejected = next(body for status, body in results[:20] if status == 429)
    assert rejected["error"]["code"] == "quota_exceeded"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM tasks WHERE created_by_id = $1",
            await db.fetchval("SELECT id FROM accounts WHERE username = 'admin'"),
        )
        == 3
    )
    await drain_queue(settings)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE status <> 'completed'") == 0
    assert await db.fetchval("SELECT count(*) FROM tasks") == 23


async def test_quota_answer_carries_retry_after(
    admin: ApiUser, client: TestClient[Any, Any]
) -> None:
    for n in range(3):
        await admin.create("account", "csv", keyword=f"q{n}")

    response = await client.post(
        "/api/export-tasks",
        json={"type": "account", "format": "csv", "params": {"keyword": "q3"}},
        headers=admin.headers,
    )

    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0


@asynccontextmanager
async def admin_with_queue_cap(
    settings: Settings, db: asyncpg.Connection[Any], max_pending: int
) -> AsyncIterator[ApiUser]:
    """The admin, calling an API whose queue holds at most ``max_pending`` jobs."""
    capped = settings.model_copy(update={"max_pending": max_pending})
    admin_id = await db.fetchval("SELECT id FROM accounts WHERE username = 'admin'")
    async with TestClient(TestServer(create_app(capped))) as capped_client:
        yield ApiUser(capped_client, issue_token(SECRET, int(admin_id)))


async def test_the_global_pending_cap_answers_503(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    async with admin_with_queue_cap(settings, db, 2) as user:
        await user.create("role", "csv")
        await user.create("role", "xlsx")
        status, body = await user.post_task({"type": "account", "format": "csv", "params": {}})

    assert status == 503
    assert body["error"]["code"] == "queue_full"


async def test_a_full_queue_still_answers_a_repeated_request_with_its_task(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    async with admin_with_queue_cap(settings, db, 1) as user:
        first = await user.create("role", "csv")
        status, again = await user.post_task({"type": "role", "format": "csv", "params": {}})

    assert status == 200
    assert again["id"] == first["id"]


async def test_an_export_over_the_row_cap_fails_before_writing(
    settings: Settings, admin: ApiUser
) -> None:
    capped = settings.model_copy(update={"max_rows": 100})
    task = await admin.create("account", "xlsx")
    await drain_queue(capped)

    finished = await admin.task(task["id"])

    assert finished["status"] == "failed"
    assert finished["error"] == (
        "the export has 300 rows, more than the limit of 100 (EXPORTER_MAX_ROWS);"
        " narrow the filters"
    )
    assert files_in(settings.storage_dir) == []


async def test_files_past_retention_expire_and_download_says_gone(
    settings: Settings, admin: ApiUser
) -> None:
    short = settings.model_copy(update={"retention_days": 2 / 86400})  # two seconds
    async with running_worker(short):
        task = await admin.finished((await admin.create("role", "csv"))["id"])
        assert task["status"] == "completed"

        async def expired() -> dict[str, Any] | None:
            current = await admin.task(task["id"])
            return current if current["status"] == "expired" else None

        gone = await wait_until(expired, timeout_s=10, what="the file to expire")

    status, body, _ = await admin.download(task["id"])
    assert status == 410
    assert b"expired" in body
    assert files_in(settings.storage_dir) == []
    assert statuses(gone)[-1] == "expired"


async def test_the_janitor_removes_orphans_but_never_a_live_tasks_files(
    settings: Settings, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    deployment = str(await db.fetchval("SELECT id FROM deployment"))
    storage, work = settings.storage_dir / deployment, settings.scratch_dir / deployment
    storage.mkdir(parents=True)
    work.mkdir(parents=True)
    live = await admin.create("role", "csv")
    await db.execute(
        "UPDATE tasks SET status = 'running', worker_id = 'elsewhere',"
        " lease_expires_at = now() + interval '1 hour' WHERE id = $1",
        uuid.UUID(live["id"]),
    )
    old = time.time() - 3600
    entries = {
        "live": work / f"{live['id']}-aaaa",
        "dead": work / f"{uuid.uuid4()}-bbbb",
        "orphan_file": storage / f"{uuid.uuid4()}.xlsx",
        "fresh_orphan": storage / f"{uuid.uuid4()}.csv",
    }
    for name, path in entries.items():
        if name in ("live", "dead"):
            path.mkdir()
            (path / "export.xlsx").write_bytes(b"partial")
        else:
            path.write_bytes(b"data")
        if name != "fresh_orphan":
            os.utime(path, (old, old))

    async with running_worker(settings):  # every worker sweeps as it starts
        await wait_until(
            lambda: asyncio.sleep(0, result=not entries["dead"].exists()), what="the janitor"
        )

    assert entries["live"].exists()
    assert not entries["orphan_file"].exists()
    assert entries["fresh_orphan"].exists()


async def test_without_redis_the_api_accepts_lists_and_the_sweeper_enqueues_later(
    settings: Settings, db: asyncpg.Connection[Any], worker: Worker
) -> None:
    redis_down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    admin_id = await db.fetchval("SELECT id FROM accounts WHERE username = 'admin'")
    async with TestClient(TestServer(create_app(redis_down))) as down_client:
        user = ApiUser(down_client, issue_token(SECRET, int(admin_id)))
        status, task = await user.post_task({"type": "role", "format": "csv", "params": {}})
        list_status, page = await user.get("/api/export-tasks")
        ready = await down_client.get("/readyz")

        assert status == 202
        assert list_status == 200 and page["total"] == 1
        assert ready.status == 503
        done = await user.finished(task["id"], timeout_s=15)
        download_status, _, _ = await user.download(task["id"])

    assert done["status"] == "completed"
    assert download_status == 200


@pytest.mark.usefixtures("worker")
async def test_a_task_cancelled_as_its_database_connection_drops_ends_cancelled(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    task = await admin.create("test_slow", "csv", rows=200_000)
    await running(admin, task["id"])

    # The cancel and a lost connection (an attempt that would be retried) at the same moment.
    await db.execute(
        "UPDATE tasks SET cancel_requested = true WHERE id = $1",
        uuid.UUID(task["id"]),
    )
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE '%pg_sleep%'"
        " AND pid <> pg_backend_pid()"
    )
    done = await admin.finished(task["id"], timeout_s=10)

    assert done["status"] == "cancelled", done


async def test_an_attempt_that_lost_its_task_can_neither_complete_it_nor_touch_its_file(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    # One worker claims the task, loses its lease (the sweeper hands it back) and claims it
    # again: the two attempts share the worker's id, only their numbers tell them apart.
    task_id = uuid.UUID((await admin.create("role", "csv"))["id"])
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        tasks = TaskRepository(pool)
        stale = await tasks.claim(task_id, "machine:1:abc", 15)
        await db.execute(
            "UPDATE tasks SET status = 'pending', worker_id = NULL WHERE id = $1", task_id
        )
        current = await tasks.claim(task_id, "machine:1:abc", 15)
        assert stale is not None and current is not None
        names = {published_name(attempt, Path("export.csv")) for attempt in (stale, current)}

        late = await tasks.complete(
            task_id,
            "machine:1:abc",
            attempt=stale.attempts,
            file_name="a.csv",
            file_key="k1",
            file_size=1,
            rows=1,
        )
        done = await tasks.complete(
            task_id,
            "machine:1:abc",
            attempt=current.attempts,
            file_name="b.csv",
            file_key="k2",
            file_size=2,
            rows=2,
        )
    finally:
        await pool.close()

    assert late is None
    assert done is not None and (done.status, done.file_key) == (TaskStatus.COMPLETED, "k2")
    assert names == {f"{task_id}.1.csv", f"{task_id}.2.csv"}
