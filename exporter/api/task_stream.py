"""GET /api/export-tasks/stream: the caller's task changes, live, as server-sent events.

Events: ``ready`` once connected (the page reloads its list then, so nothing announced while it
was away is missed), ``task`` with the task as GET /api/export-tasks/{id} shows it, and
``deleted`` with its id. Only the caller's own tasks are ever sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from exporter.api.auth import current_account
from exporter.api.schemas import TaskOut
from exporter.api.services import SERVICES, services_of
from exporter.errors import TaskNotFound
from exporter.task_changes import ChangeQueue, TaskChangeFeed
from exporter.task_repository import TaskRepository

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

TASK_CHANGES = web.AppKey("task_changes", TaskChangeFeed)
RECONNECT_DELAY_MS = 3000


async def task_change_feed(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the feed the streams subscribe to (it connects on the first one)."""
    feed = TaskChangeFeed(app[SERVICES].settings.database_url)
    app[TASK_CHANGES] = feed
    try:
        yield
    finally:
        await feed.close()


async def end_task_streams(app: web.Application) -> None:
    """On shutdown: open streams end, or the server would wait for them to time out."""
    app[TASK_CHANGES].end_streams()


async def _forward(
    changes: ChangeQueue, stream: EventSourceResponse, tasks: TaskRepository, owner_id: int
) -> None:
    while (change := await changes.get()) is not None:
        if change.deleted:
            await stream.send(json.dumps({"id": str(change.task_id)}), event="deleted")
            continue
        try:
            task = await tasks.get_own(change.task_id, owner_id)
        except TaskNotFound:
            continue  # deleted since; its own event follows
        await stream.send(TaskOut.of(task).model_dump_json(), event="task")


@routes.get("/api/export-tasks/stream")
async def stream_task_changes(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    services = services_of(request)
    # Subscribed before the stream opens, so no change between "ready" and the first event is lost.
    async with request.app[TASK_CHANGES].subscribe(account.id) as changes:
        async with sse_response(request) as stream:
            await stream.send("{}", event="ready", retry=RECONNECT_DELAY_MS)
            forwarding = asyncio.create_task(_forward(changes, stream, services.tasks, account.id))
            forwarding.add_done_callback(lambda _: stream.stop_streaming())
            try:
                await stream.wait()
            finally:
                forwarding.cancel()
                (outcome,) = await asyncio.gather(forwarding, return_exceptions=True)
            if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionResetError):
                log.warning("task stream of account %d ended: %r", account.id, outcome)
    return stream
