"""Export tasks in PostgreSQL, the source of truth; every status change is a conditional update."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from exporter.errors import TaskNotFound
from exporter.models import ExportFormat, ExportTask, TaskStatus

TASK_COLUMNS = """
    id, type, status, format, params, file_name, file_path, file_size, row_count, rows_done,
    rows_total, error, created_by_id, created_at, started_at, finished_at, attempts
"""

INSERT_TASK = f"""
INSERT INTO export_tasks (id, type, format, params, created_by_id)
VALUES ($1, $2, $3, $4, $5)
RETURNING {TASK_COLUMNS}
"""

SELECT_OWN_TASK = f"SELECT {TASK_COLUMNS} FROM export_tasks WHERE id = $1 AND created_by_id = $2"

SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM export_tasks WHERE id = $1"

# $2 and $3 are optional filters: NULL matches every status or type.
LIST_OWN_TASKS = f"""
SELECT {TASK_COLUMNS}, count(*) OVER () AS total
FROM export_tasks
WHERE created_by_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR type = $3)
ORDER BY created_at DESC, id DESC
LIMIT $4 OFFSET $5
"""

COUNT_OWN_TASKS = """
SELECT count(*) FROM export_tasks
WHERE created_by_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR type = $3)
"""

# Only a pending task can be claimed, so a duplicate delivery of its job finds nothing to do.
CLAIM_TASK = f"""
UPDATE export_tasks
SET status = 'running', started_at = now(), attempts = attempts + 1,
    rows_done = 0, rows_total = NULL, error = NULL
WHERE id = $1 AND status = 'pending'
RETURNING {TASK_COLUMNS}
"""

UPDATE_PROGRESS = """
UPDATE export_tasks SET rows_done = $2, rows_total = $3
WHERE id = $1 AND status = 'running'
"""

COMPLETE_TASK = f"""
UPDATE export_tasks
SET status = 'completed', finished_at = now(), file_name = $2, file_path = $3, file_size = $4,
    row_count = $5, rows_done = $5, rows_total = $5, error = NULL
WHERE id = $1 AND status = 'running'
RETURNING {TASK_COLUMNS}
"""

FAIL_TASK = f"""
UPDATE export_tasks
SET status = 'failed', finished_at = now(), error = $2
WHERE id = $1 AND status IN ('pending', 'running')
RETURNING {TASK_COLUMNS}
"""

# A worker that is stopped mid-export hands the task back for the next delivery of its job.
RELEASE_TASK = """
UPDATE export_tasks SET status = 'pending', rows_done = 0
WHERE id = $1 AND status = 'running'
"""


@dataclass(frozen=True)
class TaskPage:
    """One page of a user's tasks and how many match in all."""

    tasks: list[ExportTask]
    total: int


def task_from_record(record: asyncpg.Record) -> ExportTask:
    return ExportTask(
        id=record["id"],
        type=record["type"],
        status=TaskStatus(record["status"]),
        format=ExportFormat(record["format"]),
        params=record["params"],
        file_name=record["file_name"],
        file_path=record["file_path"],
        file_size=record["file_size"],
        row_count=record["row_count"],
        rows_done=record["rows_done"],
        rows_total=record["rows_total"],
        error=record["error"],
        created_by_id=record["created_by_id"],
        created_at=record["created_at"],
        started_at=record["started_at"],
        finished_at=record["finished_at"],
        attempts=record["attempts"],
    )


def _one(record: asyncpg.Record | None) -> ExportTask | None:
    return None if record is None else task_from_record(record)


class TaskRepository:
    """Reads and writes export_tasks through a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, *, type_name: str, file_format: ExportFormat, params: dict[str, Any], owner_id: int
    ) -> ExportTask:
        record = await self._pool.fetchrow(
            INSERT_TASK, uuid.uuid4(), type_name, file_format.value, params, owner_id
        )
        assert record is not None  # INSERT … RETURNING always returns the row
        return task_from_record(record)

    async def get_own(self, task_id: uuid.UUID, owner_id: int) -> ExportTask:
        """The task if it belongs to ``owner_id``; otherwise TaskNotFound, as for a missing id."""
        task = _one(await self._pool.fetchrow(SELECT_OWN_TASK, task_id, owner_id))
        if task is None:
            raise TaskNotFound("export task not found")
        return task

    async def get(self, task_id: uuid.UUID) -> ExportTask | None:
        return _one(await self._pool.fetchrow(SELECT_TASK, task_id))

    async def list_own(
        self,
        owner_id: int,
        *,
        status: TaskStatus | None,
        type_name: str | None,
        limit: int,
        offset: int,
    ) -> TaskPage:
        filters: Sequence[Any] = (owner_id, status and status.value, type_name)
        records = await self._pool.fetch(LIST_OWN_TASKS, *filters, limit, offset)
        if records:
            total = int(records[0]["total"])
        else:
            total = int(await self._pool.fetchval(COUNT_OWN_TASKS, *filters))
        return TaskPage([task_from_record(record) for record in records], total)

    async def claim(self, task_id: uuid.UUID) -> ExportTask | None:
        """Move a pending task to running; None if it is not pending (already claimed or ended)."""
        return _one(await self._pool.fetchrow(CLAIM_TASK, task_id))

    async def report_progress(self, task_id: uuid.UUID, rows_done: int, rows_total: int) -> None:
        await self._pool.execute(UPDATE_PROGRESS, task_id, rows_done, rows_total)

    async def complete(
        self, task_id: uuid.UUID, *, file_name: str, file_path: str, file_size: int, rows: int
    ) -> ExportTask | None:
        return _one(
            await self._pool.fetchrow(COMPLETE_TASK, task_id, file_name, file_path, file_size, rows)
        )

    async def fail(self, task_id: uuid.UUID, error: str) -> ExportTask | None:
        return _one(await self._pool.fetchrow(FAIL_TASK, task_id, error))

    async def release(self, task_id: uuid.UUID) -> None:
        """Put a running task back to pending so that another delivery can claim it."""
        await self._pool.execute(RELEASE_TASK, task_id)
