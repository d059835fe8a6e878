"""GET /api/export-tasks/stream: the caller's task changes, live, as server-sent events.

Events: ``ready`` once connected (the page reloads its lists then, so nothing announced while it
was away is missed) and again whenever the stream fell behind and events were dropped, ``task``
with an export as GET /api/export-tasks/{id} shows it, ``import_task`` with an import as GET
/api/import-tasks/{id} shows it, and ``deleted`` with the id of a task of either kind. Only the
caller's own tasks are ever sent. A stream ends when its token expires, and within
``RECHECK_S`` once its caller is refused (account no longer active, session revoked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from exporter import metrics
from exporter.api.auth import SESSION_COOKIE, caller_identity, current_account
from exporter.api.import_schemas import ImportTaskOut
from exporter.api.import_tasks import IMPORTS_PATH
from exporter.api.schemas import TaskOut
from exporter.api.services import SERVICES, Services
from exporter.api.tasks import TASKS_PATH
from exporter.errors import ExporterError, TaskNotFound
from exporter.tasks.changes import (
    ChangeQueue,
    Gap,
    StreamEvent,
    StreamLimits,
    TaskChange,
    TaskChangeFeed,
)
from exporter.tasks.kinds import TaskKind
from exporter.tasks.models import Task
from exporter.tasks.repository import TaskRepository

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

TASK_CHANGES = web.AppKey("task_changes", TaskChangeFeed)
RECONNECT_DELAY_MS = 3000
READY = StreamEvent("ready", "{}")
# How often an open stream asks again whether its caller may still use it (an account disabled,
# a session signed out): the access checks promise to take effect within 5 s.
RECHECK_S = 5.0
# aiohttp 3 does not tell a handler that its client went away; the next write finds out. This
# ping is that write, so a closed stream gives back its place under the caps within 5 s.
PING_INTERVAL_S = 5.0


@dataclass(frozen=True)
class StreamedKind:
    """A kind whose tasks the stream tells of: the event naming them, and their JSON."""

    kind: TaskKind
    event: str
    render: Callable[[Task], str]


def streamed_kinds(services: Services) -> dict[str, StreamedKind]:
    """Every kind the stream tells of, by name: exports as ``task`` (what the stream sent before
    there were imports), imports as ``import_task``."""
    kinds = (
        StreamedKind(
            services.exports,
            "task",
            lambda task: TaskOut.of(task, TASKS_PATH + "/").model_dump_json(),
        ),
        StreamedKind(
            services.imports,
            "import_task",
            lambda task: ImportTaskOut.of(task, IMPORTS_PATH + "/").model_dump_json(),
        ),
    )
    return {streamed.kind.name: streamed for streamed in kinds}


async def task_change_feed(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the feed the streams subscribe to (it connects on the first one)."""
    services = app[SERVICES]
    settings = services.settings
    kinds = streamed_kinds(services)

    async def render(change: TaskChange) -> StreamEvent | None:
        return await _event_of(services.tasks, kinds, change)

    limits = StreamLimits(per_owner=settings.max_streams_per_user, total=settings.max_streams)
    feed = TaskChangeFeed(settings.database_url, render, limits)
    app[TASK_CHANGES] = feed
    app[CALLER_WATCH] = CallerWatch()
    try:
        yield
    finally:
        await feed.close()


async def end_task_streams(app: web.Application) -> None:
    """On shutdown: open streams end, or the server would wait for them to time out."""
    app[TASK_CHANGES].end_streams()


async def _event_of(
    tasks: TaskRepository, kinds: Mapping[str, StreamedKind], change: TaskChange
) -> StreamEvent | None:
    streamed = kinds.get(change.kind)
    if streamed is None:
        return None  # a kind no page shows
    if change.deleted:
        return StreamEvent("deleted", json.dumps({"id": str(change.task_id)}))
    try:
        task = await tasks.get_own(change.task_id, change.owner_id, streamed.kind)
    except TaskNotFound:
        return None  # deleted since; its own event follows
    return StreamEvent(streamed.event, streamed.render(task))


async def _forward(changes: ChangeQueue, stream: EventSourceResponse) -> None:
    while (item := await changes.get()) is not None:
        event = READY if item is Gap.FELL_BEHIND else item
        await stream.send(event.data, event=event.name)


@dataclass
class _Watch:
    refused: asyncio.Event
    checking: asyncio.Task[None]
    streams: int = 0


class CallerWatch:
    """Asks ``current_account`` every RECHECK_S for each credential that holds streams open: once
    however many streams it holds (tabs of one browser share its cookie), and tells them all
    when the caller is refused. A check per stream, at 1,000 streams of 200 users, was 200
    queries a second and made another user's list p90 234 ms instead of 49 ms."""

    def __init__(self) -> None:
        self._watches: dict[tuple[str, str], _Watch] = {}

    @asynccontextmanager
    async def watching(self, request: web.Request) -> AsyncIterator[asyncio.Event]:
        """An event set once the caller of ``request`` is refused."""
        # Everything current_account reads of a request.
        key = (request.headers.get("Authorization", ""), request.cookies.get(SESSION_COOKIE, ""))
        watch = self._watches.get(key)
        if watch is None:
            refused = asyncio.Event()
            watch = self._watches[key] = _Watch(
                refused, asyncio.create_task(self._check(request, key, refused))
            )
        watch.streams += 1
        try:
            yield watch.refused
        finally:
            watch.streams -= 1
            if not watch.streams:
                watch.checking.cancel()
                if self._watches.get(key) is watch:
                    del self._watches[key]

    async def _check(
        self, request: web.Request, key: tuple[str, str], refused: asyncio.Event
    ) -> None:
        # Streams opened together (a server restart reconnects them all) would otherwise ask at
        # the same moments, a burst of queries every RECHECK_S in front of everyone else's.
        delay_s = random.uniform(0, RECHECK_S)
        while True:
            await asyncio.sleep(delay_s)
            try:
                await current_account(request)
            except ExporterError as refusal:
                log.info("task streams of a caller ended: %s", refusal.message)
            except Exception as exc:
                # Not known to be allowed: the streams end, and the browser reconnects (and is
                # checked again) a few seconds later.
                log.warning("task streams of a caller ended: the check failed: %r", exc)
            else:
                delay_s = RECHECK_S
                continue
            # Streams opened from now on start their own watch.
            self._watches.pop(key, None)
            refused.set()
            return


CALLER_WATCH = web.AppKey("caller_watch", CallerWatch)


@routes.get("/api/export-tasks/stream")
async def stream_task_changes(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    expires_at = caller_identity(request).expires_at
    # Subscribed before the stream opens, so no change between "ready" and the first event is lost.
    async with (
        request.app[TASK_CHANGES].subscribe(account.id) as changes,
        request.app[CALLER_WATCH].watching(request) as refused,
        sse_response(request, ping_interval=PING_INTERVAL_S) as stream,
    ):
        await stream.send(READY.data, event=READY.name, retry=RECONNECT_DELAY_MS)
        jobs = [
            asyncio.create_task(_forward(changes, stream)),
            asyncio.create_task(refused.wait()),
        ]
        for job in jobs:
            job.add_done_callback(lambda _: stream.stop_streaming())
        expiry = asyncio.get_running_loop().call_later(
            expires_at - time.time(), stream.stop_streaming
        )
        try:
            with metrics.event_streams_open.track_inprogress():
                await stream.wait()
        finally:
            expiry.cancel()
            for job in jobs:
                job.cancel()
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionResetError):
                log.warning("task stream of account %d ended: %r", account.id, outcome)
    return stream
