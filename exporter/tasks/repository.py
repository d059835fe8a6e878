"""Tasks in PostgreSQL, the source of truth; every status change is a conditional update."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from exporter.db import Pool
from exporter.errors import (
    IdempotencyConflict,
    KeptBytesExceeded,
    QueueFull,
    QuotaExceeded,
    TaskNotFound,
)
from exporter.storage.base import StoredFile
from exporter.tasks.kinds import TaskKind, TaskSpec
from exporter.tasks.models import (
    TASK_COLUMNS,
    Task,
    TaskEvent,
    TaskFailure,
    TaskStatus,
    task_from_record,
)

# The checks and the insert of a create, in one round trip (migrations 0013, 0014, 0018, 0019).
CREATE_TASK = """
SELECT created.outcome AS created_outcome, created.active, created.kept, (created.task).*
FROM create_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) AS created
"""

SELECT_OWN_TASK = (
    f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND created_by_id = $2 AND kind = $3"
)

SELECT_EVENTS = """
SELECT status, at, attempt, detail FROM task_events WHERE task_id = $1 ORDER BY id
"""

# A page of one kind's tasks as the API lists them, in JSON text; NULL for an unknown owner.
# Each function writes one kind's answer model: task_page (migration 0013) an export's,
# import_task_page (0015) an import's.
PAGE_FUNCTIONS = frozenset({"task_page", "import_task_page"})
TASK_PAGE_JSON = "SELECT {function}($1, $2, $3, $4, $5, $6, $7)::text"

# A pending task is cancelled at once; a running one is flagged and its worker stops it.
REQUEST_CANCEL = f"""
UPDATE tasks
SET cancel_requested = true,
    status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END,
    status_note = CASE WHEN status = 'pending' THEN 'cancelled before it started'
                       ELSE status_note END
WHERE id = $1 AND created_by_id = $2 AND kind = $3 AND status IN ('pending', 'running')
  -- Work already committed (an applied import) is past cancelling.
  AND NOT coalesce((outcome ->> 'applied')::boolean, false)
RETURNING {TASK_COLUMNS}
"""

DELETE_OWN_TASK = f"""
DELETE FROM tasks WHERE id = $1 AND created_by_id = $2 AND kind = $3
RETURNING {TASK_COLUMNS}
"""

# A completed task whose file is no longer in storage (removed by hand, a lost disk) is expired,
# as the retention janitor expires one whose time is up: the page and the API then say so.
EXPIRE_LOST_FILE = """
UPDATE tasks
SET status = 'expired', file_key = NULL, status_note = 'the file was no longer in storage'
WHERE id = $1 AND status = 'completed'
"""

# Only a pending task can be claimed, so a duplicate delivery of its job finds nothing to do.
CLAIM_TASK = f"""
UPDATE tasks
SET status = 'running', worker_id = $2, lease_expires_at = now() + make_interval(secs => $3),
    started_at = now(), attempts = attempts + 1, rows_done = 0, rows_total = NULL,
    error = NULL, error_code = NULL, error_params = NULL, status_note = NULL
WHERE id = $1 AND status = 'pending' AND NOT cancel_requested
RETURNING {TASK_COLUMNS}
"""

# The heartbeat: extends the lease, saves progress, and says whether a cancel was asked for.
# No row back means the task is no longer this attempt's (swept, deleted or finished). Progress
# only grows within an attempt, whatever order the reports arrive in.
RENEW_LEASE = """
UPDATE tasks
SET lease_expires_at = now() + make_interval(secs => $3),
    rows_done = GREATEST(rows_done, $4), rows_total = $5
WHERE id = $1 AND worker_id = $2 AND attempts = $6 AND status = 'running'
RETURNING cancel_requested
"""

# The note becomes the completion's detail in the task's history (the trigger of migration 0013).
COMPLETE_TASK = f"""
UPDATE tasks
SET status = 'completed', finished_at = now(), file_name = $3, file_key = $4, file_size = $5,
    row_count = $6, rows_done = $6, rows_total = $6, error = NULL, error_code = NULL,
    error_params = NULL, lease_expires_at = NULL, outcome = coalesce($7, outcome),
    status_note = $8
WHERE id = $1 AND worker_id = $2 AND attempts = $9 AND status = 'running' AND NOT cancel_requested
RETURNING {TASK_COLUMNS}
"""

FAIL_TASK = f"""
UPDATE tasks
SET status = 'failed', finished_at = now(), error = $3, error_code = $4, error_params = $5,
    lease_expires_at = NULL, file_name = $6, file_key = $7, file_size = $8,
    outcome = coalesce($9, outcome)
WHERE id = $1 AND worker_id = $2 AND attempts = $10 AND status = 'running'
    AND NOT cancel_requested
RETURNING {TASK_COLUMNS}
"""

MARK_CANCELLED = f"""
UPDATE tasks
SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL,
    status_note = 'cancelled while running'
WHERE id = $1 AND worker_id = $2 AND status = 'running'
RETURNING {TASK_COLUMNS}
"""

# Back to pending for another delivery; $3 says whether this attempt counts against the limit
# (a crash-like loss does, a graceful shutdown does not). Never a task whose user asked to
# cancel it: pending so, no worker would claim it nor the sweeper enqueue it again.
RELEASE_TASK = f"""
UPDATE tasks
SET status = 'pending', worker_id = NULL, lease_expires_at = NULL, rows_done = 0,
    attempts = attempts - CASE WHEN $3 THEN 0 ELSE 1 END, status_note = $4, enqueued_at = NULL
WHERE id = $1 AND worker_id = $2 AND status = 'running' AND NOT cancel_requested
RETURNING {TASK_COLUMNS}
"""


@dataclass(frozen=True)
class NewTask:
    """What a user asks for, as its kind checked it."""

    owner_id: int
    spec: TaskSpec
    idempotency_key: str | None = None
    # Chosen before the create when a file is stored under the task's id first (an upload).
    task_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # The API request creating it (X-Request-ID), carried into the worker's log lines.
    request_id: str | None = None

    @property
    def request_hash(self) -> str:
        # Without the kind: the hashes of exports made before kinds stay valid; with the
        # notify_url only when there is one, for the same reason.
        spec = self.spec
        request: list[Any] = [spec.type, spec.format, spec.params]
        if spec.notify_url is not None:
            request.append(spec.notify_url)
        body = json.dumps(request, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Quotas:
    """The limits a create is checked against."""

    max_active_per_user: int
    max_kept_bytes_per_user: int
    queue_full: bool  # the queue holds EXPORTER_MAX_PENDING jobs or more


@dataclass(frozen=True)
class Creation:
    """The task a create request stands for, and whether this request made it."""

    task: Task
    created: bool


def _one(record: asyncpg.Record | None) -> Task | None:
    return None if record is None else task_from_record(record)


class TaskRepository:
    """Reads and writes tasks through a pool; what a user reads or changes is of one kind."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(self, new: NewTask, kind: TaskKind, quotas: Quotas) -> Creation:
        """Create the task, or return the one this request already stands for.

        The same idempotency key returns the task first created with it; an unfinished task
        with the same type, format and params is returned instead of a duplicate.
        """
        upload = new.spec.upload
        record = await self._pool.fetchrow(
            CREATE_TASK,
            new.task_id,
            kind.name,
            new.owner_id,
            new.spec.type,
            new.spec.format,
            new.spec.params,
            new.idempotency_key,
            new.request_hash,
            quotas.max_active_per_user,
            quotas.max_kept_bytes_per_user,
            quotas.queue_full,
            upload and upload.key,
            upload and upload.name,
            upload and upload.size,
            new.request_id,
            new.spec.notify_url,
        )
        assert record is not None  # the function returns one row
        outcome = record["created_outcome"]
        if outcome == "key_conflict":
            raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
        if outcome == "quota":
            raise QuotaExceeded(
                f"you already have {record['active']} unfinished {kind.noun}s; "
                f"the limit is {quotas.max_active_per_user}",
                params={"active": record["active"], "limit": quotas.max_active_per_user},
            )
        if outcome == "kept_bytes":
            raise KeptBytesExceeded(
                f"your finished {kind.noun}s keep {record['kept']} bytes of files; the limit is "
                f"{quotas.max_kept_bytes_per_user} bytes: delete some to {kind.noun} again",
                params={"kept": record["kept"], "limit": quotas.max_kept_bytes_per_user},
            )
        if outcome == "queue_full":
            raise QueueFull(f"too many {kind.noun}s are waiting; try again shortly")
        return Creation(task_from_record(record), created=outcome == "created")

    async def get_own(self, task_id: uuid.UUID, owner_id: int, kind: TaskKind) -> Task:
        """The task of ``kind`` if it belongs to ``owner_id``; otherwise TaskNotFound, as for a
        missing id."""
        task = _one(await self._pool.fetchrow(SELECT_OWN_TASK, task_id, owner_id, kind.name))
        if task is None:
            raise TaskNotFound(f"{kind.noun} task not found")
        return task

    async def history(self, task_id: uuid.UUID) -> list[TaskEvent]:
        records = await self._pool.fetch(SELECT_EVENTS, task_id)
        return [
            TaskEvent(TaskStatus(r["status"]), r["at"], r["attempt"], r["detail"]) for r in records
        ]

    async def page_json(
        self,
        owner_id: int,
        kind: TaskKind,
        *,
        base_url: str,
        status: TaskStatus | None,
        type_name: str | None,
        page: int,
        page_size: int,
        function: str = "task_page",
    ) -> str | None:
        """A page of the owner's tasks of ``kind``, newest first, in JSON as the SQL
        ``function`` writes it (one of PAGE_FUNCTIONS); each task's address is under
        ``base_url``.

        None when ``owner_id`` is no account (deleted since the caller was checked).
        """
        if function not in PAGE_FUNCTIONS:
            raise ValueError(f"no task page function {function!r}")
        body: str | None = await self._pool.fetchval(
            TASK_PAGE_JSON.format(function=function),
            kind.name,
            base_url,
            owner_id,
            status and status.value,
            type_name,
            page,
            page_size,
        )
        return body

    async def request_cancel(
        self, task_id: uuid.UUID, owner_id: int, kind: TaskKind
    ) -> Task | None:
        """Cancel a pending task or flag a running one; None if it is neither."""
        return _one(await self._pool.fetchrow(REQUEST_CANCEL, task_id, owner_id, kind.name))

    async def delete_own(self, task_id: uuid.UUID, owner_id: int, kind: TaskKind) -> Task:
        """Delete the task; returns it as it was (its files, made and uploaded, are still to
        remove). TaskNotFound if absent."""
        task = _one(await self._pool.fetchrow(DELETE_OWN_TASK, task_id, owner_id, kind.name))
        if task is None:
            raise TaskNotFound(f"{kind.noun} task not found")
        return task

    async def expire_lost_file(self, task_id: uuid.UUID) -> None:
        """Mark a completed task expired because its file is gone from storage."""
        await self._pool.execute(EXPIRE_LOST_FILE, task_id)

    async def claim(self, task_id: uuid.UUID, worker_id: str, lease_s: float) -> Task | None:
        """Move a pending task to running for this worker; None if it is not pending."""
        return _one(await self._pool.fetchrow(CLAIM_TASK, task_id, worker_id, lease_s))

    async def renew(
        self,
        task_id: uuid.UUID,
        worker_id: str,
        attempt: int,
        lease_s: float,
        done: int,
        total: int | None,
    ) -> bool | None:
        """Extend the lease, save progress; whether cancel was asked (None: the task is lost)."""
        cancel: bool | None = await self._pool.fetchval(
            RENEW_LEASE, task_id, worker_id, lease_s, done, total, attempt
        )
        return cancel

    async def complete(
        self,
        task_id: uuid.UUID,
        worker_id: str,
        *,
        attempt: int,
        file_name: str | None,
        file_key: str | None,
        file_size: int | None,
        rows: int,
        outcome: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> Task | None:
        """Mark the task completed; ``note`` (how the work was done) becomes its status note and
        the completion's detail in its history. None when the task is no longer this worker's
        ``attempt`` (a worker that re-claimed its own task after losing the lease has another)."""
        return _one(
            await self._pool.fetchrow(
                COMPLETE_TASK,
                task_id,
                worker_id,
                file_name,
                file_key,
                file_size,
                rows,
                outcome,
                note,
                attempt,
            )
        )

    async def fail(
        self,
        task_id: uuid.UUID,
        worker_id: str,
        failure: TaskFailure,
        *,
        attempt: int,
        file_name: str | None = None,
        kept: StoredFile | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> Task | None:
        """Mark the task failed; ``kept`` is a file that stays with the failure (a report).
        None when the task is no longer this worker's ``attempt`` or its user asked to cancel
        it."""
        return _one(
            await self._pool.fetchrow(
                FAIL_TASK,
                task_id,
                worker_id,
                failure.message,
                failure.code,
                failure.params,
                file_name,
                kept and kept.key,
                kept and kept.size,
                outcome,
                attempt,
            )
        )

    async def mark_cancelled(self, task_id: uuid.UUID, worker_id: str) -> Task | None:
        return _one(await self._pool.fetchrow(MARK_CANCELLED, task_id, worker_id))

    async def release(
        self, task_id: uuid.UUID, worker_id: str, *, counts_as_attempt: bool, note: str
    ) -> Task | None:
        """Put a running task back to pending so that another delivery can claim it; None when
        it is no longer this worker's or its user asked to cancel it."""
        return _one(
            await self._pool.fetchrow(RELEASE_TASK, task_id, worker_id, counts_as_attempt, note)
        )
