"""The live stream of task changes: what it sends, to whom, and how it ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.api.app import create_app
from settings import Settings
from tests.support import ApiUser

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
