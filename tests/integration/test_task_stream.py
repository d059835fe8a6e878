"""The live stream of task changes: what it sends, to whom, and how it ends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.auth.tokens import identity_from_token, issue_token
from exporter.ops.app import create_app
from exporter.tasks.changes import Gap, StreamEvent, StreamLimits, TaskChange, TaskChangeFeed
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.support import ApiUser, wait_until

STREAM = "/api/export-tasks/stream"
EVENT_TIMEOUT_S = 15.0


class EventStream:
    """Server-sent events read off a response, one ``(event, data)`` at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        assert response.status == 200, response.status
        assert response.headers["Content-Type"] == "text/event-stream"
        self.response = response

    async def next(self) -> tuple[str, Any]:
        event, data = "message", []
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        return event, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(":")
                if field == "event":
                    event = value.strip()
                elif field == "data":
                    data.append(value.removeprefix(" "))

    async def next_task(self) -> dict[str, Any]:
        event, data = await self.next()
        assert event == "task", (event, data)
        task: dict[str, Any] = data
        return task

    async def ended(self) -> bool:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while await self.response.content.readline():
                pass
        return True


async def open_stream(user: ApiUser) -> EventStream:
    stream = EventStream(await user.client.get(STREAM, headers=user.headers))
    assert await stream.next() == ("ready", {})
    return stream


async def test_each_user_hears_only_of_their_own_tasks(admin: ApiUser, other_user: ApiUser) -> None:
    admins, others = await open_stream(admin), await open_stream(other_user)

    admin_task = await admin.create("role", "csv")
    heard_by_admin = await admins.next_task()
    other_task = await other_user.create("role", "xlsx")
    # Changes fan out in commit order, so had the admin's reached this stream it would come first.
    heard_by_other = await others.next_task()

    assert (heard_by_admin["id"], heard_by_admin["status"]) == (admin_task["id"], "pending")
    assert heard_by_other["id"] == other_task["id"]
    assert heard_by_other["format"] == "xlsx"


@pytest.mark.usefixtures("worker")
async def test_the_stream_follows_an_export_from_pending_to_completed(admin: ApiUser) -> None:
    stream = await open_stream(admin)

    task = await admin.create("role", "csv")
    seen = [await stream.next_task()]
    while seen[-1]["status"] != "completed":
        seen.append(await stream.next_task())

    order = ["pending", "running", "completed"]
    statuses = [event["status"] for event in seen]
    assert {event["id"] for event in seen} == {task["id"]}
    assert statuses == sorted(statuses, key=order.index)
    assert seen[-1]["row_count"] == seen[-1]["rows_done"] == seen[-1]["rows_total"] == 20
    assert seen[-1]["download_url"] == f"/api/export-tasks/{task['id']}/download"


async def test_a_deleted_task_is_announced_by_id(admin: ApiUser) -> None:
    stream = await open_stream(admin)
    task = await admin.create("role", "csv")
    await stream.next_task()

    response = await admin.client.delete(f"/api/export-tasks/{task['id']}", headers=admin.headers)

    assert response.status == 204
    assert await stream.next() == ("deleted", {"id": task["id"]})


async def test_an_import_is_announced_as_an_import_task_and_its_deletion_by_id(
    admin: ApiUser,
) -> None:
    stream = await open_stream(admin)
    form = aiohttp.FormData()
    form.add_field("type", "role")
    form.add_field(
        "file", "名称,描述\r\n运营,\r\n".encode(), filename="roles.csv", content_type="text/csv"
    )
    response = await admin.client.post("/api/import-tasks", data=form, headers=admin.headers)
    assert response.status == 202, await response.text()
    created = await response.json()

    event, task = await stream.next()
    assert event == "import_task"
    assert (task["id"], task["status"], task["mode"], task["file_name"]) == (
        created["id"],
        "pending",
        "validate",
        "roles.csv",
    )
    response = await admin.client.delete(
        f"/api/import-tasks/{created['id']}", headers=admin.headers
    )
    assert response.status == 204
    assert await stream.next() == ("deleted", {"id": created["id"]})


async def test_the_stream_needs_credentials(client: TestClient[Any, Any]) -> None:
    response = await client.get(STREAM)

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_streams_end_and_resume_when_the_database_connection_drops(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    stream = await open_stream(admin)

    terminated = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )

    assert terminated == 1
    assert await stream.ended()
    again = await open_stream(admin)
    task = await admin.create("role", "csv")
    assert (await again.next_task())["id"] == task["id"]


async def test_open_streams_end_when_the_server_stops(settings: Settings, admin: ApiUser) -> None:
    server = TestServer(create_app(settings))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        response = await session.get(server.make_url(STREAM), headers=admin.headers)
        stream = EventStream(response)
        assert await stream.next() == ("ready", {})

        await asyncio.wait_for(server.close(), timeout=EVENT_TIMEOUT_S)

        assert await stream.ended()


async def test_a_stream_ends_when_its_token_expires(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    token = issue_token(SECRET, await account_id(db, "admin"), ttl_s=4)
    expires_at = identity_from_token(SECRET, token).expires_at
    user = ApiUser(client, token)
    stream = await open_stream(user)
    task = await user.create("role", "csv")
    assert (await stream.next_task())["id"] == task["id"]

    assert await stream.ended()
    # Ended by a timer at the expiry, not found out by a later check.
    assert time.time() < expires_at + 2.0


async def test_a_stream_ends_once_its_account_is_disabled(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    tabs = [await open_stream(admin), await open_stream(admin)]  # one credential, one check

    await db.execute("UPDATE accounts SET status = 'disabled' WHERE username = 'admin'")

    assert [await tab.ended() for tab in tabs] == [True, True]


@asynccontextmanager
async def api_with(settings: Settings, **changes: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings.model_copy(update=changes)))) as client:
        yield client


async def test_an_account_may_hold_only_so_many_streams(
    settings: Settings, admin: ApiUser, other_user: ApiUser
) -> None:
    async with api_with(settings, max_streams_per_user=2) as client:
        first = await client.get(STREAM, headers=admin.headers)
        second = await client.get(STREAM, headers=admin.headers)
        refused = await client.get(STREAM, headers=admin.headers)
        others = await client.get(STREAM, headers=other_user.headers)

        assert (first.status, second.status, others.status) == (200, 200, 200)
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) > 0

        first.close()

        async def accepted() -> aiohttp.ClientResponse | None:
            response = await client.get(STREAM, headers=admin.headers)
            if response.status == 200:
                return response
            assert response.status == 429
            response.release()
            return None

        # A closed stream gives its place back once the server finds the connection gone.
        assert await wait_until(accepted, timeout_s=EVENT_TIMEOUT_S, what="a place to free up")


async def test_streams_in_all_are_capped_in_each_process(
    settings: Settings, admin: ApiUser, other_user: ApiUser
) -> None:
    async with api_with(settings, max_streams=2) as client:
        held = [await client.get(STREAM, headers=admin.headers) for _ in range(2)]
        refused = await client.get(STREAM, headers=other_user.headers)

        assert [response.status for response in held] == [200, 200]
        assert refused.status == 503
        assert (await refused.json())["error"]["code"] == "streams_full"
        assert "Retry-After" in refused.headers


class RecordingFeed:
    """A real feed on the test's database whose events record each change they were made for."""

    def __init__(self, settings: Settings, limits: StreamLimits) -> None:
        self.rendered: list[StreamEvent] = []
        self.feed = TaskChangeFeed(settings.database_url, self._render, limits)

    async def _render(self, change: TaskChange) -> StreamEvent:
        self.rendered.append(
            StreamEvent("deleted" if change.deleted else "task", str(change.task_id))
        )
        return self.rendered[-1]


@pytest.fixture
async def owner(db: asyncpg.Connection[Any]) -> int:
    return await account_id(db, "admin")


async def test_a_change_is_read_once_and_the_same_event_reaches_every_stream_of_its_owner(
    settings: Settings, admin: ApiUser, owner: int
) -> None:
    recording = RecordingFeed(settings, StreamLimits(per_owner=3, total=10))
    try:
        async with AsyncExitStack() as streams:
            queues = [
                await streams.enter_async_context(recording.feed.subscribe(owner)) for _ in range(3)
            ]
            task = await admin.create("role", "csv")

            heard = [await asyncio.wait_for(queue.get(), EVENT_TIMEOUT_S) for queue in queues]

            assert recording.rendered == [StreamEvent("task", task["id"])]
            assert all(event is recording.rendered[0] for event in heard)
    finally:
        await recording.feed.close()


async def test_a_stream_that_cannot_keep_up_is_told_it_fell_behind_not_buffered(
    settings: Settings, admin: ApiUser, owner: int
) -> None:
    limits = StreamLimits(per_owner=1, total=10, queue_events=2)
    recording = RecordingFeed(settings, limits)
    try:
        async with recording.feed.subscribe(owner) as never_read:
            for _ in range(2):  # six changes: create, cancel and delete, twice
                task = await admin.create("role", "csv")
                await admin.client.post(
                    f"/api/export-tasks/{task['id']}/cancel", headers=admin.headers
                )
                await admin.client.delete(f"/api/export-tasks/{task['id']}", headers=admin.headers)

            async def all_rendered() -> bool:
                await asyncio.sleep(0)
                return len(recording.rendered) == 6

            await wait_until(all_rendered, timeout_s=EVENT_TIMEOUT_S, what="six changes")

            assert never_read.qsize() <= limits.queue_events
            assert never_read.get_nowait() is Gap.FELL_BEHIND
            assert never_read.get_nowait() == StreamEvent("deleted", task["id"])
    finally:
        await recording.feed.close()
