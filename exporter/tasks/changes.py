"""Changes to tasks of every kind as PostgreSQL announces them, handed to their owners' streams.

One LISTEN connection per API process serves every stream. A change carries only the task id and
its owner's id; a stream subscribes for one owner and never receives another owner's changes.
Each change is rendered once (one read of the task), and the same event goes to every stream of
its owner, so a change costs one query however many streams its owner has open.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from exporter.errors import StreamsFull, TooManyStreams

log = logging.getLogger("exporter.tasks")

CHANNEL = "task_changes"

# Events one stream may have waiting. A page re-reads its whole list (one page, 20 tasks) when it
# is told it fell behind, which is cheaper than catching up on more events than that; three
# running exports announce about six changes a second, so this is ten seconds of a stalled client.
STREAM_QUEUE_EVENTS = 64

# Changes announced but not yet rendered, in all. Beyond it the owners of the changes dropped are
# told they fell behind, so a burst cannot grow the process's memory without bound.
PENDING_CHANGES = 10_000


@dataclass(frozen=True)
class TaskChange:
    task_id: uuid.UUID
    owner_id: int
    kind: str
    deleted: bool


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: its name and its data, rendered once for all its owner's streams."""

    name: str
    data: str


class Gap(enum.Enum):
    """Events were dropped from a stream that could not keep up: its client must reload."""

    FELL_BEHIND = "fell_behind"


# None tells a stream to end: the feed lost its connection or the server is stopping, and the
# browser reconnects and reloads its list, so nothing announced in between is missed.
StreamItem = StreamEvent | Gap | None
ChangeQueue = asyncio.Queue[StreamItem]

Render = Callable[[TaskChange], Awaitable[StreamEvent | None]]
"""The event for a change, or None when there is nothing to tell (the task is gone since)."""


@dataclass(frozen=True)
class StreamLimits:
    """Streams one owner may hold, streams in all in this process, and each stream's queue."""

    per_owner: int
    total: int
    queue_events: int = STREAM_QUEUE_EVENTS


def _offer(queue: ChangeQueue, item: StreamItem) -> None:
    """Queue ``item``; a full queue is emptied and told it fell behind (an end is never lost)."""
    try:
        queue.put_nowait(item)
        return
    except asyncio.QueueFull:
        pass
    ended = item is None
    while not queue.empty():
        ended = queue.get_nowait() is None or ended
    queue.put_nowait(None if ended else Gap.FELL_BEHIND)


class TaskChangeFeed:
    """Listens on the notification channel while anyone subscribes, and fans changes out."""

    def __init__(self, dsn: str, render: Render, limits: StreamLimits) -> None:
        self._dsn = dsn
        self._render = render
        self._limits = limits
        self._conn: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._subscribers: dict[int, set[ChangeQueue]] = {}
        self._open = 0
        self._changes: asyncio.Queue[TaskChange] = asyncio.Queue(PENDING_CHANGES)
        self._dispatcher: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def subscribe(self, owner_id: int) -> AsyncIterator[ChangeQueue]:
        """A queue of the events about ``owner_id``'s tasks, from now until the block ends.

        TooManyStreams when the owner holds as many as it may, StreamsFull when the process does.
        """
        queues = self._subscribers.get(owner_id, set())
        if len(queues) >= self._limits.per_owner:
            raise TooManyStreams(
                f"you already have {len(queues)} open task streams; "
                f"the limit is {self._limits.per_owner}"
            )
        if self._open >= self._limits.total:
            raise StreamsFull("this server has as many task streams open as it can take")
        # Taken before the first await, so streams opened at once cannot all pass the checks.
        queue: ChangeQueue = asyncio.Queue(self._limits.queue_events)
        self._subscribers.setdefault(owner_id, set()).add(queue)
        self._open += 1
        try:
            await self._listen()
            yield queue
        finally:
            self._open -= 1
            queues = self._subscribers.get(owner_id, set())
            queues.discard(queue)
            if not queues:
                self._subscribers.pop(owner_id, None)

    def end_streams(self) -> None:
        """Ask every open stream to end."""
        for queues in self._subscribers.values():
            for queue in queues:
                _offer(queue, None)

    async def close(self) -> None:
        self.end_streams()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _listen(self) -> None:
        async with self._connecting:
            if self._dispatcher is None:
                self._dispatcher = asyncio.create_task(self._dispatch())
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await asyncpg.connect(self._dsn)
            conn.add_termination_listener(self._on_lost)
            await conn.add_listener(CHANNEL, self._on_change)
            self._conn = conn

    def _on_lost(self, conn: object) -> None:
        if conn is self._conn:
            log.warning("task change feed: connection lost; open streams will reconnect")
            self._conn = None
            self.end_streams()

    def _on_change(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            message = json.loads(str(payload))
            change = TaskChange(
                uuid.UUID(message["id"]),
                int(message["owner"]),
                str(message["kind"]),
                deleted=message["op"] == "delete",
            )
        except (ValueError, KeyError, TypeError):
            log.warning("task change feed: ignoring malformed payload %r", payload)
            return
        if change.owner_id not in self._subscribers:
            return  # nobody listens: no read at all
        try:
            self._changes.put_nowait(change)
        except asyncio.QueueFull:
            self._fell_behind(change.owner_id)

    def _fell_behind(self, owner_id: int) -> None:
        for queue in self._subscribers.get(owner_id, ()):
            _offer(queue, Gap.FELL_BEHIND)

    async def _dispatch(self) -> None:
        """Render each change once, in the order announced, and hand it to its owner's streams."""
        while True:
            change = await self._changes.get()
            if change.owner_id not in self._subscribers:
                continue  # they all left meanwhile
            try:
                event = await self._render(change)
            except Exception as exc:
                # Their streams end and reconnect, and the page reloads its list then.
                log.warning("task change feed: could not read task %s: %r", change.task_id, exc)
                for queue in self._subscribers.get(change.owner_id, ()):
                    _offer(queue, None)
                continue
            if event is not None:
                for queue in self._subscribers.get(change.owner_id, ()):
                    _offer(queue, event)
