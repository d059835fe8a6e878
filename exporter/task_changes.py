"""Changes to export tasks as PostgreSQL announces them, handed to the open streams of their owners.

One LISTEN connection per API process serves every stream. A change carries only the task id and
its owner's id; a stream subscribes for one owner and never receives another owner's changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("exporter.api")

CHANNEL = "export_task_changes"


@dataclass(frozen=True)
class TaskChange:
    task_id: uuid.UUID
    deleted: bool


# None tells a stream to end: the feed lost its connection or the server is stopping, and the
# browser reconnects and reloads its list, so nothing announced in between is missed.
ChangeQueue = asyncio.Queue[TaskChange | None]


class TaskChangeFeed:
    """Listens on the notification channel while anyone subscribes, and fans changes out."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._subscribers: dict[int, set[ChangeQueue]] = {}

    @asynccontextmanager
    async def subscribe(self, owner_id: int) -> AsyncIterator[ChangeQueue]:
        """A queue of the changes to ``owner_id``'s tasks, from now until the block ends."""
        await self._listen()
        queue: ChangeQueue = asyncio.Queue()
        self._subscribers.setdefault(owner_id, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers.get(owner_id, set())
            queues.discard(queue)
            if not queues:
                self._subscribers.pop(owner_id, None)

    def end_streams(self) -> None:
        """Ask every open stream to end."""
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    async def close(self) -> None:
        self.end_streams()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _listen(self) -> None:
        async with self._connecting:
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
            owner_id = int(message["owner"])
            change = TaskChange(uuid.UUID(message["id"]), deleted=message["op"] == "delete")
        except (ValueError, KeyError, TypeError):
            log.warning("task change feed: ignoring malformed payload %r", payload)
            return
        for queue in self._subscribers.get(owner_id, ()):
            queue.put_nowait(change)
