"""What operators see of the whole system: the workers alive, tasks of every account by status,
the slowest and the failed ones. Read-only; every query is bounded by a LIMIT or an index."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from exporter.db import Pool
from exporter.errors import TaskNotFound
from exporter.tasks.models import TASK_COLUMNS, Task, TaskStatus, task_from_record
from exporter.tasks.workers import STALE_AFTER_BEATS, STALE_AFTER_MIN_S

# "Recent" for the slowest list: what finished within the last day, and what runs now.
RECENT_S = 86400.0

LIVE_WORKERS = """
SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_at, w.rows_per_s,
       w.heartbeat_at < now() - make_interval(secs => greatest(w.heartbeat_interval_s * $1, $2))
           AS stale,
       coalesce(array_agg(t.id::text ORDER BY t.started_at) FILTER (WHERE t.id IS NOT NULL),
                '{}') AS current_tasks
FROM workers w
LEFT JOIN tasks t ON t.worker_id = w.id AND t.status = 'running'
WHERE w.stopped_at IS NULL
GROUP BY w.id
ORDER BY w.started_at, w.id
"""

# The counts the triggers keep (migration 0013): no scan of the tasks table.
COUNTS = """
SELECT kind, status, sum(n)::bigint AS count FROM task_counts
GROUP BY kind, status HAVING sum(n) > 0
ORDER BY kind, status
"""

_OPS_TASK = """
SELECT t.id, t.kind, t.type, t.format, t.status, t.created_by_id AS owner_id,
       a.username AS owner, t.created_at, t.started_at, t.finished_at,
       extract(epoch FROM coalesce(t.finished_at, now()) - t.started_at)::float8 AS duration_s,
       t.rows_done, t.rows_total, t.error, t.error_code, t.error_params, t.worker_id,
       t.cancel_requested, t.attempts, count(*) OVER () AS total
FROM tasks t
LEFT JOIN accounts a ON a.id = t.created_by_id
"""

SLOWEST = (
    _OPS_TASK
    + """
WHERE t.started_at IS NOT NULL
  AND (t.status = 'running'
       OR (t.status IN ('completed', 'failed', 'cancelled')
           AND t.finished_at > now() - make_interval(secs => $1)))
ORDER BY duration_s DESC, t.id
LIMIT $2
"""
)

FAILED = _OPS_TASK + "WHERE t.status = 'failed' ORDER BY t.finished_at DESC, t.id LIMIT $1"

TASKS = (
    _OPS_TASK
    + """
WHERE ($1::text IS NULL OR t.status = $1) AND ($2::text IS NULL OR t.kind = $2)
ORDER BY t.created_at DESC, t.id DESC
LIMIT $3 OFFSET $4
"""
)

COUNT_TASKS = """
SELECT count(*) FROM tasks
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)
"""

ONE_TASK = _OPS_TASK + "WHERE t.id = $1"

ANY_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"


class OpsWorker(BaseModel):
    """A worker that has not stopped cleanly: alive, or dead and ``stale``."""

    id: str = Field(description="as in the tasks it leases and its log lines")
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime = Field(description="its last heartbeat")
    stale: bool = Field(description="no heartbeat for several of its intervals: stuck or dead")
    rows_per_s: float = Field(description="rows its tasks reported between its last two beats")
    current_tasks: list[uuid.UUID] = Field(description="the tasks it holds the lease of")


class TaskCount(BaseModel):
    kind: str
    status: TaskStatus
    count: int


class OpsTask(BaseModel):
    """A task of any account, as operators see it."""

    id: uuid.UUID
    kind: str
    type: str
    format: str
    status: TaskStatus
    owner_id: int
    owner: str | None = Field(description="the owner's username")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None = Field(description="from start to end, or to now while running")
    rows_done: int
    rows_total: int | None
    error: str | None = Field(description="why it failed, in English")
    error_code: str | None = Field(description="why it failed, as a stable code")
    error_params: dict[str, Any] | None
    worker_id: str | None
    cancel_requested: bool
    attempts: int


def _tasks(records: list[asyncpg.Record]) -> list[OpsTask]:
    return [OpsTask.model_validate(dict(record)) for record in records]


class Overview:
    """Queries across every account, for the operators' view."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def workers(self) -> list[OpsWorker]:
        records = await self._pool.fetch(LIVE_WORKERS, STALE_AFTER_BEATS, STALE_AFTER_MIN_S)
        return [OpsWorker.model_validate(dict(record)) for record in records]

    async def counts(self) -> list[TaskCount]:
        return [TaskCount.model_validate(dict(r)) for r in await self._pool.fetch(COUNTS)]

    async def slowest(self, limit: int) -> list[OpsTask]:
        """Running tasks and those finished within a day, longest first."""
        return _tasks(await self._pool.fetch(SLOWEST, RECENT_S, limit))

    async def failed(self, limit: int) -> list[OpsTask]:
        """The last failed tasks, newest first."""
        return _tasks(await self._pool.fetch(FAILED, limit))

    async def tasks(
        self, status: TaskStatus | None, kind: str | None, page: int, page_size: int
    ) -> tuple[list[OpsTask], int]:
        """A page of every account's tasks, newest first, and how many match."""
        records = await self._pool.fetch(
            TASKS, status and status.value, kind, page_size, (page - 1) * page_size
        )
        if records:
            total: int = records[0]["total"]
        else:  # past the last page, or nothing matches
            total = await self._pool.fetchval(COUNT_TASKS, status and status.value, kind)
        return _tasks(records), total

    async def ops_task(self, task_id: uuid.UUID) -> OpsTask:
        """Any account's task as operators see it; TaskNotFound if there is none."""
        record = await self._pool.fetchrow(ONE_TASK, task_id)
        if record is None:
            raise TaskNotFound("task not found")
        return OpsTask.model_validate(dict(record))

    async def task(self, task_id: uuid.UUID) -> Task:
        """Any account's task; TaskNotFound if there is none."""
        record = await self._pool.fetchrow(ANY_TASK, task_id)
        if record is None:
            raise TaskNotFound("task not found")
        return task_from_record(record)
